"""Signing in through another identity provider (issue 27): Gatehouse as a careful relying
party of a tenant's connection upstream (discovery, JWKS, state, nonce, PKCE, the ID
token's checks), and the users those sign-ins find, create or link."""
