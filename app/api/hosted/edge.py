"""The tenant a hosted request belongs to, entered once at the edge of its view.

A hosted page has no credential naming its tenant, as the APIs have (app.api.auth): it
learns it from what the page carries. `@in_page_tenant(from_=…)` reads it once with one
of the resolvers below (or a page's own: the account pages' `?tenant=`, a mailed link's
token), keeps what it read for the view (`page_origin()`), and runs the view in that
tenant's scope; routes never open a scope themselves. A resolver that finds no tenant
runs the view in none (the view then answers as it always did: the sign-in, "link
invalid"); one that finds a broken or forged carrier raises the error the page shows.

The decorator goes right above the view, under `@public`: the resolver runs inside the
request's transaction, and its errors become the same error pages as the view's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request

from app.api.hosted import browser
from app.applications import authorization
from app.applications.authorization import AuthorizationRequest
from app.core.tenancy import tenant_scope
from app.federation import service as federation_service

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass(frozen=True)
class PageOrigin:
    """What the resolver read: the tenant, the sealed payload it came in (if any) and the
    app's authorization request (if the page serves one)."""

    tenant_id: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    authz: AuthorizationRequest | None = None


Resolver = Callable[[], PageOrigin]


def in_page_tenant(from_: Resolver) -> Callable[[F], F]:
    """Run the view (or error handler) in the scope of the tenant `from_` reads from the
    request, or in none when it names none."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            origin = from_()
            g.page_origin = origin
            if origin.tenant_id is None:
                return view(*args, **kwargs)
            with tenant_scope(origin.tenant_id):
                return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def page_origin() -> PageOrigin:
    """What `@in_page_tenant` read for this request (a programming error elsewhere)."""
    origin = g.get("page_origin")
    if origin is None:
        raise RuntimeError("the view is not decorated with @in_page_tenant")
    return cast(PageOrigin, origin)


def page_authz() -> AuthorizationRequest:
    """The app's authorization request this page serves (a programming error when the
    view's resolver reads none)."""
    authz = page_origin().authz
    if authz is None:
        raise RuntimeError("this page's resolver carries no authorization request")
    return authz


# --- resolvers --------------------------------------------------------------------------


def authorization_request() -> PageOrigin:
    """GET /authorize: the app's request in the query, checked (errors go to the client's
    redirect URI or are an error page, as authorization.parse_request decides)."""
    args = request.args
    repeated = [name for name in args if len(args.getlist(name)) > 1]
    authz = authorization.parse_request(args.to_dict(), repeated=repeated)
    return PageOrigin(authz.tenant_id, authz=authz)


def _sealed(
    purpose: str, name: str, max_age: int, once: bool, read: Callable[[dict[str, Any]], PageOrigin]
) -> Resolver:
    def resolve() -> PageOrigin:
        # Unsealed here only: a single-use field is claimed once, by this read.
        payload = browser.unseal(purpose, request.form.get(name), max_age, once=once)
        return read(payload)

    return resolve


def sealed_request(purpose: str, name: str) -> Resolver:
    """The form field `name` sealing the app's authorization request itself (the login
    page's `authz`)."""

    def read(payload: dict[str, Any]) -> PageOrigin:
        authz = AuthorizationRequest.from_dict(payload)
        return PageOrigin(authz.tenant_id, payload, authz)

    return _sealed(purpose, name, browser.FORM_TTL, False, read)


def sealed_step(
    purpose: str, name: str, *, max_age: int = browser.FORM_TTL, once: bool = False
) -> Resolver:
    """The form field `name` sealing a step of a sign-in for an app (the second factor,
    the enrolment, the signed-in notice): its payload holds the request under `authz`."""

    def read(payload: dict[str, Any]) -> PageOrigin:
        authz = AuthorizationRequest.from_dict(payload["authz"])
        return PageOrigin(authz.tenant_id, payload, authz)

    return _sealed(purpose, name, max_age, once, read)


def sealed_account_step(
    purpose: str, name: str, *, max_age: int = browser.FORM_TTL, once: bool = False
) -> Resolver:
    """The form field `name` sealing a step of a sign-in for the account page: its
    payload names the tenant under `tid`."""

    def read(payload: dict[str, Any]) -> PageOrigin:
        return PageOrigin(str(payload["tid"]), payload)

    return _sealed(purpose, name, max_age, once, read)


def federated_sign_in() -> PageOrigin:
    """GET /login/callback: the sign-in this browser has pending at another provider (its
    cookie, app.federation's sealed value): its tenant and the app's request; none when
    the browser has none (the callback then says so)."""
    pending = federation_service.read_pending(browser.read_federation())
    if pending is None:
        return PageOrigin(None)
    authz = AuthorizationRequest.from_dict(pending.carry)
    return PageOrigin(pending.tenant_id, {"pending": pending}, authz)


def named_tenant(find: Callable[[], str | None]) -> Resolver:
    """A tenant a page's own reader finds (the account pages' `?tenant=`, a mailed link's
    token), or None."""

    def resolve() -> PageOrigin:
        return PageOrigin(find())

    return resolve


# --- the one request that spans tenants -------------------------------------------------


def in_session_tenant(tenant_id: str, session_id: str, action: Callable[..., T]) -> T:
    """`action(tenant_id=…, session_id=…)` in that sign-in session's tenant. Logout
    without a tenant ends the browser's sessions with every tenant it is signed in to:
    each session's work runs in its own tenant's scope."""
    with tenant_scope(tenant_id):
        return action(tenant_id=tenant_id, session_id=session_id)
