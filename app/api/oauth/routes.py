"""Routes of the OAuth surface: the token endpoint (authorization_code, password,
refresh_token, client_credentials), RFC 7009 revocation, userinfo, JWKS and OpenID
discovery."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import unquote

from flask import current_app, request

from app.api.auth import client_ip, current_principal, public, requires, tenant_header
from app.api.oauth import blp
from app.api.oauth.schemas import (
    EmptySchema,
    JwksSchema,
    OpenIdConfigurationSchema,
    RevokeRequestSchema,
    TokenRequestSchema,
    TokenResponseSchema,
    UserInfoSchema,
)
from app.applications import grants as application_grants
from app.applications import service as application_service
from app.applications.models import Application
from app.core import ratelimit
from app.core.errors import Invalid, Unauthenticated
from app.core.http import accepts_form
from app.core.inputs import text_problem
from app.core.scopes import APP_SCOPES
from app.core.tenancy import tenant_scope
from app.signin import flow as signin_flow
from app.tokens import claims as token_claims
from app.tokens import grants, signing
from app.tokens import service as token_service
from app.users import service as user_service

GRANT_TYPES = ("authorization_code", "password", "refresh_token", "client_credentials")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
NO_STORE_DOC = {name: {"schema": {"type": "string", "enum": [v]}} for name, v in NO_STORE.items()}


def _malformed_basic() -> Unauthenticated:
    return Unauthenticated(
        "Malformed Basic credentials",
        code="invalid_client",
        headers={"WWW-Authenticate": 'Basic realm="gatehouse"'},
    )


def _basic_credentials() -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: HTTP Basic with form-urlencoded client id and secret."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _malformed_basic() from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _malformed_basic()
    credentials = unquote(client_id), unquote(secret)
    # The header's own text was checked at the edge, not what it encodes: a NUL (raw or
    # %00) would reach the database, which cannot store it.
    if any(text_problem(part) for part in credentials):
        raise _malformed_basic()
    return credentials


def _require(body: dict[str, Any], *names: str) -> None:
    missing = [name for name in names if not body.get(name)]
    if missing:
        raise Invalid(f"Missing parameter: {', '.join(missing)}", code="invalid_request")


def _registered_client(body: dict[str, Any]) -> Application | None:
    """The registered application a token request names (HTTP Basic or `client_id` in the
    body), authenticated as its type requires; None when the client_id names no app (the
    password and refresh grants then ignore it, as before applications existed)."""
    basic = _basic_credentials()
    client_id, secret = basic or (body.get("client_id"), body.get("client_secret"))
    if application_service.find_client(client_id) is None:
        return None
    return application_service.authenticate_client(
        client_id=client_id or "", client_secret=secret, challenge="Basic" if basic else "Bearer"
    )


def _tenant_of(client: Application | None) -> str:
    """The tenant a grant signs in to: the application's, else X-Tenant-ID's (which must
    agree with the application's when both are given)."""
    named = tenant_header()
    if client is None:
        if named is None:
            raise Invalid("X-Tenant-ID names the tenant to sign in to", code="invalid_request")
        return named
    if named is not None and named != client.tenant_id:
        raise Invalid("X-Tenant-ID is not the application's tenant", code="invalid_request")
    return client.tenant_id


def _grant(body: dict[str, Any]) -> token_service.TokenSet:
    """Issue the tokens of the grant the body asks for. The tenant of a user's grant is
    known only once the body is parsed and the client authenticated (outside any tenant:
    client ids are global), so the grant enters it here, once; client_credentials enters
    none (its application names it)."""
    grant = body["grant_type"]
    if grant == "client_credentials":
        basic = _basic_credentials()
        client_id, secret = basic or (body.get("client_id"), body.get("client_secret"))
        return grants.client_credentials_grant(
            client_id=client_id,
            client_secret=secret,
            tenant_id=tenant_header(),
            challenge="Basic" if basic else "Bearer",
        )
    tenant_id, issue = _user_grant(grant, body)
    with tenant_scope(tenant_id):
        return issue()


def _user_grant(
    grant: str, body: dict[str, Any]
) -> tuple[str, Callable[[], token_service.TokenSet]]:
    """The tenant a grant signs in to and the call that issues its tokens there, after the
    checks that come first (parameters, client authentication, rate limit)."""
    ip = client_ip() or "-"
    if grant == "authorization_code":
        _require(body, "code")
        client = _registered_client(body)
        if client is None:
            raise Unauthenticated("Unknown client_id", code="invalid_client")
        _tenant_of(client)
        ratelimit.check("RATELIMIT_REFRESH_PER_IP", ip)
        return client.tenant_id, partial(
            application_grants.authorization_code_grant,
            client=client,
            code=body["code"],
            redirect_uri=body.get("redirect_uri"),
            code_verifier=body.get("code_verifier"),
            ip=ip,
            user_agent=request.user_agent.string,
        )
    if grant == "password":
        _require(body, "password")
        client = _registered_client(body)
        tenant_id = _tenant_of(client)
        return tenant_id, partial(
            signin_flow.password_grant,
            tenant_id=tenant_id,
            username=body.get("username"),
            email=body.get("email"),
            password=body["password"],
            ip=ip,
            otp=body.get("otp"),
            client_id=client.id if client else None,
            scope=body.get("scope"),
            allowed_scopes=client.permitted_scopes if client else (),
            user_agent=request.user_agent.string,
        )
    if grant == "refresh_token":
        _require(body, "refresh_token")
        client = _registered_client(body)
        ratelimit.check("RATELIMIT_REFRESH_PER_IP", ip)
        expected = _tenant_of(client) if client else tenant_header()
        return grants.refresh_token_tenant(body["refresh_token"], expected=expected), partial(
            grants.refresh_grant,
            refresh_token=body["refresh_token"],
            ip=ip,
            client_id=client.id if client else None,
            scope=body.get("scope"),
            allowed_scopes=client.permitted_scopes if client else None,
        )
    raise Invalid(
        f"grant_type must be one of {', '.join(GRANT_TYPES)}", code="unsupported_grant_type"
    )


@blp.route("/oauth/token", methods=["POST"])
@accepts_form
@public
@blp.tenant_header(
    "The tenant to sign in to: required by the password grant unless client_id names a "
    "registered application (which names its tenant)"
)
@blp.arguments(TokenRequestSchema, location="json_or_form")
@blp.response(200, TokenResponseSchema, headers=NO_STORE_DOC)
@blp.errors(401, 403, 429)
# A confidential application or the client_credentials grant may authenticate with HTTP
# Basic; the others need nothing.
@blp.doc(security=[{}, {"ClientBasic": []}])
def token(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Issue tokens (authorization_code, password, refresh_token or client_credentials)"""
    tokens = _grant(body)
    body = {
        "access_token": tokens.access_token,
        "id_token": tokens.id_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in,
        "scope": tokens.scope,
    }
    return {k: v for k, v in body.items() if v is not None}, 200, NO_STORE


@blp.route("/oauth/revoke", methods=["POST"])
@accepts_form
@public
@blp.arguments(RevokeRequestSchema, location="json_or_form")
@blp.response(200, EmptySchema, headers=NO_STORE_DOC)
def revoke(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Revoke a refresh token and its family (RFC 7009; unknown tokens answer 200 too)"""
    tenant_id = token_service.tenant_of_refresh_token(body["token"])
    # The token names its tenant, read once the body is parsed (a token that names none
    # is no token of ours).
    if tenant_id is not None:
        with tenant_scope(tenant_id):
            grants.revoke_token(token=body["token"])
    return {}, 200, NO_STORE


@blp.route("/userinfo", methods=["GET", "POST"])
@accepts_form
# An application's token asked for `openid` (OIDC Core §5.3.1); others hold read:current_user.
@requires(None, ("read:current_user", "openid"), user_arg=None)
@blp.response(200, UserInfoSchema)
def userinfo() -> dict[str, Any]:
    """Describe the signed-in user (OpenID Connect Core §5.3)"""
    principal = current_principal()
    user = user_service.get_user(principal.user_id or "")
    return token_claims.user_claims(user, principal.scopes)


@blp.route("/.well-known/jwks.json", methods=["GET"])
@public
@blp.response(200, JwksSchema)
def jwks() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Publish the public signing keys (current and previous)"""
    # Short, so verifiers that honour caching see a rotated key soon (PyJWKClient and
    # most libraries re-fetch at once on an unknown kid anyway).
    return signing.jwks(), 200, {"Cache-Control": "public, max-age=60"}


@blp.route("/.well-known/openid-configuration", methods=["GET"])
@blp.response(200, OpenIdConfigurationSchema)
def openid_configuration() -> dict[str, Any]:
    """Describe this issuer (OpenID Connect Discovery)"""
    issuer = current_app.config["ISSUER"].rstrip("/")
    return {
        "issuer": current_app.config["ISSUER"],
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "end_session_endpoint": f"{issuer}/logout",
        "grant_types_supported": list(GRANT_TYPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": True,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [signing.ALGORITHM],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": ["none"],
        # What an application may ask for (it gets those it is allowed and the user holds).
        "scopes_supported": list(APP_SCOPES),
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "azp",
            "at_hash",
            "email",
            "email_verified",
            "name",
            "given_name",
            "family_name",
            "preferred_username",
            "picture",
        ],
    }
