"""The domain's error messages that the hosted pages show, marked for the catalogues.

Services raise errors in English (the API answers them as they are); a page shows the
message through gettext at render time (`hosted.page_message`), so an English message
listed here (or marked with `_`/`N_` where it is raised) appears in the page's language.
A message not in the catalogues stays English: add it here when a new page shows it.
"""

from __future__ import annotations

from flask_babel import ngettext


def N_(message: str) -> str:  # noqa: N802  (the marker's usual name, known to pybabel)
    """Marks a message for extraction; translated later, where it is shown."""
    return message


PAGE_MESSAGES = (
    # app.core.errors: the defaults
    N_("The request is invalid"),
    N_("Missing or invalid credentials"),
    N_("The credentials or grant are not valid"),
    N_("The credential does not allow this"),
    N_("Not found"),
    N_("Method not allowed on this path"),
    N_("The URL is too long"),
    N_("The request body is too large"),
    N_("Too many requests"),
    N_("Too many requests; try again later"),
    N_("A backing service is unavailable"),
    N_("Internal server error"),
    # app.signin.flow, app.applications.login
    N_("Wrong username, email or password"),
    N_("The one-time code is not valid"),
    N_("This sign-in is no longer valid (the account changed). Sign in again."),
    N_("Sign in again."),
    N_(
        "This account's password must be reset before it can sign in: use the "
        "password-reset flow to choose a new one"
    ),
    # app.applications.authorization, app.applications.logout
    N_("The application (client_id) is not known"),
    N_("The redirect_uri is not registered for this application"),
    N_("redirect_uri is required: this application registered none or several"),
    N_("The redirect_uri is no longer registered"),
    N_("The id_token_hint is not valid"),
    N_("The id_token_hint was issued to another client"),
    N_("The post_logout_redirect_uri is not registered for this application"),
    # app.credentials.verification
    N_("The link is invalid, used or expired"),
    # app.api.hosted.routes: forms
    N_("Enter your username or email address and your password."),
    N_("Enter the code your authenticator app shows."),
)


def retry_minutes(retry_after: str | None) -> int | None:
    try:
        seconds = int(retry_after or "")
    except ValueError:
        return None
    return max(1, -(-seconds // 60)) if seconds > 0 else None


def second_factor_locked(minutes: int) -> str:
    return ngettext(
        "Too many wrong codes were entered for this account. Every code is refused for "
        "%(num)d more minute; then try again.",
        "Too many wrong codes were entered for this account. Every code is refused for "
        "%(num)d more minutes; then try again.",
        minutes,
    )
