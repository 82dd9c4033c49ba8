"""RP-initiated logout at `/logout`: with an ID token hint naming the signed-in user it
ends the sign-in session at once and returns to a registered page with `state`; without
one it asks first (so no other site can sign the user out); bad requests stay on the page."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.oauth_support import (
    PASSWORD,
    authorize_query,
    exchange,
    form_fields,
    pkce_pair,
    query_of,
    sign_in_through_page,
)

BYE = "https://app.example.com/bye"


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(
        app,
        tenant.id,
        redirect_uris=["http://127.0.0.1:8765/callback"],
        post_logout_redirect_uris=[BYE],
    )


@pytest.fixture()
def id_token(app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle) -> str:
    """Sign alice in on the page (the browser keeps its sign-in session); her ID token."""
    factories.make_user(app, tenant.id, user_id="alice-1", username="alice", password=PASSWORD)
    answer, verifier, _ = sign_in_through_page(client, web, "alice")
    return exchange(client, web, answer["code"], verifier).get_json()["id_token"]


def _signed_in(client: FlaskClient, handle: AppHandle) -> bool:
    _, challenge = pkce_pair()
    answer = client.get(
        "/authorize", query_string=authorize_query(handle, challenge, prompt="none")
    )
    return "code" in query_of(answer.headers["Location"])


def test_a_hint_naming_the_signed_in_user_signs_out_at_once(
    client: FlaskClient, tenant: TenantHandle, web: AppHandle, id_token: str
) -> None:
    assert _signed_in(client, web)

    answer = client.get(
        "/logout",
        query_string={"id_token_hint": id_token, "post_logout_redirect_uri": BYE, "state": "s9"},
    )

    assert answer.status_code == 303
    assert answer.headers["Location"] == f"{BYE}?state=s9"
    cleared = [
        h for h in answer.headers.getlist("Set-Cookie") if h.startswith(f"gh_sso_{tenant.id}=")
    ]
    assert cleared and "Max-Age=0" in cleared[0]
    assert not _signed_in(client, web)


def test_without_a_hint_the_user_is_asked_first(
    app: Flask, client: FlaskClient, web: AppHandle, id_token: str
) -> None:
    page = client.get("/logout", query_string={"client_id": web.client_id})

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Sign out?" in html and '<button type="submit">Sign out</button>' in html
    assert _signed_in(client, web)  # nothing ended yet
    # The confirmation form, replayed by another browser, does nothing.
    fields = form_fields(html)
    other = app.test_client()
    other.get("/logout", query_string={"client_id": web.client_id})  # its own cookie
    replayed = other.post("/logout", data=fields)
    assert replayed.status_code == 400
    assert "<code>form_expired</code>" in replayed.get_data(as_text=True)
    assert _signed_in(client, web)

    confirmed = client.post("/logout", data=fields)
    assert confirmed.status_code == 200
    assert "You are signed out" in confirmed.get_data(as_text=True)
    assert not _signed_in(client, web)


def test_a_hint_for_another_user_asks_too(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, id_token: str
) -> None:
    factories.make_user(app, tenant.id, user_id="bob-1", username="bob", password=PASSWORD)
    elsewhere = app.test_client()
    answer, verifier, _ = sign_in_through_page(elsewhere, web, "bob")
    bobs = exchange(elsewhere, web, answer["code"], verifier).get_json()["id_token"]

    page = client.get("/logout", query_string={"id_token_hint": bobs})
    assert page.status_code == 200 and "Sign out?" in page.get_data(as_text=True)
    assert _signed_in(client, web)


def test_signing_out_when_not_signed_in_just_returns(client: FlaskClient, web: AppHandle) -> None:
    answer = client.get(
        "/logout", query_string={"client_id": web.client_id, "post_logout_redirect_uri": BYE}
    )
    assert answer.status_code == 303 and answer.headers["Location"] == BYE


BAD = {
    "unregistered return": (
        {"post_logout_redirect_uri": "https://evil.example.com/"},
        "redirect_uri_mismatch",
    ),
    "return without client": (
        {"post_logout_redirect_uri": BYE, "client_id": None},
        "redirect_uri_mismatch",
    ),
    "unknown client": ({"client_id": "no-such-app"}, "unknown_client"),
    "forged hint": ({"id_token_hint": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}, "invalid_id_token_hint"),
}


@pytest.mark.parametrize(("extra", "code"), BAD.values(), ids=BAD.keys())
def test_bad_logout_requests_stay_on_the_page(
    client: FlaskClient, web: AppHandle, id_token: str, extra: dict, code: str
) -> None:
    query = {"client_id": web.client_id, **extra}
    answer = client.get("/logout", query_string={k: v for k, v in query.items() if v})

    assert answer.status_code == 400 and "Location" not in answer.headers
    assert f"<code>{code}</code>" in answer.get_data(as_text=True)
    assert _signed_in(client, web)
