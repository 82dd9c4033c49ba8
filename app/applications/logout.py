"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): which app asks, where the
browser may be sent back to, and which user the app believes is signed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from app.applications import service as application_service
from app.core.errors import Invalid, Unauthenticated
from app.tokens import signing

MAX_STATE = 1024


@dataclass(frozen=True)
class LogoutRequest:
    """A checked logout request. `tenant_id` is None when neither a client nor a hint
    names one (then every sign-in session of the browser ends)."""

    tenant_id: str | None = None
    client_id: str | None = None
    redirect_uri: str | None = None
    state: str | None = None
    hinted_user: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogoutRequest:
        return cls(**data)


def _hint(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        return signing.verify_id_token_hint(token)
    except Unauthenticated as exc:
        raise Invalid("The id_token_hint is not valid", code="invalid_id_token_hint") from exc


def parse_logout(params: Mapping[str, str]) -> LogoutRequest:
    """Check a logout request; Invalid (shown on the page, never redirected) for an
    unknown client, a bad hint, or a post_logout_redirect_uri the app did not register."""
    hint = _hint(params.get("id_token_hint"))
    audience = hint.get("aud") if hint else None
    client_id = params.get("client_id") or (audience if isinstance(audience, str) else None)
    application = application_service.find_client(client_id) if client_id else None
    if params.get("client_id") and application is None:
        raise Invalid("The application (client_id) is not known", code="unknown_client")
    if hint and params.get("client_id") and audience != params["client_id"]:
        raise Invalid(
            "The id_token_hint was issued to another client", code="invalid_id_token_hint"
        )
    redirect_uri = params.get("post_logout_redirect_uri")
    if redirect_uri and (
        application is None or redirect_uri not in application.post_logout_redirect_uris
    ):
        raise Invalid(
            "The post_logout_redirect_uri is not registered for this application",
            code="redirect_uri_mismatch",
        )
    state = params.get("state")
    if state is not None and len(state) > MAX_STATE:
        raise Invalid(f"state is longer than {MAX_STATE} characters", code="invalid_request")
    tenant_id = application.tenant_id if application else (hint or {}).get("tid")
    return LogoutRequest(
        tenant_id=tenant_id if isinstance(tenant_id, str) else None,
        client_id=application.id if application else None,
        redirect_uri=redirect_uri or None,
        state=state if redirect_uri else None,
        hinted_user=str(hint["sub"]) if hint else None,
    )
