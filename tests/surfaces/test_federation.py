"""Sign in through an upstream OpenID provider (issue 27), against a real one: panva's
oidc-provider (tests/idp), signed in over HTTP. The happy path ends with the app's own ID
token naming the Gatehouse user; every attack ends as an OAuth error for the app (or an
error page when the app is unknown) and creates no user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.connections.models import Connection
from app.core.tenancy import tenant_scope
from app.federation import upstream
from app.users import service as user_service
from app.users.models import Identity
from tests import factories
from tests.factories import AppHandle
from tests.federation_support import Idp, make_connection, running_idp, upstream_sign_in
from tests.oauth_support import (
    PASSWORD,
    audit_events,
    authorize_query,
    claims,
    confirmed_totp,
    exchange,
    form_fields,
    make_alice,
    next_totp,
    pkce_pair,
    query_of,
    sign_in,
    verified,
)
from tests.surfaces.test_mfa_required import post_form, require_mfa_for_tenant, shown_secret


@pytest.fixture(scope="session")
def idp_server() -> Iterator[Idp]:
    with running_idp() as idp:
        yield idp


@pytest.fixture()
def idp(idp_server: Idp) -> Iterator[Idp]:
    idp_server.reset()
    upstream.clear_caches()
    yield idp_server
    idp_server.reset()


@pytest.fixture()
def web_app(app: Flask, tenant: factories.TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, redirect_uris=["https://app.test/cb"])


@pytest.fixture()
def connection(app: Flask, web_app: AppHandle, idp: Idp) -> str:
    return make_connection(app, web_app.tenant_id, client_id=web_app.client_id, issuer=idp.issuer)


def _start(client: FlaskClient, handle: AppHandle, **extra: str) -> tuple[Any, dict[str, str], str]:
    verifier, challenge = pkce_pair()
    query = authorize_query(handle, challenge, connection="corp-idp", **extra)
    return client.get("/authorize", query_string=query), query, verifier


def _callback(client: FlaskClient, url: str) -> Any:
    assert url.startswith("http://gatehouse.test/login/callback?"), url
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}")


def _app_answer(response: Any, handle: AppHandle) -> dict[str, str]:
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:400]
    location = response.headers["Location"]
    assert location.startswith(handle.redirect_uri + "?"), location
    return query_of(location)


def _sign_in(client: FlaskClient, handle: AppHandle, login: str) -> tuple[Any, dict[str, str], str]:
    """Start at /authorize?connection=…, sign in upstream; Gatehouse's answer to the
    provider's redirect back, the app's request and its PKCE verifier."""
    started, query, verifier = _start(client, handle)
    assert started.status_code == 302, started.get_data(as_text=True)
    return _callback(client, upstream_sign_in(started.headers["Location"], login)), query, verifier


def _id_claims(client: FlaskClient, handle: AppHandle, response: Any, verifier: str) -> dict:
    """The claims of the ID token the app gets for the code in a finished sign-in."""
    code = _app_answer(response, handle)["code"]
    return claims(exchange(client, handle, code, verifier).get_json()["id_token"])


def _identities(app: Flask, tenant_id: str) -> list[Identity]:
    with app.app_context(), tenant_scope(tenant_id):
        return list(app.extensions["sqlalchemy"].session.scalars(select(Identity)))


def test_first_sign_in_creates_the_user_and_the_next_finds_it(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    idp.account("u-100", email="dana@example.com", email_verified=True, given_name="Dana")
    started, query, verifier = _start(client, web_app)
    upstream_query = query_of(started.headers["Location"])
    assert started.headers["Location"].startswith(idp.issuer + "/auth?")
    assert upstream_query["code_challenge_method"] == "S256"
    assert upstream_query["redirect_uri"] == "http://gatehouse.test/login/callback"
    assert len(upstream_query["state"]) >= 40 and len(upstream_query["nonce"]) >= 40
    back = upstream_sign_in(started.headers["Location"], "u-100")
    assert query_of(back)["iss"] == idp.issuer  # RFC 9207, checked below by the mix-up test
    answer = _app_answer(_callback(client, back), web_app)
    assert answer["state"] == query["state"]
    tokens = exchange(client, web_app, answer["code"], verifier)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    id_claims = verified(client, tokens.get_json()["id_token"], web_app.client_id)
    assert id_claims["nonce"] == query["nonce"]
    user_id = id_claims["sub"]
    assert factories.count_users(app, web_app.tenant_id) == 1
    (identity,) = _identities(app, web_app.tenant_id)
    assert (identity.user_id, identity.provider, identity.provider_user_id) == (
        user_id,
        "oidc",
        "u-100",
    )
    assert identity.connection == "corp-idp" and identity.is_social is False
    assert identity.profile_data["email"] == "dana@example.com"
    assert "nonce" not in identity.profile_data and "aud" not in identity.profile_data

    # A second sign-in (a new browser) finds the same user by (connection, subject).
    other = app.test_client()
    again, _, verifier2 = _sign_in(other, web_app, "u-100")
    code = _app_answer(again, web_app)["code"]
    second = exchange(other, web_app, code, verifier2).get_json()["id_token"]
    assert claims(second)["sub"] == user_id
    assert factories.count_users(app, web_app.tenant_id) == 1


def test_login_page_offers_the_connection(
    client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    _, challenge = pkce_pair()
    page = client.get("/authorize", query_string=authorize_query(web_app, challenge))
    html = page.get_data(as_text=True)
    assert "Continue with corp-idp login" in html
    fields = form_fields(html)
    response = client.post(
        "/authorize/connection",
        data={
            "csrf_token": fields["csrf_token"],
            "authz": fields["authz"],
            "connection": "corp-idp",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith(idp.issuer + "/auth?")


def test_replayed_state_is_refused(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str
) -> None:
    started, _, _ = _start(client, web_app)
    back = upstream_sign_in(started.headers["Location"], "u-200")
    pending = client.get_cookie("gh_fed")
    assert pending is not None
    assert "code" in _app_answer(_callback(client, back), web_app)
    assert client.get_cookie("gh_fed") is None  # the browser forgets it at once
    # Replayed with the pending sign-in it was made for (kept by an attacker): refused,
    # its state was spent.
    client.delete_cookie("gh_sso_" + web_app.tenant_id)
    client.set_cookie("gh_fed", pending.value)
    answer = _app_answer(_callback(client, back), web_app)
    assert answer["error"] == "access_denied" and "already used" in answer["error_description"]
    assert factories.count_users(app, web_app.tenant_id) == 1


def test_forged_state_is_refused(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str
) -> None:
    started, query, _ = _start(client, web_app)
    back = upstream_sign_in(started.headers["Location"], "u-201")
    real_state = query_of(back)["state"]
    answer = _app_answer(_callback(client, back.replace(real_state, "forged" + "x" * 40)), web_app)
    assert answer["error"] == "access_denied" and answer["state"] == query["state"]
    assert factories.count_users(app, web_app.tenant_id) == 0


def test_answer_in_another_browser_is_an_error_page(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str
) -> None:
    started, _, _ = _start(client, web_app)
    back = upstream_sign_in(started.headers["Location"], "u-202")
    response = _callback(app.test_client(), back)  # no pending sign-in cookie
    assert response.status_code == 400
    assert "started in another browser" in response.get_data(as_text=True)
    assert factories.count_users(app, web_app.tenant_id) == 0


def test_mix_up_iss_is_refused(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    started, _, _ = _start(client, web_app)
    back = upstream_sign_in(started.headers["Location"], "u-203")
    # The answer claims to come from another provider (RFC 9207): its code goes nowhere.
    mixed = back.replace(
        f"iss={query_of(back)['iss'].replace(':', '%3A').replace('/', '%2F')}",
        "iss=https%3A%2F%2Fother-idp.test",
    )
    assert mixed != back
    answer = _app_answer(_callback(client, mixed), web_app)
    assert answer["error"] == "access_denied"
    assert "another identity provider" in answer["error_description"]
    assert factories.count_users(app, web_app.tenant_id) == 0


@pytest.fixture(scope="module")
def second_idp_server() -> Iterator[Idp]:
    """Another oidc-provider instance: another port, so another issuer."""
    with running_idp() as idp:
        yield idp


def test_mix_up_with_a_second_real_provider_is_refused(
    app: Flask,
    client: FlaskClient,
    web_app: AppHandle,
    connection: str,
    idp: Idp,
    second_idp_server: Idp,
) -> None:
    """RFC 9207 with two real providers: a sign-in started with connection A gets an
    authorization response carrying B's `iss` (and B's code, from a real sign-in at B, as
    a mix-up attacker would relay it). Refused as an OAuth error to the app, no user, and
    B's code was never sent to A or B: B's own sign-in still redeems it afterwards."""
    other = second_idp_server
    assert other.issuer != idp.issuer
    other.reset()
    make_connection(
        app, web_app.tenant_id, client_id=web_app.client_id, name="other-idp", issuer=other.issuer
    )
    started, query, _ = _start(client, web_app)  # connection A (corp-idp)
    assert started.headers["Location"].startswith(idp.issuer + "/auth?")
    state_a = query_of(started.headers["Location"])["state"]

    # A real sign-in at B, in another browser.
    browser_b = app.test_client()
    verifier_b, challenge_b = pkce_pair()
    query_b = authorize_query(web_app, challenge_b, connection="other-idp")
    started_b = browser_b.get("/authorize", query_string=query_b)
    assert started_b.headers["Location"].startswith(other.issuer + "/auth?")
    back_b = upstream_sign_in(started_b.headers["Location"], "u-mallory")
    answer_b = query_of(back_b)
    assert answer_b["iss"] == other.issuer

    # A's browser gets B's response, with A's state (the attacker relays the code).
    mixed = {"code": answer_b["code"], "state": state_a, "iss": answer_b["iss"]}
    answer = _app_answer(client.get("/login/callback", query_string=mixed), web_app)
    assert answer["state"] == query["state"] and "code" not in answer
    assert answer["error"] == "access_denied"
    assert "another identity provider" in answer["error_description"]
    assert factories.count_users(app, web_app.tenant_id) == 0
    assert _identities(app, web_app.tenant_id) == []

    # B's code went nowhere: B's own browser still signs in with it.
    code_b = _app_answer(_callback(browser_b, back_b), web_app)["code"]
    tokens = exchange(browser_b, web_app, code_b, verifier_b)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    user_id = verified(browser_b, tokens.get_json()["id_token"], web_app.client_id)["sub"]
    (identity,) = _identities(app, web_app.tenant_id)
    assert (identity.user_id, identity.connection, identity.provider_user_id) == (
        user_id,
        "other-idp",
        "u-mallory",
    )
    other.reset()


@pytest.mark.parametrize(
    ("mode", "error", "says"),
    [
        ("wrong_aud", "access_denied", "another application"),
        ("extra_aud_no_azp", "access_denied", "another application"),
        ("wrong_nonce", "access_denied", "nonce"),
        ("no_nonce", "access_denied", "nonce"),
        ("expired", "access_denied", "expired"),
        ("unknown_kid", "access_denied", "does not publish"),
        ("html", "temporarily_unavailable", "JSON"),
        ("server_error", "temporarily_unavailable", "HTTP 500"),
    ],
)
def test_bad_token_responses_are_refused(
    app: Flask,
    client: FlaskClient,
    web_app: AppHandle,
    connection: str,
    idp: Idp,
    mode: str,
    error: str,
    says: str,
) -> None:
    idp.mode(mode)
    response, query, _ = _sign_in(client, web_app, "u-300")
    answer = _app_answer(response, web_app)
    assert answer["error"] == error and says in answer["error_description"], answer
    assert answer["state"] == query["state"]
    assert factories.count_users(app, web_app.tenant_id) == 0


def test_no_email_is_refused(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    idp.account("u-301", email_verified=False)
    answer = _app_answer(_sign_in(client, web_app, "u-301")[0], web_app)
    assert answer["error"] == "access_denied" and "email" in answer["error_description"]
    assert factories.count_users(app, web_app.tenant_id) == 0


def test_user_cancelling_upstream_is_access_denied(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    started, query, _ = _start(client, web_app)
    state = query_of(started.headers["Location"])["state"]
    response = client.get(
        "/login/callback",
        query_string={"error": "access_denied", "state": state, "iss": idp.issuer},
    )
    answer = _app_answer(response, web_app)
    assert answer["error"] == "access_denied" and answer["state"] == query["state"]


def test_unreachable_provider_is_temporarily_unavailable(
    app: Flask, client: FlaskClient, web_app: AppHandle
) -> None:
    make_connection(
        app,
        web_app.tenant_id,
        client_id=web_app.client_id,
        discovery_url="http://127.0.0.1:9/.well-known/openid-configuration",
    )
    started, query, _ = _start(client, web_app)
    answer = _app_answer(started, web_app)
    assert answer["error"] == "temporarily_unavailable" and answer["state"] == query["state"]


def test_unknown_connection_is_an_error_for_the_app(
    client: FlaskClient, web_app: AppHandle, connection: str
) -> None:
    verifier, challenge = pkce_pair()
    query = authorize_query(web_app, challenge, connection="nope")
    answer = _app_answer(client.get("/authorize", query_string=query), web_app)
    assert answer["error"] == "invalid_request"


def test_open_redirect_through_redirect_uri_is_refused(
    client: FlaskClient, web_app: AppHandle, connection: str
) -> None:
    _, challenge = pkce_pair()
    query = authorize_query(
        web_app, challenge, connection="corp-idp", redirect_uri="https://evil.test/cb"
    )
    response = client.get("/authorize", query_string=query)
    assert response.status_code == 400  # an error page: never a redirect anywhere
    assert "Location" not in response.headers


def test_verified_email_links_to_the_verified_account(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    user_id = factories.make_user(
        app, web_app.tenant_id, email="erin@example.com", email_verified=True
    )
    idp.account("u-400", email="erin@example.com", email_verified=True)
    response, _, verifier = _sign_in(client, web_app, "u-400")
    code = _app_answer(response, web_app)["code"]
    assert (
        claims(exchange(client, web_app, code, verifier).get_json()["id_token"])["sub"] == user_id
    )
    assert factories.count_users(app, web_app.tenant_id) == 1
    assert [i.user_id for i in _identities(app, web_app.tenant_id)] == [user_id]


@pytest.mark.parametrize(("local", "upstream_verified"), [(False, True), (True, False)])
def test_unverified_email_asks_to_sign_in_to_link(
    app: Flask,
    client: FlaskClient,
    web_app: AppHandle,
    connection: str,
    idp: Idp,
    local: bool,
    upstream_verified: bool,
) -> None:
    factories.make_user(
        app, web_app.tenant_id, email="finn@example.com", email_verified=local, password=PASSWORD
    )
    idp.account("u-401", email="finn@example.com", email_verified=upstream_verified)
    response, _, _ = _sign_in(client, web_app, "u-401")
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[:400]
    assert "Link corp-idp login to your account" in html
    assert "An account with the email address finn@example.com already exists" in html
    assert client.get_cookie("gh_fed") is None  # the provider's answer is spent
    assert factories.count_users(app, web_app.tenant_id) == 1
    assert _identities(app, web_app.tenant_id) == []


def test_account_without_password_is_not_offered_a_link(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    factories.make_user(app, web_app.tenant_id, email="finn@example.com", email_verified=False)
    idp.account("u-403", email="finn@example.com", email_verified=True)
    response, _, _ = _sign_in(client, web_app, "u-403")
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "has no password to sign in with here" in html
    assert 'name="password"' not in html
    assert factories.count_users(app, web_app.tenant_id) == 1
    assert _identities(app, web_app.tenant_id) == []


def _link_page(
    app: Flask, client: FlaskClient, web_app: AppHandle, idp: Idp, subject: str, **user: Any
) -> tuple[str, dict[str, str], dict[str, str], str]:
    """A local account with an unverified alice@example.com-like address, the provider's
    verified one, and the link page the sign-in ends at: the user's id, the page's fields,
    the app's request and its PKCE verifier."""
    fields = {"email": "ivy@example.com", "email_verified": False, "password": PASSWORD, **user}
    user_id = factories.make_user(app, web_app.tenant_id, **fields)
    idp.account(subject, email=fields["email"], email_verified=True)
    page, query, verifier = _sign_in(client, web_app, subject)
    assert page.status_code == 200 and 'id="link-form"' in page.get_data(as_text=True)
    return user_id, form_fields(page.get_data(as_text=True)), query, verifier


def test_signing_in_links_the_provider_to_the_account(
    app: Flask,
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    connection: str,
    idp: Idp,
) -> None:
    user_id, fields, query, verifier = _link_page(app, client, web_app, idp, "u-410")
    # A wrong password: the usual error, the page again, nothing linked.
    wrong = client.post("/login/link", data={**fields, "password": "not it at all"})
    assert wrong.status_code == 401, wrong.get_data(as_text=True)[:400]
    assert "Wrong username, email or password" in wrong.get_data(as_text=True)
    assert 'id="link-form"' in wrong.get_data(as_text=True)
    assert _identities(app, web_app.tenant_id) == []
    # The username field is the password managers': another account is never signed in.
    done = client.post(
        "/login/link", data={**fields, "username": "someone-else", "password": PASSWORD}
    )
    answer = _app_answer(done, web_app)
    assert answer["state"] == query["state"]
    id_claims = claims(exchange(client, web_app, answer["code"], verifier).get_json()["id_token"])
    assert id_claims["sub"] == user_id and id_claims["amr"] == ["pwd"]
    (identity,) = _identities(app, web_app.tenant_id)
    assert (identity.user_id, identity.connection, identity.provider_user_id) == (
        user_id,
        "corp-idp",
        "u-410",
    )
    assert identity.profile_data["email"] == "ivy@example.com"
    assert factories.count_users(app, web_app.tenant_id) == 1
    (event,) = audit_events(client, tenant.headers, "identity.linked")
    assert event["user_id"] == user_id and event["target"] == "oidc|u-410"
    assert event["data"] == {"confirmed_by": "sign-in"}
    # From now on the provider signs this user in, in another browser, with no page.
    other = app.test_client()
    again, _, verifier2 = _sign_in(other, web_app, "u-410")
    code = _app_answer(again, web_app)["code"]
    assert claims(exchange(other, web_app, code, verifier2).get_json()["id_token"])["sub"] == (
        user_id
    )


def test_link_asks_for_the_accounts_second_factor_first(
    app: Flask,
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    connection: str,
    idp: Idp,
) -> None:
    make_alice(app, tenant.id, email_verified=False)
    secret = confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    idp.account("u-411", email="alice@example.com", email_verified=True)
    page, _, verifier = _sign_in(client, web_app, "u-411")
    fields = form_fields(page.get_data(as_text=True))
    step = client.post("/login/link", data={**fields, "password": PASSWORD})
    assert step.status_code == 200 and "Two-step verification" in step.get_data(as_text=True)
    assert _identities(app, web_app.tenant_id) == []  # not before the second factor
    # A wrong code shows the step again, still carrying the identity to link.
    again = client.post(
        "/authorize/second-factor",
        data={**form_fields(step.get_data(as_text=True)), "code": "000000"},
    )
    assert again.status_code in (400, 401), again.get_data(as_text=True)[:300]
    assert _identities(app, web_app.tenant_id) == []
    done = client.post(
        "/authorize/second-factor",
        data={**form_fields(again.get_data(as_text=True)), "code": next_totp(secret)},
    )
    # Signed in (and linked); first told of the failed code, then on to the app.
    assert "Failed attempts to enter a code" in done.get_data(as_text=True)
    assert [i.user_id for i in _identities(app, web_app.tenant_id)] == ["alice-1"]
    done = client.post("/authorize/continue", data=form_fields(done.get_data(as_text=True)))
    id_claims = _id_claims(client, web_app, done, verifier)
    assert id_claims["sub"] == "alice-1" and id_claims["amr"] == ["pwd", "otp", "mfa"]
    assert [i.user_id for i in _identities(app, web_app.tenant_id)] == ["alice-1"]


def test_cancelling_the_link_is_access_denied(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    _, fields, query, _ = _link_page(app, client, web_app, idp, "u-412")
    answer = _app_answer(client.post("/login/link", data={**fields, "cancel": "1"}), web_app)
    assert answer["error"] == "access_denied" and answer["state"] == query["state"]
    assert _identities(app, web_app.tenant_id) == []


def test_link_page_does_not_take_the_identity_from_the_browser(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    _, fields, _, _ = _link_page(app, client, web_app, idp, "u-413")
    forged = fields["link"][:-6] + ("AAAAAA" if not fields["link"].endswith("AAAAAA") else "BBBBBB")
    response = client.post("/login/link", data={**fields, "link": forged, "password": PASSWORD})
    assert response.status_code == 400
    assert _identities(app, web_app.tenant_id) == []


def test_blocked_user_is_refused(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    factories.make_user(
        app, web_app.tenant_id, email="gus@example.com", email_verified=True, blocked=True
    )
    idp.account("u-402", email="gus@example.com", email_verified=True)
    answer = _app_answer(_sign_in(client, web_app, "u-402")[0], web_app)
    assert answer["error"] == "access_denied" and "blocked" in answer["error_description"]


def test_sign_in_is_audited_with_the_connection(
    client: FlaskClient, tenant: factories.TenantHandle, web_app: AppHandle, connection: str
) -> None:
    _app_answer(_sign_in(client, web_app, "u-500")[0], web_app)
    (event,) = audit_events(client, tenant.headers, "user.signed_in")
    assert event["data"]["method"] == "federated:corp-idp"
    (created,) = audit_events(client, tenant.headers, "user.created")
    assert created["actor"] == "connection:corp-idp"


def test_verified_link_is_audited(
    app: Flask,
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    connection: str,
    idp: Idp,
) -> None:
    user_id = factories.make_user(app, tenant.id, email="hal@example.com", email_verified=True)
    idp.account("u-501", email="hal@example.com", email_verified=True)
    _app_answer(_sign_in(client, web_app, "u-501")[0], web_app)
    (event,) = audit_events(client, tenant.headers, "identity.linked")
    assert event["user_id"] == user_id and event["target"] == "oidc|u-501"


def test_enrolled_second_factor_is_still_required_and_the_sign_in_says_federated(
    app: Flask,
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    connection: str,
    idp: Idp,
) -> None:
    make_alice(app, tenant.id)
    secret = confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    idp.account("u-502", email="alice@example.com", email_verified=True)
    page, _, verifier = _sign_in(client, web_app, "u-502")
    assert page.status_code == 200, page.get_data(as_text=True)
    assert "Two-step verification" in page.get_data(as_text=True)
    assert "gh_sso_" not in str(page.headers)  # not signed in before the code
    fields = form_fields(page.get_data(as_text=True))
    done = client.post("/authorize/second-factor", data={**fields, "code": next_totp(secret)})
    id_claims = _id_claims(client, web_app, done, verifier)
    assert id_claims["sub"] == "alice-1"
    assert id_claims["amr"] == ["fed", "otp", "mfa"]
    methods = [e["data"]["method"] for e in audit_events(client, tenant.headers, "user.signed_in")]
    assert "federated:corp-idp" in methods and "login_page" not in methods


def test_federated_sign_in_says_so_in_amr(
    client: FlaskClient, tenant: factories.TenantHandle, web_app: AppHandle, connection: str
) -> None:
    response, _, verifier = _sign_in(client, web_app, "u-600")
    code = _app_answer(response, web_app)["code"]
    assert claims(exchange(client, web_app, code, verifier).get_json()["id_token"])["amr"] == [
        "fed"
    ]


def test_email_from_userinfo_when_the_id_token_has_none(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    idp.account("u-610", email="jo@example.com", email_verified=True)
    idp.mode("email_in_userinfo_only")
    response, _, verifier = _sign_in(client, web_app, "u-610")
    code = _app_answer(response, web_app)["code"]
    exchange(client, web_app, code, verifier)
    (identity,) = _identities(app, web_app.tenant_id)
    assert identity.provider_user_id == "u-610"
    assert identity.profile_data["email"] == "jo@example.com"
    with app.app_context(), tenant_scope(web_app.tenant_id):
        user = user_service.get_user(identity.user_id)
        assert (user.email, user.email_verified) == ("jo@example.com", True)


def test_userinfo_for_another_subject_is_refused(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    idp.account("u-611", email="kim@example.com", email_verified=True)
    idp.mode("userinfo_other_sub")
    answer = _app_answer(_sign_in(client, web_app, "u-611")[0], web_app)
    assert answer["error"] == "access_denied" and "userinfo" in answer["error_description"]
    assert factories.count_users(app, web_app.tenant_id) == 0


def test_login_page_after_a_wrong_password_still_offers_the_connection(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str
) -> None:
    _, challenge = pkce_pair()
    page = client.get("/authorize", query_string=authorize_query(web_app, challenge))
    fields = form_fields(page.get_data(as_text=True))
    wrong = client.post(
        "/authorize",
        data={
            "csrf_token": fields["csrf_token"],
            "authz": fields["authz"],
            "username": "nobody",
            "password": "wrong password",
        },
    )
    assert wrong.status_code == 401
    assert "Continue with corp-idp login" in wrong.get_data(as_text=True)


def test_changed_connection_does_not_use_the_cached_discovery(
    app: Flask, client: FlaskClient, web_app: AppHandle, connection: str, idp: Idp
) -> None:
    started, _, _ = _start(client, web_app)
    assert started.headers["Location"].startswith(idp.issuer + "/auth?")  # cached now
    # The connection now expects another issuer at the same discovery URL: its next
    # sign-in reads the document again and finds it names another issuer.
    with app.app_context(), tenant_scope(web_app.tenant_id):
        row = app.extensions["sqlalchemy"].session.get(Connection, connection)
        row.options = {
            **row.options,
            "discovery_url": idp.issuer + "/.well-known/openid-configuration",
            "issuer": "https://other-idp.test",
        }
        app.extensions["sqlalchemy"].session.commit()
    answer = _app_answer(_start(app.test_client(), web_app)[0], web_app)
    assert answer["error"] == "temporarily_unavailable"
    assert "another issuer" in answer["error_description"]


def test_mfa_required_enrols_in_place_after_federation_and_says_federated(
    app: Flask,
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    connection: str,
    idp: Idp,
) -> None:
    require_mfa_for_tenant(app, tenant.id)
    page, _, verifier = _sign_in(client, web_app, "u-620")
    assert page.status_code == 200, page.get_data(as_text=True)[:400]
    secret = shown_secret(page.get_data(as_text=True))
    codes_page = post_form(client, page, "/authorize/enrol", code=factories.totp_code(secret))
    assert codes_page.status_code == 200, codes_page.get_data(as_text=True)[:400]
    done = post_form(client, codes_page, "/authorize/continue")
    id_claims = _id_claims(client, web_app, done, verifier)
    assert id_claims["amr"] == ["fed", "otp", "mfa"]
    (event,) = audit_events(client, tenant.headers, "user.signed_in")
    assert event["data"]["method"] == "federated:corp-idp"


def test_an_administrator_unlinks_a_federated_identity_through_the_management_api(
    app: Flask,
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    connection: str,
    idp: Idp,
) -> None:
    """Unlinking goes through the existing `/api/v2` route and the identity leaves the user.
    The next sign-in with that subject no longer finds it by (connection, subject); its
    address, verified on both sides, links it again to the same account (audited)."""
    idp.account("u-700", email="ivy@example.com", email_verified=True)
    response, _, verifier = _sign_in(client, web_app, "u-700")
    first = _id_claims(client, web_app, response, verifier)["sub"]
    admin = {"Authorization": f"Bearer {tenant.key}"}
    shown = client.get(f"/api/v2/users/{first}", headers=admin).get_json()["identities"]
    assert {"provider": "oidc", "user_id": "u-700", "connection": "corp-idp"}.items() <= (
        shown[-1].items()
    )
    unlinked = client.delete(f"/api/v2/users/{first}/identities/oidc/u-700", headers=admin)
    assert unlinked.status_code == 200, unlinked.get_data(as_text=True)
    assert _identities(app, web_app.tenant_id) == []
    client.delete_cookie("gh_sso_" + web_app.tenant_id)
    response, _, verifier = _sign_in(client, web_app, "u-700")
    second = _id_claims(client, web_app, response, verifier)["sub"]
    assert second == first and factories.count_users(app, web_app.tenant_id) == 1
    (identity,) = _identities(app, web_app.tenant_id)
    assert (identity.user_id, identity.provider_user_id) == (first, "u-700")
    linked = audit_events(client, tenant.headers, "identity.linked")
    assert [event["user_id"] for event in linked] == [first]
