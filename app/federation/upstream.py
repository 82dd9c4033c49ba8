"""The upstream OpenID provider of a connection, as a relying party sees it: its discovery
document and JWKS (each cached per process, the JWKS fetched again when a token names a
kid it lacks, at most once per JWKS_REFRESH_SECONDS so a flood of made-up kids cannot
make us hammer the provider), the token request, the ID token's checks (OIDC Core
§3.1.3.7) and the userinfo request. Every failure is a FederationError: what the app is
told, never a 500.

Every URL called is checked first (check_target, app/core/outbound.py): https only unless
FEDERATION_ALLOW_HTTP, and a host that resolves to public addresses only unless
FEDERATION_ALLOW_PRIVATE_TARGETS; the discovery document names the JWKS, token and
userinfo URLs, so a provider (or whoever controls its document) could otherwise point
Gatehouse at the metadata service or an internal host. Redirects are not followed, for
the same reason.

The discovery cache is per connection and keyed by the connection's discovery URL and
`updated_at`: a connection changed through the API (another issuer, discovery URL or
preset) is looked up afresh on its next sign-in, in every process, with no message
between them; the JWKS of a document fetched afresh is fetched afresh too."""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from flask import current_app

from app.connections.models import APPLE, GOOGLE, MICROSOFT, Connection
from app.connections.options import MULTI_TENANT_DISCOVERY, TENANT_PLACEHOLDER
from app.core import security
from app.core.outbound import OutboundRefused, resolve_checked

log = logging.getLogger(__name__)

# (connect, read) seconds for every call upstream: a slow provider fails the sign-in, it
# does not hold a worker.
TIMEOUT = (3.05, 5)
DISCOVERY_TTL_SECONDS = 3600
JWKS_TTL_SECONDS = 3600
JWKS_REFRESH_SECONDS = 30
# Clock skew allowed on exp/iat/nbf.
LEEWAY_SECONDS = 60
MAX_RESPONSE_BYTES = 256 * 1024
# Asymmetric signatures only: never `none`, never HS* (keyed with the client secret).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")

# The oidc presets' discovery documents, used only for a connection whose options name
# neither discovery_url nor issuer (the Connections API fills in each preset's issuer, so
# a stored windowslive connection names Microsoft's `common` issuer: see options.py).
PRESET_DISCOVERY = {
    GOOGLE: "https://accounts.google.com/.well-known/openid-configuration",
    MICROSOFT: "https://login.microsoftonline.com/consumers/v2.0/.well-known/openid-configuration",
    APPLE: "https://appleid.apple.com/.well-known/openid-configuration",
}
DEFAULT_SCOPES = "openid profile email"
# An Entra tenant id (the `tid` claim): a GUID. Nothing else may be put in an issuer
# template, so a `tid` cannot smuggle a path or another host into the expected issuer.
TENANT_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class FederationError(Exception):
    """A sign-in through a connection failed. `error` is the OAuth error the app gets
    (RFC 6749 §4.1.2.1): access_denied when the sign-in was refused, temporarily_unavailable
    when the provider failed to answer properly."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def refused(description: str) -> FederationError:
    return FederationError("access_denied", description)


def unavailable(description: str) -> FederationError:
    return FederationError("temporarily_unavailable", description)


@dataclass(frozen=True)
class Provider:
    """The parts of a discovery document a sign-in uses. `issuer` holds `{tenantid}` only
    for Microsoft's multi-tenant documents (see issuer_template)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    auth_methods: tuple[str, ...]
    algorithms: tuple[str, ...]


_lock = threading.Lock()
# connection id → (its discovery URL and updated_at, fetched at, provider)
_discovery: dict[str, tuple[tuple[str, str], float, Provider]] = {}
# jwks_uri → (fetched at, keys by kid)
_jwks: dict[str, tuple[float, dict[str, Any]]] = {}


def clear_caches() -> None:
    """Forget every cached discovery document and JWKS (tests; a changed connection)."""
    with _lock:
        _discovery.clear()
        _jwks.clear()


def check_target(url: str, what: str) -> None:
    """Refuse (temporarily_unavailable) a provider URL Gatehouse must not call: not https
    (unless FEDERATION_ALLOW_HTTP), or whose host does not resolve or resolves to a
    loopback, private, link-local or reserved address (unless
    FEDERATION_ALLOW_PRIVATE_TARGETS). Call it before every request upstream."""
    config = current_app.config
    try:
        resolve_checked(
            url,
            allow_private=bool(config["FEDERATION_ALLOW_PRIVATE_TARGETS"]),
            allow_http=bool(config["FEDERATION_ALLOW_HTTP"]),
        )
    except OutboundRefused as exc:
        log.warning("federation: %s URL refused: %s", what, exc)
        raise unavailable(f"The identity provider's {what} address is not allowed") from None


def _get_json(url: str, what: str) -> dict[str, Any]:
    check_target(url, what)
    try:
        response = requests.get(
            url, timeout=TIMEOUT, headers={"Accept": "application/json"}, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise unavailable(f"The identity provider could not be reached ({what})") from exc
    return _json_of(response, what)


def _json_of(response: requests.Response, what: str) -> dict[str, Any]:
    if 300 <= response.status_code < 400:
        raise unavailable(f"The identity provider answered with a redirect ({what})")
    if response.status_code >= 500:
        raise unavailable(f"The identity provider failed ({what}: HTTP {response.status_code})")
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise unavailable(f"The identity provider's answer is too large ({what})")
    try:
        body = response.json()
    except ValueError as exc:
        raise unavailable(f"The identity provider did not answer with JSON ({what})") from exc
    if not isinstance(body, dict):
        raise unavailable(f"The identity provider's answer is not a JSON object ({what})")
    return body


def discovery_url(connection: Connection) -> str:
    """Where the connection's discovery document is: options.discovery_url, else the
    issuer's well-known address (options.issuer, else the preset's)."""
    options = connection.options or {}
    if options.get("discovery_url"):
        return str(options["discovery_url"])
    if options.get("issuer"):
        return str(options["issuer"]).rstrip("/") + "/.well-known/openid-configuration"
    if connection.strategy in PRESET_DISCOVERY:
        return PRESET_DISCOVERY[connection.strategy]
    raise refused(f"The connection {connection.name} names no issuer or discovery_url")


def issuer_template(discovery: str, issuer: str) -> bool:
    """Whether `issuer`, named by the document at `discovery`, is a multi-tenant template
    Gatehouse accepts: only the exact template of one of Microsoft's multi-tenant
    documents (app/connections/options.py MULTI_TENANT_ISSUERS)."""
    return MULTI_TENANT_DISCOVERY.get(discovery) == issuer


def issuer_matches(expected: str, issuer: str, tenant_id: str | None = None) -> bool:
    """Whether `issuer` is the `expected` one: equal to it, or, for a multi-tenant template,
    equal to the template filled with `tenant_id` (a GUID; when None, any GUID, for the
    RFC 9207 `iss` of an authorization response, which comes without a `tid`)."""
    if TENANT_PLACEHOLDER not in expected:
        return security.constant_time_equals(expected, issuer)
    if tenant_id is None:
        head, _, tail = expected.partition(TENANT_PLACEHOLDER)
        middle = issuer[len(head) : len(issuer) - len(tail)]
        return (
            len(issuer) > len(head) + len(tail)
            and issuer.startswith(head)
            and issuer.endswith(tail)
            and TENANT_ID.fullmatch(middle) is not None
        )
    if not TENANT_ID.fullmatch(tenant_id):
        return False
    return expected.replace(TENANT_PLACEHOLDER, tenant_id) == issuer


def provider_of(connection: Connection) -> Provider:
    """The connection's provider, from its discovery document (cached for this version of
    the connection)."""
    url = discovery_url(connection)
    version = (url, connection.updated_at.isoformat() if connection.updated_at else "")
    now = time.monotonic()
    with _lock:
        cached = _discovery.get(connection.id)
    if cached is not None and cached[0] == version and now - cached[1] < DISCOVERY_TTL_SECONDS:
        return cached[2]
    document = _get_json(url, "discovery")
    issuer = document.get("issuer")
    expected = (connection.options or {}).get("issuer")
    if not isinstance(issuer, str):
        raise unavailable("The identity provider's discovery document names no issuer")
    if TENANT_PLACEHOLDER in issuer:
        # A template is no issuer identifier, except from Microsoft's own multi-tenant
        # documents; their tokens are then checked against it with their `tid`.
        if not issuer_template(url, issuer):
            raise unavailable("The identity provider's discovery document names another issuer")
    elif expected and expected.rstrip("/") != issuer.rstrip("/"):
        # OIDC Discovery §4.3: the document must name the issuer it was asked for.
        raise unavailable("The identity provider's discovery document names another issuer")
    try:
        provider = Provider(
            issuer=issuer,
            authorization_endpoint=str(document["authorization_endpoint"]),
            token_endpoint=str(document["token_endpoint"]),
            jwks_uri=str(document["jwks_uri"]),
            userinfo_endpoint=document.get("userinfo_endpoint"),
            auth_methods=tuple(
                document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
            ),
            algorithms=tuple(
                alg
                for alg in document.get("id_token_signing_alg_values_supported") or ["RS256"]
                if alg in ALGORITHMS
            ),
        )
    except KeyError as exc:
        raise unavailable(f"The identity provider's discovery document lacks {exc}") from exc
    with _lock:
        _discovery[connection.id] = (version, now, provider)
        _jwks.pop(provider.jwks_uri, None)  # its keys are read afresh with the document
    return provider


def _keys(jwks_uri: str, *, refresh: bool) -> dict[str, Any]:
    now = time.monotonic()
    with _lock:
        cached = _jwks.get(jwks_uri)
    fresh = cached is not None and now - cached[0] < JWKS_TTL_SECONDS
    if cached is not None and (fresh and not refresh or now - cached[0] < JWKS_REFRESH_SECONDS):
        return cached[1]
    document = _get_json(jwks_uri, "JWKS")
    keys: dict[str, Any] = {}
    for entry in document.get("keys") or []:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            keys[str(entry.get("kid", ""))] = jwt.PyJWK.from_dict(entry).key
        except jwt.PyJWTError:
            continue  # a key type PyJWT does not know is no key to check with
    with _lock:
        _jwks[jwks_uri] = (now, keys)
    return keys


def signing_key(provider: Provider, kid: str) -> Any:
    """The provider's public key named `kid`: from the cached JWKS, else from a fresh
    one (at most once per JWKS_REFRESH_SECONDS); refused when it still has none."""
    key = _keys(provider.jwks_uri, refresh=False).get(kid)
    if key is None:
        key = _keys(provider.jwks_uri, refresh=True).get(kid)
    if key is None:
        raise refused("The ID token is signed with a key the identity provider does not publish")
    return key


def exchange_code(
    *,
    provider: Provider,
    client_id: str,
    client_secret: str,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    auth_method: str | None = None,
) -> dict[str, Any]:
    """The token response for an authorization code (client_secret_basic when the
    provider supports it, else client_secret_post, unless the connection says which)."""
    method = auth_method or (
        "client_secret_basic"
        if "client_secret_basic" in provider.auth_methods
        else "client_secret_post"
    )
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    auth = None
    if method == "client_secret_basic":
        auth = (
            requests.utils.quote(client_id, safe=""),
            requests.utils.quote(client_secret, safe=""),
        )
    else:
        data.update(client_id=client_id, client_secret=client_secret)
    check_target(provider.token_endpoint, "token")
    try:
        response = requests.post(
            provider.token_endpoint,
            data=data,
            auth=auth,
            timeout=TIMEOUT,
            headers={"Accept": "application/json"},
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise unavailable("The identity provider could not be reached (token)") from exc
    body = _json_of(response, "token")
    if response.status_code != 200 or "error" in body:
        error = str(body.get("error", f"HTTP {response.status_code}"))[:100]
        raise refused(f"The identity provider refused the code ({error})")
    if not isinstance(body.get("id_token"), str):
        raise refused("The identity provider answered without an ID token")
    return body


def userinfo(provider: Provider, access_token: str) -> dict[str, Any]:
    """The provider's userinfo answer for an access token (OIDC Core §5.3): a JSON object
    (a signed or encrypted userinfo is not asked for: the request accepts JSON only)."""
    assert provider.userinfo_endpoint is not None
    check_target(provider.userinfo_endpoint, "userinfo")
    try:
        response = requests.get(
            provider.userinfo_endpoint,
            timeout=TIMEOUT,
            allow_redirects=False,
            headers={"Accept": "application/json", "Authorization": f"Bearer {access_token}"},
        )
    except requests.RequestException as exc:
        raise unavailable("The identity provider could not be reached (userinfo)") from exc
    body = _json_of(response, "userinfo")
    if response.status_code != 200:
        error = str(body.get("error", f"HTTP {response.status_code}"))[:100]
        raise refused(f"The identity provider refused the userinfo request ({error})")
    return body


def validate_id_token(
    *, provider: Provider, token: str, client_id: str, nonce: str
) -> dict[str, Any]:
    """The ID token's claims once checked (OIDC Core §3.1.3.7): signed by a published key
    with an asymmetric algorithm the provider announced, issued by the provider, for
    `client_id` (and `azp` = client_id when it names several audiences or an azp), not
    expired, and carrying the nonce this sign-in sent. For a multi-tenant template issuer,
    `iss` must be the template filled with the token's own `tid`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise refused("The ID token is not a JWT") from exc
    algorithm = header.get("alg")
    if algorithm not in (provider.algorithms or ("RS256",)):
        raise refused(f"The ID token's algorithm {str(algorithm)[:20]} is not accepted")
    key = signing_key(provider, str(header.get("kid", "")))
    template = TENANT_PLACEHOLDER in provider.issuer
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=client_id,
            # A template's `iss` is checked below, once the token's `tid` is known.
            issuer=None if template else provider.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise refused("The ID token has expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise refused("The ID token was issued to another application") from exc
    except jwt.InvalidIssuerError as exc:
        raise refused("The ID token was issued by another provider") from exc
    except jwt.PyJWTError as exc:
        raise refused(f"The ID token is not valid ({type(exc).__name__})") from exc
    if template:
        tid = claims.get("tid")
        # No `tid` (or not a string): no tenant to fill the template with, so no issuer.
        if not isinstance(tid, str) or not issuer_matches(provider.issuer, str(claims["iss"]), tid):
            raise refused("The ID token was issued by another provider")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise refused("The ID token was issued to another application (azp)")
    got = claims.get("nonce")
    if not isinstance(got, str) or not security.constant_time_equals(got, nonce):
        raise refused("The ID token does not carry this sign-in's nonce")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise refused("The ID token names no subject")
    return claims
