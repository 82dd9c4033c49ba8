"""Sign-in through a plain OAuth2 connection: `github` and the generic `oauth2` strategy.

No ID token here: the authorization-code flow (state and PKCE S256, sent even to GitHub,
which ignores PKCE), a token request, then the provider's API read with the access token.
What it returns is the same claims dict an ID token gives the OIDC path (`sub`, `email`,
`email_verified`, names), so service.user_for finds, links or creates the user alike:

- github: `{api base}/user` and `{api base}/user/emails`. The api base is
  https://api.github.com, or the base of options.userinfoURL when that is set, so one
  override (GitHub Enterprise, a test stand-in) moves every call. The subject is the
  numeric `id`; the email is the primary address only when GitHub verified it.
- oauth2: options.userinfoURL, and options.profile_map ({our field: dotted path in the
  provider's profile}) says where each field is. A declarative map instead of Auth0's
  fetchUserProfile script: no tenant code runs here.

Every failure is a FederationError (refused or unavailable), never a 500."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import requests

from app.connections.models import GITHUB, OAUTH2, Connection
from app.connections.options import GITHUB_DEFAULT_SCOPE, GITHUB_ENDPOINTS
from app.core import security
from app.federation.upstream import (
    MAX_RESPONSE_BYTES,
    TIMEOUT,
    FederationError,
    check_target,
    refused,
    unavailable,
)

STRATEGIES = frozenset({GITHUB, OAUTH2})
GITHUB_API = "https://api.github.com"
# The profile fields a sign-in keeps from an oauth2 profile_map besides user_id/email.
_NAME_FIELDS = ("name", "given_name", "family_name", "nickname", "picture", "username")
_USER_AGENT = "Gatehouse"


def _endpoint(connection: Connection, key: str) -> str:
    options = connection.options or {}
    value = options.get(key)
    if not value and connection.strategy == GITHUB:
        # Rows made through the API have the defaults filled in; older or hand-made ones
        # may not.
        value = GITHUB_ENDPOINTS[key]
    if not value:
        raise refused(f"The connection {connection.name} names no {key}")
    return str(value)


def authorization_url(
    connection: Connection, *, state: str, verifier: str, redirect_uri: str
) -> str:
    """Where to send the browser to sign in at the connection's provider."""
    options = connection.options or {}
    default_scope = GITHUB_DEFAULT_SCOPE if connection.strategy == GITHUB else ""
    scope = str(options.get("scope", default_scope) or "")
    query = {
        "response_type": "code",
        "client_id": str(options.get("client_id", "")),
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": security.pkce_s256(verifier),
        "code_challenge_method": "S256",
    }
    if scope:
        query["scope"] = scope
    base = _endpoint(connection, "authorizationURL")
    return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"


def _call(
    method: str,
    url: str,
    what: str,
    *,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    # Every call upstream goes through here: the outbound address check, and no
    # redirects followed (a provider's API answering elsewhere is a failure, not a hop to
    # an address nobody configured).
    check_target(url, what)
    try:
        return requests.request(
            method,
            url,
            data=data,
            timeout=TIMEOUT,
            allow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": _USER_AGENT, **(headers or {})},
        )
    except requests.RequestException as exc:
        raise unavailable(f"The identity provider could not be reached ({what})") from exc


def _too_large(response: requests.Response, what: str) -> None:
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise unavailable(f"The identity provider's answer is too large ({what})")


def _token_body(response: requests.Response) -> dict[str, Any]:
    # GitHub answers form-encoded unless asked for JSON (we ask); accept both.
    if response.status_code >= 500:
        raise unavailable(f"The identity provider failed (token: HTTP {response.status_code})")
    _too_large(response, "token")
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", "text/plain"):
        try:
            return dict(parse_qsl(response.text, keep_blank_values=True, strict_parsing=True))
        except ValueError as exc:
            raise unavailable("The identity provider's token answer is unreadable") from exc
    try:
        body = response.json()
    except ValueError as exc:
        raise unavailable("The identity provider did not answer with JSON (token)") from exc
    if not isinstance(body, dict):
        raise unavailable("The identity provider's answer is not a JSON object (token)")
    return body


def exchange_code(
    connection: Connection, *, client_secret: str, code: str, verifier: str, redirect_uri: str
) -> str:
    """The access token for an authorization code (client_secret_post, as GitHub and
    most plain OAuth2 providers take it)."""
    options = connection.options or {}
    data = {
        "grant_type": "authorization_code",
        "client_id": str(options.get("client_id", "")),
        "client_secret": client_secret,
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    response = _call("POST", _endpoint(connection, "tokenURL"), "token", data=data)
    body = _token_body(response)
    # GitHub reports a bad code with HTTP 200 and an `error` field.
    if response.status_code != 200 or "error" in body:
        error = str(body.get("error", f"HTTP {response.status_code}"))[:100]
        raise refused(f"The identity provider refused the code ({error})")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise refused("The identity provider answered without an access token")
    token_type = str(body.get("token_type", "bearer")).lower()
    if token_type != "bearer":
        raise refused(f"The identity provider's token type {token_type[:20]} is not bearer")
    return token


def _api_get(url: str, token: str, what: str) -> Any:
    response = _call("GET", url, what, headers={"Authorization": f"Bearer {token}"})
    if response.status_code >= 500:
        raise unavailable(f"The identity provider failed ({what}: HTTP {response.status_code})")
    if response.status_code in (401, 403):
        raise refused(f"The identity provider refused the access token ({what})")
    if response.status_code != 200:
        raise unavailable(f"The identity provider answered HTTP {response.status_code} ({what})")
    _too_large(response, what)
    try:
        return response.json()
    except ValueError as exc:
        raise unavailable(f"The identity provider did not answer with JSON ({what})") from exc


def github_api_base(connection: Connection) -> str:
    """Where every GitHub API call goes: the base of options.userinfoURL (its last path
    segment, `/user`, taken off), else https://api.github.com."""
    userinfo = (connection.options or {}).get("userinfoURL")
    if not userinfo:
        return GITHUB_API
    return str(userinfo).split("?")[0].rstrip("/").rsplit("/", 1)[0]


def _github_claims(connection: Connection, token: str) -> dict[str, Any]:
    base = github_api_base(connection)
    profile = _api_get(f"{base}/user", token, "user")
    if not isinstance(profile, dict):
        raise unavailable("The identity provider's answer is not a JSON object (user)")
    subject = profile.get("id")
    if isinstance(subject, bool) or not isinstance(subject, int | str) or subject == "":
        raise refused("The identity provider's profile names no user id")
    emails = _api_get(f"{base}/user/emails", token, "user/emails")
    if not isinstance(emails, list):
        raise unavailable("The identity provider's answer is not a JSON list (user/emails)")
    # Only the primary address, and only once GitHub verified it: another verified
    # address is not the one the user chose to be reached at.
    primary = next(
        (
            entry["email"]
            for entry in emails
            if isinstance(entry, dict)
            and entry.get("primary") is True
            and entry.get("verified") is True
            and isinstance(entry.get("email"), str)
        ),
        None,
    )
    # profileData keeps GitHub's own profile, with Auth0's normalised fields on top.
    claims: dict[str, Any] = dict(profile)
    claims.pop("email", None)  # the public profile address is unverified by us
    if primary is not None:
        claims.update(email=primary, email_verified=True)
    claims.setdefault("nickname", profile.get("login"))
    claims.setdefault("picture", profile.get("avatar_url"))
    claims["sub"] = str(subject)
    return claims


def field(profile: Any, path: str) -> Any:
    """The value at the dotted `path` of a JSON profile, or None."""
    value = profile
    for name in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _mapped_claims(connection: Connection, token: str) -> dict[str, Any]:
    profile = _api_get(_endpoint(connection, "userinfoURL"), token, "userinfo")
    if not isinstance(profile, dict):
        raise unavailable("The identity provider's answer is not a JSON object (userinfo)")
    mapping: dict[str, str] = (connection.options or {}).get("profile_map") or {}

    def mapped(name: str) -> Any:
        return field(profile, mapping[name]) if mapping.get(name) else None

    subject = mapped("user_id")
    if isinstance(subject, bool) or not isinstance(subject, int | str) or subject == "":
        raise refused("The identity provider's profile names no user id")
    claims: dict[str, Any] = dict(profile)
    # Only what the map says is the address (and whether it is verified) counts.
    claims.pop("email", None)
    claims.pop("email_verified", None)
    email = mapped("email")
    if isinstance(email, str) and email:
        claims.update(email=email, email_verified=mapped("email_verified") in (True, "true"))
    for name in _NAME_FIELDS:
        value = mapped(name)
        if isinstance(value, str) and value:
            claims[name] = value
    claims["sub"] = str(subject)
    return claims


def sign_in(
    connection: Connection, *, client_secret: str, code: str, verifier: str, redirect_uri: str
) -> dict[str, Any]:
    """The claims of the user an authorization code signs in: `sub` (the provider's user
    id), `email` and `email_verified` when the provider vouches for an address, names,
    and the rest of the provider's profile (kept as the identity's profileData)."""
    token = exchange_code(
        connection,
        client_secret=client_secret,
        code=code,
        verifier=verifier,
        redirect_uri=redirect_uri,
    )
    if connection.strategy == GITHUB:
        return _github_claims(connection, token)
    if connection.strategy == OAUTH2:
        return _mapped_claims(connection, token)
    raise FederationError("invalid_request", f"{connection.strategy} is not an OAuth2 strategy")
