"""The console's Settings page: the tenant's branding, sign-up, password policy, the MFA
requirement for users and the console's own `console_require_mfa`. Read by every member,
saved by an admin, checked by the schema PATCH /tenants/{id} uses (app.api.tenant_settings)
and saved by the same service (app.tenants.service.update_tenant), audited as
`tenant.settings_changed`."""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, request, url_for
from werkzeug.datastructures import MultiDict

from app.api.auth import public
from app.api.console import blp, page, show_form_on_error
from app.api.console.edge import console_tenant, console_view, current
from app.api.hosted.forms import load_form
from app.api.tenant_settings import SIGNUP_FIELDS, TenantSettingsInSchema
from app.core.http import accepts_form
from app.tenants import service as tenant_service

BRANDING = {
    "display_name": "Display name",
    "logo_url": "Logo URL (https)",
    "primary_color": "Primary colour (#rrggbb)",
    "support_url": "Support URL (https)",
}
FLAGS = ("signup_enabled", "mfa_required", "console_require_mfa")
SIGNUP_LABELS = {
    "name": "Full name",
    "given_name": "Given name",
    "family_name": "Family name",
    "nickname": "Nickname",
    "username": "Username",
}


def _shown(settings: dict[str, Any]) -> dict[str, Any]:
    """The form's values from the tenant's settings (as tenant_service.tenant_settings
    reads them)."""
    return {
        **{f"branding.{key}": settings["branding"].get(key) or "" for key in BRANDING},
        **{flag: bool(settings[flag]) for flag in FLAGS},
        "signup_fields": list(settings["signup_fields"]),
        "password_policy.min_length": str(settings["password_policy"]["min_length"]),
        "password_policy.block_common": bool(settings["password_policy"]["block_common"]),
    }


def _typed(form: MultiDict[str, str]) -> dict[str, Any]:
    """The posted form's values, as shown again when refused (an unticked box is absent)."""
    return {
        **{f"branding.{key}": form.get(f"branding.{key}", "").strip()[:2048] for key in BRANDING},
        **{flag: flag in form for flag in FLAGS},
        "signup_fields": form.getlist("signup_fields")[: len(SIGNUP_FIELDS)],
        "password_policy.min_length": form.get("password_policy.min_length", "").strip()[:16],
        "password_policy.block_common": "password_policy.block_common" in form,
    }


def _settings(typed: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body's `settings` the form stands for (an empty branding field removes
    the key, as null does in the API)."""
    return {
        "branding": {key: typed[f"branding.{key}"] or None for key in BRANDING},
        **{flag: typed[flag] for flag in FLAGS},
        "signup_fields": typed["signup_fields"],
        "password_policy": {
            "min_length": typed["password_policy.min_length"],
            "block_common": typed["password_policy.block_common"],
        },
    }


def _context(values: dict[str, Any]) -> dict[str, Any]:
    return {"values": values, "branding": BRANDING, "signup_labels": SIGNUP_LABELS}


@blp.route("/settings", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def settings() -> Response:
    """Show the tenant's settings (an admin also changes them)"""
    tenant = tenant_service.get_tenant(current().user.tenant_id)
    notice = "The settings were saved." if request.args.get("done") == "saved" else None
    return page(
        "settings.html", notice=notice, **_context(_shown(tenant_service.tenant_settings(tenant)))
    )


@blp.route("/settings", methods=["POST"])
@accepts_form
@public(tenant_from=console_tenant)
@console_view(action="admin")
def save_settings() -> Response:
    """Save the tenant's settings"""
    typed = _typed(request.form)
    show_form_on_error("settings.html", **_context(typed))
    settings = load_form(
        TenantSettingsInSchema(),
        "Nothing was saved: correct the fields marked below.",
        _settings(typed),
    )
    console = current()
    tenant_service.update_tenant(
        tenant_id=console.user.tenant_id, settings=settings, actor=console.actor
    )
    return redirect(url_for("console.settings", done="saved"), code=303)  # type: ignore[return-value]
