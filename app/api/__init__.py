"""The surfaces: each a blueprint with its own error shape; registered here in one list."""

from __future__ import annotations

from types import ModuleType

from flask import Flask, request

from app.api import accounts, directory, management, me, oauth, platform, user
from app.core.errors import Renderer, render_default
from app.core.smorest import Api

SURFACES: tuple[ModuleType, ...] = (platform, user, me, accounts, oauth, directory, management)

# For errors raised before a blueprint is known (404/405): the longest prefix wins.
PATH_PREFIXES: tuple[tuple[str, ModuleType], ...] = (
    ("/user/", user),
    ("/user", user),
    ("/auth/user", accounts),
    ("/users/", accounts),
    ("/users/me", me),
    ("/auth/password-reset", me),
    ("/token/", accounts),
    ("/tenants", platform),
    ("/audit-events", platform),
    ("/oauth/", oauth),
    ("/api/v1/", directory),
    ("/api/v1", directory),
    ("/api/v2/", management),
    ("/api/v2", management),
    ("/.well-known/", oauth),
    ("/userinfo", oauth),
)


def choose_renderer() -> Renderer:
    """The error renderer of the surface serving this request."""
    by_blueprint = {surface.blp.name: surface for surface in SURFACES}
    surface = by_blueprint.get(request.blueprint or "")
    if surface is None:
        path = request.path
        matches = [(p, s) for p, s in PATH_PREFIXES if path == p or path.startswith(p)]
        if matches:
            surface = max(matches, key=lambda item: len(item[0]))[1]
    return surface.render_error if surface is not None else render_default


def register_surfaces(api: Api) -> None:
    for surface in SURFACES:
        api.register_blueprint(surface.blp)


def register_pages(app: Flask) -> None:
    """The hosted pages and the admin console (HTML for people, not in the API document)
    and CORS for apps."""
    from app.api import console, hosted
    from app.api.cors import init_cors

    app.register_blueprint(hosted.blp)
    app.register_blueprint(console.blp)
    init_cors(app)
