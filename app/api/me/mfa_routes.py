"""Routes of the me surface for the caller's own second factor: start and confirm TOTP."""

from __future__ import annotations

from typing import Any

from app.api.auth import current_principal, requires
from app.api.me import blp
from app.api.me.schemas import EnrolmentSchema, TotpConfirmSchema, TotpStartSchema
from app.credentials import mfa as mfa_service
from app.credentials.models import MfaEnrolment
from app.users import service as user_service


@blp.route("/users/me/mfa/totp", methods=["POST"])
@requires(None, "update:current_user", user_arg=None)
@blp.response(201, TotpStartSchema)
def start_totp() -> mfa_service.TotpStart:
    """Start a TOTP enrolment: a new secret and its otpauth:// URI (confirm it with a code)"""
    principal = current_principal()
    user = user_service.get_user(principal.user_id or "")
    return mfa_service.start_totp(actor=principal, user=user)


@blp.route("/users/me/mfa/totp/confirm", methods=["POST"])
@requires(None, "update:current_user", user_arg=None)
@blp.arguments(TotpConfirmSchema)
@blp.response(200, EnrolmentSchema)
def confirm_totp(body: dict[str, Any]) -> MfaEnrolment:
    """Confirm the TOTP enrolment with a current code; password sign-in then needs `otp`"""
    principal = current_principal()
    user = user_service.get_user(principal.user_id or "")
    return mfa_service.confirm_totp(actor=principal, user=user, code=body["code"])
