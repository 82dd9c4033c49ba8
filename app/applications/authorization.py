"""Authorization requests (RFC 6749 §4.1.1 with PKCE, RFC 7636; OIDC Core §3.1.2.1): check
one, decide where its errors go, and issue the single-use code that answers it."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import current_app

from app.applications import service as application_service
from app.applications.models import Application, AuthorizationCode
from app.core import security
from app.core.db import db, utcnow
from app.core.errors import AppError, Invalid
from app.core.scopes import APP_SCOPES, unknown_scope_message
from app.users.models import User

# What a request may ask for: OIDC's scopes, and the user and admin scopes of the
# catalogue; an unknown one is invalid_scope. The tokens then hold what was asked that
# the user holds and the app is allowed (tokens.claims.application_scopes).
KNOWN_SCOPES = frozenset(APP_SCOPES)
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
# RFC 7636 §4.2: an S256 challenge is the base64url of 32 bytes, 43 characters.
S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_STATE = 1024
MAX_NONCE = 512
MAX_SCOPE = 2048
MAX_HINT = 255


class AuthorizationError(AppError):
    """An error the client must learn through its redirect URI (RFC 6749 §4.1.2.1)."""

    status = 302

    def __init__(self, error: str, description: str, *, redirect_uri: str, state: str | None):
        super().__init__(description, code=error)
        self.redirect_uri = redirect_uri
        self.state = state

    @property
    def location(self) -> str:
        params = {"error": self.code, "error_description": self.message}
        if self.state is not None:
            params["state"] = self.state
        return with_query(self.redirect_uri, {**params, "iss": current_app.config["ISSUER"]})


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked request; `redirect_uri_given` says the token request must repeat it."""

    client_id: str
    tenant_id: str
    redirect_uri: str
    redirect_uri_given: bool
    code_challenge: str
    state: str | None = None
    nonce: str | None = None
    scope: str | None = None
    prompt: frozenset[str] = field(default_factory=frozenset)
    max_age: int | None = None
    login_hint: str | None = None
    # The end-user's preferred languages (OIDC Core §3.1.2.1), space separated: the
    # hosted pages and the mails they send speak the first one they know.
    ui_locales: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["prompt"] = sorted(self.prompt)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthorizationRequest:
        return cls(**{**data, "prompt": frozenset(data.get("prompt") or ())})

    @property
    def forces_login(self) -> bool:
        return bool(self.prompt & {"login", "select_account"}) or self.max_age == 0


def with_query(uri: str, params: Mapping[str, str]) -> str:
    """`uri` with `params` added to the query it already has (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _client_and_redirect(params: Mapping[str, str]) -> tuple[Application, str, bool]:
    """The app and redirect URI: errors here are shown on the page, never redirected to
    (RFC 6749 §4.1.2.1: the URI is not known to be the client's)."""
    application = application_service.find_client(params.get("client_id"))
    if application is None:
        raise Invalid("The application (client_id) is not known", code="unknown_client")
    given = params.get("redirect_uri")
    if given:
        if not application_service.redirect_uri_registered(application, given):
            raise Invalid(
                "The redirect_uri is not registered for this application",
                code="redirect_uri_mismatch",
            )
        return application, given, True
    if len(application.redirect_uris) != 1:
        raise Invalid(
            "redirect_uri is required: this application registered none or several",
            code="redirect_uri_mismatch",
        )
    return application, application.redirect_uris[0], False


def _bounded(params: Mapping[str, str], name: str, limit: int, fail: Any) -> str | None:
    value = params.get(name)
    if value is not None and len(value) > limit:
        raise fail("invalid_request", f"{name} is longer than {limit} characters")
    return value or None


def parse_request(
    params: Mapping[str, str], *, repeated: Collection[str] = ()
) -> AuthorizationRequest:
    """Check an authorization request. Invalid (`unknown_client`, `redirect_uri_mismatch`)
    for errors the page must show; AuthorizationError for those the client gets."""
    application, redirect_uri, given = _client_and_redirect(params)
    state = params.get("state")

    def fail(error: str, description: str) -> AuthorizationError:
        kept = state if state is not None and len(state) <= MAX_STATE else None
        return AuthorizationError(error, description, redirect_uri=redirect_uri, state=kept)

    if repeated:
        raise fail("invalid_request", f"Repeated parameter: {', '.join(sorted(repeated))}")
    state = _bounded(params, "state", MAX_STATE, fail)
    if "request" in params:
        raise fail("request_not_supported", "Request objects are not supported")
    if "request_uri" in params:
        raise fail("request_uri_not_supported", "request_uri is not supported")
    response_type = params.get("response_type")
    if not response_type:
        raise fail("invalid_request", "response_type is required")
    if response_type != "code":
        raise fail("unsupported_response_type", "Only response_type=code is supported")
    if params.get("response_mode") not in (None, "query"):
        raise fail("invalid_request", "Only response_mode=query is supported")
    challenge = params.get("code_challenge")
    if not challenge:
        raise fail("invalid_request", "code_challenge is required (PKCE, RFC 7636)")
    if params.get("code_challenge_method") != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256 (plain is refused)")
    if not S256_CHALLENGE.fullmatch(challenge):
        raise fail("invalid_request", "code_challenge is not an S256 challenge")
    scope = _bounded(params, "scope", MAX_SCOPE, fail)
    unknown = sorted(set((scope or "").split()) - KNOWN_SCOPES)
    if unknown:
        raise fail("invalid_scope", unknown_scope_message(unknown[0][:100], APP_SCOPES))
    prompt = frozenset((params.get("prompt") or "").split())
    if not prompt <= PROMPTS or ("none" in prompt and len(prompt) > 1):
        raise fail("invalid_request", "prompt must be none, or any of login consent select_account")
    max_age = params.get("max_age")
    if max_age is not None and not (max_age.isdigit() and len(max_age) <= 9):
        raise fail("invalid_request", "max_age must be a number of seconds")
    return AuthorizationRequest(
        client_id=application.id,
        tenant_id=application.tenant_id,
        redirect_uri=redirect_uri,
        redirect_uri_given=given,
        code_challenge=challenge,
        state=state,
        nonce=_bounded(params, "nonce", MAX_NONCE, fail),
        scope=scope,
        prompt=prompt,
        max_age=int(max_age) if max_age is not None else None,
        login_hint=_bounded(params, "login_hint", MAX_HINT, fail),
        ui_locales=_bounded(params, "ui_locales", MAX_HINT, fail),
    )


def application_of(request: AuthorizationRequest) -> Application:
    """The app a request (carried across the form) names, checked again: it may have been
    deleted or lost the redirect URI meanwhile. Invalid as parse_request's page errors."""
    params = {"client_id": request.client_id}
    if request.redirect_uri_given:
        params["redirect_uri"] = request.redirect_uri
    application, redirect_uri, _ = _client_and_redirect(params)
    if redirect_uri != request.redirect_uri:
        raise Invalid("The redirect_uri is no longer registered", code="redirect_uri_mismatch")
    return application


def login_required(request: AuthorizationRequest, description: str) -> AuthorizationError:
    """`prompt=none` and the user must sign in first (OIDC Core §3.1.2.6)."""
    return AuthorizationError(
        "login_required", description, redirect_uri=request.redirect_uri, state=request.state
    )


def access_denied(request: AuthorizationRequest) -> AuthorizationError:
    """The user cancelled the sign-in."""
    return AuthorizationError(
        "access_denied",
        "The user cancelled the sign-in",
        redirect_uri=request.redirect_uri,
        state=request.state,
    )


def server_failure(request: AuthorizationRequest, status: int) -> AuthorizationError:
    """A failure of ours while answering a request (RFC 6749 §4.1.2.1: a 5xx cannot reach
    the client through a redirect, these codes do)."""
    error = "temporarily_unavailable" if status == 503 else "server_error"
    return AuthorizationError(
        error,
        "The sign-in could not be completed; try again",
        redirect_uri=request.redirect_uri,
        state=request.state,
    )


def session_satisfies(request: AuthorizationRequest, auth_time: datetime) -> bool:
    """Whether a sign-in at `auth_time` is recent enough for the request's `max_age`."""
    if request.forces_login:
        return False
    if request.max_age is None:
        return True
    return utcnow() - auth_time <= timedelta(seconds=request.max_age)


def issue_code(
    *,
    request: AuthorizationRequest,
    user: User,
    auth_time: datetime,
    ttl: int | None = None,
    amr: list[str] | None = None,
    login_session_id: str | None = None,
) -> str:
    """A new authorization code for `user` (in the request's tenant scope), valid `ttl`
    seconds (AUTHORIZATION_CODE_TTL by default); only its hash is stored. `amr` (how the
    user authenticated) goes into the ID token; `login_session_id` is the browser sign-in
    session the code was issued through (ending it ends the app's session)."""
    raw = security.random_token(32)
    now = utcnow()
    ttl = current_app.config["AUTHORIZATION_CODE_TTL"] if ttl is None else ttl
    db.session.add(
        AuthorizationCode(
            code_hash=security.sha256_hex(raw),
            tenant_id=request.tenant_id,
            client_id=request.client_id,
            user_id=user.id,
            redirect_uri=request.redirect_uri if request.redirect_uri_given else None,
            code_challenge=request.code_challenge,
            nonce=request.nonce,
            scope=request.scope,
            auth_time=auth_time,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
            amr=list(amr) if amr else None,
            login_session_id=login_session_id,
        )
    )
    db.session.flush()
    return raw


def success_location(request: AuthorizationRequest, code: str) -> str:
    """The redirect that hands the code to the client, with `state` and `iss` (RFC 9207)."""
    params = {"code": code}
    if request.state is not None:
        params["state"] = request.state
    params["iss"] = current_app.config["ISSUER"]
    return with_query(request.redirect_uri, params)
