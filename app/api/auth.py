"""The HTTP side of authentication and authorization, in one place for every surface.

Reads the credential (`X-APIKEY`, `x-api-key`, `Authorization: Bearer`) and the tenant
header (`X-Tenant-ID`, `x-m2-organization-id`), resolves a Principal, enters its tenant
scope, checks the endpoint's any-user / current-user scopes, and owns the transaction:
commit on success, roll back on error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request

from app.core.db import db
from app.core.errors import Forbidden, Invalid, NotFound, Unauthenticated
from app.core.smorest import API_KEY_SCHEMES, AuthDoc, document_auth
from app.core.tenancy import Principal, tenant_scope
from app.tenants import service as tenant_service
from app.tokens import bearer
from app.users import policies as policy_service
from app.users import service as user_service
from app.users.models import User

F = TypeVar("F", bound=Callable[..., Any])
# For the OpenAPI document: what each decorator can answer before the view runs
# (400 tenant_required, 401, 403, 404 tenant_not_found, 503 database down).
_KEY_STATUSES = (400, 401, 403, 404, 503)
TENANT_HEADERS = ("X-Tenant-ID", "x-m2-organization-id")
API_KEY_HEADERS = ("X-APIKEY", "x-api-key")


def current_principal() -> Principal:
    """The principal of the request being served (set by the decorators below)."""
    principal = getattr(g, "principal", None)
    if principal is None:
        raise RuntimeError("no authenticated principal in this request")
    return cast(Principal, principal)


def tenant_header() -> str | None:
    """The tenant named by X-Tenant-ID / x-m2-organization-id; Forbidden when they differ."""
    values = {request.headers[name].strip() for name in TENANT_HEADERS if request.headers.get(name)}
    if len(values) > 1:
        raise Forbidden("X-Tenant-ID and x-m2-organization-id disagree", code="tenant_mismatch")
    return values.pop() if values else None


def _raw_credential() -> tuple[str, str] | None:
    """('api_key' | 'bearer', value) from the request headers, or None."""
    for name in API_KEY_HEADERS:
        value = request.headers.get(name, "").strip()
        if value:
            return "api_key", value
    authorization = request.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        value = value.strip()
        return ("api_key" if tenant_service.looks_like_api_key(value) else "bearer"), value
    return None


def _api_key_principal(raw: str, named_tenant: str | None, *, tenant_required: bool) -> Principal:
    if tenant_service.is_root_key(raw):
        if named_tenant is None:
            if tenant_required:
                raise Invalid(
                    "The root key must name a tenant in X-Tenant-ID", code="tenant_required"
                )
            return Principal(tenant_id="", scopes=frozenset({"*"}), kind="root")
        tenant_service.get_tenant(named_tenant)
        return Principal(tenant_id=named_tenant, scopes=frozenset({"*"}), kind="root")
    api_key = tenant_service.authenticate_api_key(raw)
    if named_tenant is not None and named_tenant != api_key.tenant_id:
        raise Forbidden("The tenant header does not match the API key", code="tenant_mismatch")
    return Principal(
        tenant_id=api_key.tenant_id,
        scopes=frozenset(api_key.scopes),
        kind="api_key",
        credential_id=api_key.id,
    )


def _bearer_principal(raw: str, named_tenant: str | None) -> Principal:
    principal = bearer.authenticate_access_token(raw)
    if named_tenant is not None and named_tenant != principal.tenant_id:
        raise Forbidden("The tenant header does not match the token", code="tenant_mismatch")
    return principal


def client_ip() -> str | None:
    """The caller's address (ProxyFix has already applied trusted X-Forwarded-For hops)."""
    return request.remote_addr


def authenticate(*, tenant_required: bool = True) -> Principal:
    """Resolve the request's principal; Unauthenticated, Forbidden, Invalid or NotFound."""
    credential = _raw_credential()
    if credential is None:
        raise Unauthenticated("Authentication is required", code="missing_credentials")
    kind, raw = credential
    named_tenant = tenant_header()
    if kind == "api_key":
        principal = _api_key_principal(raw, named_tenant, tenant_required=tenant_required)
    else:
        principal = _bearer_principal(raw, named_tenant)
    _note_activity(principal)
    return replace(principal, ip=client_ip())


def _note_activity(principal: Principal) -> None:
    if principal.is_user and principal.user_id:
        user_service.record_activity(tenant_id=principal.tenant_id, user_id=principal.user_id)
    elif principal.kind == "api_key" and principal.credential_id:
        tenant_service.record_key_use_by_id(principal.credential_id)


def _alternatives(scope: str | tuple[str, ...] | None) -> tuple[str, ...]:
    return (scope,) if isinstance(scope, str) else tuple(scope or ())


def _check_scopes(
    principal: Principal,
    any_scope: str | tuple[str, ...] | None,
    current_scope: str | tuple[str, ...] | None,
    target: str | None,
) -> None:
    anyone = _alternatives(any_scope)
    if any(principal.has(scope) for scope in anyone):
        return
    own = _alternatives(current_scope)
    if principal.is_user and any(principal.has(scope) for scope in own):
        if target is None or target == principal.user_id:
            return
    if any_scope is None and not principal.is_user:
        raise Forbidden("This endpoint needs a user's access token", code="user_token_required")
    needed = " or ".join((*anyone, *own))
    raise Forbidden(f"This credential lacks the scope {needed}", code="insufficient_scope")


def user_by_username_for(any_scope: str, username: str) -> User:
    """The user named `username`, for a caller that holds `any_scope` or is that user;
    Forbidden otherwise (decided before any look-up, so names are not probed)."""
    principal = current_principal()
    if principal.has(any_scope):
        return policy_service.get_by_username(username)
    own = (
        user_service.find_user(principal.user_id)
        if principal.is_user and principal.user_id
        else None
    )
    if own is None or own.username_normalized != username.casefold():
        raise Forbidden(f"This credential lacks the scope {any_scope}", code="insufficient_scope")
    return own


def _run_in_transaction(view: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # A view that never used the ORM session (a hot read answered from the bearer check's
    # select) has nothing to commit: no session is made just to end it. A failure rolls
    # everything back: what must be kept although the request fails was written on purpose
    # in a transaction of its own (core.db.independent_write), never decided by the error.
    try:
        result = view(*args, **kwargs)
        if db.session.registry.has():
            db.session.commit()
        return result
    except BaseException:
        if db.session.registry.has():
            db.session.rollback()
        raise


def requires(
    any_scope: str | tuple[str, ...] | None,
    current_scope: str | tuple[str, ...] | None = None,
    *,
    user_arg: str | None = "user_id",
) -> Callable[[F], F]:
    """Allow callers holding `any_scope` (or one of several), or users holding
    `current_scope` (or one of several) acting on themselves (the view argument `user_arg`
    names the target user)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            g.principal = principal
            with tenant_scope(principal.tenant_id):
                target = kwargs.get(user_arg) if user_arg else None
                _check_scopes(principal, any_scope, current_scope, target)
                return _run_in_transaction(view, *args, **kwargs)

        schemes = API_KEY_SCHEMES if any_scope is not None else ("Bearer",)
        own = " or ".join(_alternatives(current_scope))
        anyone = " or ".join(_alternatives(any_scope))
        scopes = tuple(s for s in (anyone, own and f"{own} (own)") if s)
        return cast(F, document_auth(wrapper, AuthDoc(schemes, True, _KEY_STATUSES, scopes)))

    return decorate


def api_key_only(scope: str) -> Callable[[F], F]:
    """Allow an API key of the tenant (or the root key naming it) holding `scope`, but no
    user token."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            if principal.is_user:
                raise Forbidden("This endpoint needs the tenant's API key", code="api_key_required")
            if not principal.has(scope):
                raise Forbidden(
                    f"This credential lacks the scope {scope}", code="insufficient_scope"
                )
            g.principal = principal
            with tenant_scope(principal.tenant_id):
                return _run_in_transaction(view, *args, **kwargs)

        scopes = (scope,)
        auth = AuthDoc(API_KEY_SCHEMES, True, _KEY_STATUSES, scopes)
        return cast(F, document_auth(wrapper, auth))

    return decorate


def root_or_tenant_key(
    scope: str | tuple[str, ...], *, tenant_arg: str = "tenant_id"
) -> Callable[[F], F]:
    """Allow the root key, or an API key of the tenant the path names (view argument
    `tenant_arg`) holding `scope` (or one of several). Another tenant's key gets 404, as
    for any id of another tenant; a user token gets 403. The view runs in that tenant's
    scope (its services answer 404 for a tenant that does not exist)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate(tenant_required=False)
            tenant_id = kwargs[tenant_arg]
            if principal.is_user:
                raise Forbidden("This endpoint needs an API key", code="api_key_required")
            # The root key acts on the tenant the path names, as on its other /tenants paths.
            if principal.kind != "root":
                if principal.tenant_id != tenant_id:
                    raise NotFound("Tenant not found", code="tenant_not_found")
                if not any(principal.has(one) for one in scopes):
                    raise Forbidden(
                        f"This credential lacks the scope {' or '.join(scopes)}",
                        code="insufficient_scope",
                    )
            g.principal = replace(principal, tenant_id=tenant_id)
            with tenant_scope(tenant_id):
                return _run_in_transaction(view, *args, **kwargs)

        # The path names the tenant; a tenant key's header, if sent, must agree.
        auth = AuthDoc(API_KEY_SCHEMES, True, _KEY_STATUSES, (" or ".join(scopes),))
        return cast(F, document_auth(wrapper, auth))

    scopes = _alternatives(scope)
    return decorate


def root_only(view: F) -> F:
    """Allow only the root key (platform endpoints); no tenant header is needed."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.principal = _root_principal()
        return _run_in_transaction(view, *args, **kwargs)

    return cast(F, document_auth(wrapper, AuthDoc(API_KEY_SCHEMES, False, _KEY_STATUSES)))


def root_only_in_path_tenant(view: F, *, tenant_arg: str = "tenant_id") -> F:
    """Allow only the root key, acting in the tenant the path names (view argument
    `tenant_arg`): the view runs in that tenant's scope, as for a tenant's own credential
    (its services answer 404 for a tenant that does not exist)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tenant_id = kwargs[tenant_arg]
        g.principal = replace(_root_principal(), tenant_id=tenant_id)
        with tenant_scope(tenant_id):
            return _run_in_transaction(view, *args, **kwargs)

    return cast(F, document_auth(wrapper, AuthDoc(API_KEY_SCHEMES, False, _KEY_STATUSES)))


def _root_principal() -> Principal:
    principal = authenticate(tenant_required=False)
    if principal.kind != "root":
        raise Forbidden("Only the root key may call this endpoint", code="root_key_required")
    return principal


def public(view: F | None = None, *, tenant_from: Callable[[], str | None] | None = None) -> Any:
    """No credential needed; the view still runs in one transaction. With `tenant_from`,
    the view runs in the scope of the tenant it names (read from the request: a header, a
    token the request carries), or in none when it names none (the view then refuses)."""
    if view is None:
        return lambda inner: public(inner, tenant_from=tenant_from)

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tenant_id = tenant_from() if tenant_from is not None else None
        if tenant_id is None:
            return _run_in_transaction(view, *args, **kwargs)
        with tenant_scope(tenant_id):
            return _run_in_transaction(view, *args, **kwargs)

    return cast(F, document_auth(wrapper, AuthDoc((), False, (503,))))
