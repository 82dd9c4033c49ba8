"""Sign-in: the one flow (password, second factor, limits, audit) that the token endpoint's
password grant and the hosted login page both go through (app.signin.flow).

Its layer sits above users, tokens and credentials (whose services it composes) and below
applications and the surfaces (which call it)."""
