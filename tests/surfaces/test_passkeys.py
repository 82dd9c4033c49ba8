"""Passkeys over HTTP with a software authenticator (real EC P-256 signatures, attestation
"none"): registration from the account page, sign-in with a discoverable passkey, a
passkey as the second factor, and every refusal (user verification, origin, RP id,
challenge reuse, cloned counter, another tenant's credential); the management surface's
authentication methods."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.oauth_support import (
    audit_events,
    authorize_query,
    claims,
    confirmed_totp,
    exchange,
    form_fields,
    make_alice,
    pkce_pair,
    query_of,
    rate_limited_app,
    sign_in,
    sign_in_through_page,
    submit_login,
)
from tests.passkey_support import SoftAuthenticator, b64url

# The test client's requests come from http://localhost: the relying party for this module.
RP_ID = "localhost"
ORIGIN = "http://localhost"


@pytest.fixture(autouse=True)
def _relying_party(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "WEBAUTHN_RP_ID", RP_ID)
    monkeypatch.setitem(app.config, "WEBAUTHN_ORIGINS", [ORIGIN])


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="Acme Web")


@pytest.fixture()
def alice(app: Flask, tenant: TenantHandle) -> str:
    return make_alice(app, tenant.id)


def authenticator(**options: Any) -> SoftAuthenticator:
    return SoftAuthenticator(rp_id=RP_ID, origin=ORIGIN, **options)


def _csrf(client: FlaskClient, tenant_id: str) -> tuple[Any, str]:
    page = client.get("/account/passkeys", query_string={"tenant": tenant_id})
    assert page.status_code == 200, page.get_data(as_text=True)
    return page, form_fields(page.get_data(as_text=True))["csrf_token"]


def register(client: FlaskClient, tenant_id: str, device: SoftAuthenticator, **bend: Any) -> Any:
    """Add a passkey from the account page (the browser is signed in); the answer."""
    _, csrf = _csrf(client, tenant_id)
    options = client.post(
        "/account/passkeys/options", data={"csrf_token": csrf, "tenant": tenant_id}
    )
    assert options.status_code == 200, options.get_data(as_text=True)
    answer = options.get_json()
    return client.post(
        "/account/passkeys",
        data={
            "csrf_token": csrf,
            "tenant": tenant_id,
            "ceremony": answer["ceremony"],
            "credential": device.register(answer["publicKey"], **bend),
            "name": "My laptop",
        },
    )


def signed_in_with_passkey(
    client: FlaskClient, app_handle: AppHandle, tenant_id: str, device: SoftAuthenticator
) -> SoftAuthenticator:
    sign_in_through_page(client, app_handle, "alice")
    added = register(client, tenant_id, device)
    assert added.status_code == 303, added.get_data(as_text=True)
    return device


def _login_page(
    client: FlaskClient, app_handle: AppHandle, **extra: str
) -> tuple[dict[str, str], str]:
    verifier, challenge = pkce_pair()
    page = client.get("/authorize", query_string=authorize_query(app_handle, challenge, **extra))
    assert page.status_code == 200
    return form_fields(page.get_data(as_text=True)), verifier


def passkey_options(client: FlaskClient, fields: dict[str, str]) -> dict[str, Any]:
    answer = client.post(
        "/authorize/passkey/options",
        data={"csrf_token": fields["csrf_token"], "authz": fields["authz"]},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def passkey_post(
    client: FlaskClient, fields: dict[str, str], ceremony: str, credential: str
) -> Any:
    return client.post(
        "/authorize/passkey",
        data={
            "csrf_token": fields["csrf_token"],
            "authz": fields["authz"],
            "ceremony": ceremony,
            "credential": credential,
        },
    )


def sign_in_with(
    client: FlaskClient, app_handle: AppHandle, device: SoftAuthenticator, **bend: Any
) -> tuple[Any, str]:
    """Open the login page and sign in with the passkey; the answer and PKCE verifier."""
    fields, verifier = _login_page(client, app_handle)
    options = passkey_options(client, fields)
    assert options["publicKey"]["allowCredentials"] == []  # discoverable
    credential = device.assert_(options["publicKey"], **bend)
    return passkey_post(client, fields, options["ceremony"], credential), verifier


def fresh_browser(app: Flask) -> FlaskClient:
    return app.test_client()


def test_register_then_sign_in_with_a_passkey_gives_hwk_amr(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    device = signed_in_with_passkey(client, web, tenant.id, authenticator())
    listed = client.get("/account/passkeys", query_string={"tenant": tenant.id})
    html = listed.get_data(as_text=True)
    assert "My laptop" in html and "Device-bound passkey" in html and "Never" in html

    browser = fresh_browser(app)
    done, verifier = sign_in_with(browser, web, device)

    assert done.status_code == 303, done.get_data(as_text=True)
    tokens = exchange(browser, web, query_of(done.headers["Location"])["code"], verifier)
    id_token = claims(tokens.get_json()["id_token"])
    assert id_token["sub"] == alice and id_token["amr"] == ["hwk", "mfa"]
    signed_in = audit_events(client, tenant.headers, "user.signed_in")
    assert "passkey" in [e["data"]["method"] for e in signed_in]
    assert [e["target"] for e in audit_events(client, tenant.headers, "passkey.registered")]
    # The account page now shows when it was last used.
    again = browser.get("/account/passkeys", query_string={"tenant": tenant.id})
    assert "Never" not in again.get_data(as_text=True)


def test_a_synced_passkey_gives_swk(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    device = signed_in_with_passkey(client, web, tenant.id, authenticator(synced=True))
    browser = fresh_browser(app)
    done, verifier = sign_in_with(browser, web, device)
    tokens = exchange(browser, web, query_of(done.headers["Location"])["code"], verifier)
    assert claims(tokens.get_json()["id_token"])["amr"] == ["swk", "mfa"]


def test_registration_without_user_verification_or_from_another_origin_is_refused(
    client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    sign_in_through_page(client, web, "alice")
    for bend in ({"uv": False}, {"origin": "http://evil.test"}, {"rp_id": "evil.test"}):
        refused = register(client, tenant.id, authenticator(), **bend)
        assert refused.status_code == 400, bend
        assert 'data-code="passkey_invalid"' in refused.get_data(as_text=True) or (
            "passkey_invalid" in refused.get_data(as_text=True)
        )
    assert audit_events(client, tenant.headers, "passkey.registered") == []


@pytest.mark.parametrize(
    "bend", [{"uv": False}, {"origin": "http://evil.test"}, {"rp_id": "evil.test"}]
)
def test_sign_in_without_uv_or_from_another_origin_or_rp_is_refused(
    app: Flask,
    client: FlaskClient,
    tenant: TenantHandle,
    web: AppHandle,
    alice: str,
    bend: dict[str, Any],
) -> None:
    device = signed_in_with_passkey(client, web, tenant.id, authenticator())
    browser = fresh_browser(app)
    refused, _ = sign_in_with(browser, web, device, **bend)

    assert refused.status_code == 401
    html = refused.get_data(as_text=True)
    assert 'data-code="passkey_invalid"' in html and "<h1" in html  # the login page again
    failures = audit_events(client, tenant.headers, "user.signin_failed")
    assert [e["data"]["reason"] for e in failures] == ["passkey_invalid_assertion"]
    assert failures[0]["user_id"] == alice


def test_a_ceremony_serves_once_and_only_in_its_browser(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    device = signed_in_with_passkey(client, web, tenant.id, authenticator())
    browser = fresh_browser(app)
    fields, _ = _login_page(browser, web)
    options = passkey_options(browser, fields)

    other = fresh_browser(app)  # the ceremony is bound to the browser that asked
    other_fields, _ = _login_page(other, web)
    stolen = passkey_post(
        other, other_fields, options["ceremony"], device.assert_(options["publicKey"])
    )
    assert stolen.status_code == 400 and "form_expired" in stolen.get_data(as_text=True)

    failed = passkey_post(
        browser, fields, options["ceremony"], device.assert_(options["publicKey"], uv=False)
    )
    assert failed.status_code == 401
    replay = passkey_post(
        browser, fields, options["ceremony"], device.assert_(options["publicKey"])
    )
    assert replay.status_code == 400 and "form_used" in replay.get_data(as_text=True)


def test_a_counter_that_goes_back_is_a_cloned_authenticator(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    device = signed_in_with_passkey(client, web, tenant.id, authenticator(counter=5))
    browser = fresh_browser(app)
    assert sign_in_with(browser, web, device, count=9)[0].status_code == 303

    refused, _ = sign_in_with(fresh_browser(app), web, device, count=9)

    assert refused.status_code == 401
    assert 'data-code="passkey_cloned"' in refused.get_data(as_text=True)
    clones = audit_events(client, tenant.headers, "passkey.clone_detected")
    assert len(clones) == 1 and clones[0]["user_id"] == alice
    reasons = [
        e["data"]["reason"] for e in audit_events(client, tenant.headers, "user.signin_failed")
    ]
    assert reasons == ["passkey_cloned"]
    # A later, higher count works again (the refused one changed nothing).
    assert sign_in_with(fresh_browser(app), web, device, count=10)[0].status_code == 303


def test_an_authenticator_that_never_counts_is_accepted(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    device = signed_in_with_passkey(client, web, tenant.id, authenticator(counter=None))
    for _ in range(2):
        assert sign_in_with(fresh_browser(app), web, device)[0].status_code == 303


def test_another_tenants_passkey_is_refused(
    app: Flask,
    client: FlaskClient,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
    web: AppHandle,
    alice: str,
) -> None:
    device = signed_in_with_passkey(client, web, tenant.id, authenticator())
    other_web = factories.make_application(app, other_tenant.id, name="Other")
    make_alice(app, other_tenant.id)

    refused, _ = sign_in_with(fresh_browser(app), other_web, device)

    assert refused.status_code == 401 and "passkey_invalid" in refused.get_data(as_text=True)
    reasons = [
        e["data"]["reason"]
        for e in audit_events(client, other_tenant.headers, "user.signin_failed")
    ]
    assert reasons == ["passkey_unknown_passkey"]


def _second_factor_page(client: FlaskClient, app_handle: AppHandle) -> tuple[Any, str]:
    verifier, challenge = pkce_pair()
    page = client.get("/authorize", query_string=authorize_query(app_handle, challenge))
    step = submit_login(client, page, "alice")
    assert step.status_code == 200 and "Two-step verification" in step.get_data(as_text=True)
    return step, verifier


def _second_factor_options(client: FlaskClient, fields: dict[str, str]) -> dict[str, Any]:
    answer = client.post(
        "/authorize/second-factor/passkey/options",
        data={"csrf_token": fields["csrf_token"], "pending": fields["pending"]},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def test_a_passkey_is_a_second_factor(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    device = signed_in_with_passkey(client, web, tenant.id, authenticator(synced=True))
    confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    browser = fresh_browser(app)
    step, verifier = _second_factor_page(browser, web)
    assert "Use a passkey" in step.get_data(as_text=True)
    fields = form_fields(step.get_data(as_text=True))

    options = _second_factor_options(browser, fields)
    allowed = options["publicKey"]["allowCredentials"]
    assert [c["id"] for c in allowed] == [b64url(device.credential_id)]
    done = browser.post(
        "/authorize/second-factor/passkey",
        data={
            "csrf_token": fields["csrf_token"],
            "pending": fields["pending"],
            "ceremony": options["ceremony"],
            "credential": device.assert_(options["publicKey"]),
        },
    )

    assert done.status_code == 303, done.get_data(as_text=True)
    tokens = exchange(browser, web, query_of(done.headers["Location"])["code"], verifier)
    assert claims(tokens.get_json()["id_token"])["amr"] == ["pwd", "swk", "mfa"]


def test_a_wrong_passkey_as_second_factor_counts_against_the_budget(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    signed_in_with_passkey(client, web, tenant.id, authenticator())
    confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    browser = fresh_browser(app)
    step, _ = _second_factor_page(browser, web)
    fields = form_fields(step.get_data(as_text=True))
    options = _second_factor_options(browser, fields)
    stranger = authenticator()  # a key the account does not hold
    stranger.user_handle = b"x" * 32

    refused = browser.post(
        "/authorize/second-factor/passkey",
        data={
            "csrf_token": fields["csrf_token"],
            "pending": fields["pending"],
            "ceremony": options["ceremony"],
            "credential": stranger.assert_(options["publicKey"]),
        },
    )

    assert refused.status_code == 401
    html = refused.get_data(as_text=True)
    assert "Two-step verification" in html and 'data-code="passkey_invalid"' in html
    reasons = [
        e["data"]["reason"] for e in audit_events(client, tenant.headers, "user.signin_failed")
    ]
    assert reasons == ["wrong_passkey"]
    with app.app_context():
        from app.core.tenancy import tenant_scope
        from app.users import service as user_service

        with tenant_scope(tenant.id):
            assert user_service.get_user(alice).second_factor_failures == 1


def test_the_second_factor_offers_no_passkey_to_a_user_without_one(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    step, _ = _second_factor_page(client, web)
    assert _second_factor_options(client, form_fields(step.get_data(as_text=True))) == {
        "available": False
    }


def test_the_offer_after_a_password_sign_in(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    verifier, challenge = pkce_pair()
    page = client.get("/authorize", query_string=authorize_query(web, challenge))
    fields = form_fields(page.get_data(as_text=True))
    offer = client.post(
        "/authorize",
        data={**fields, "username": "alice", "password": factories.PASSWORD, "webauthn": "1"},
    )

    assert offer.status_code == 200, offer.get_data(as_text=True)
    html = offer.get_data(as_text=True)
    assert "Add a passkey" in html and ">Continue</button>" in html
    assert factories.table_counts(app)["authorization_code"] == 0  # issued when going on
    fields = form_fields(html)
    options = client.post(
        "/authorize/passkey/offer/options",
        data={"csrf_token": fields["csrf_token"], "signed_in": fields["signed_in"]},
    ).get_json()
    device = authenticator()
    added = client.post(
        "/authorize/passkey/offer",
        data={
            "csrf_token": fields["csrf_token"],
            "signed_in": fields["signed_in"],
            "ceremony": options["ceremony"],
            "credential": device.register(options["publicKey"]),
        },
    )
    assert added.status_code == 303, added.get_data(as_text=True)
    tokens = exchange(client, web, query_of(added.headers["Location"])["code"], verifier)
    assert claims(tokens.get_json()["id_token"])["amr"] == ["pwd"]
    assert sign_in_with(fresh_browser(app), web, device)[0].status_code == 303


def test_continue_skips_the_offer_and_this_browser_is_not_asked_again(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    def password_sign_in() -> Any:
        _, challenge = pkce_pair()
        page = client.get(
            "/authorize", query_string=authorize_query(web, challenge, prompt="login")
        )
        fields = form_fields(page.get_data(as_text=True))
        return client.post(
            "/authorize",
            data={**fields, "username": "alice", "password": factories.PASSWORD, "webauthn": "1"},
        )

    offer = password_sign_in()
    fields = form_fields(offer.get_data(as_text=True))
    skipped = client.post(
        "/authorize/passkey/offer",
        data={"csrf_token": fields["csrf_token"], "signed_in": fields["signed_in"], "skip": "1"},
    )
    assert skipped.status_code == 303 and "code=" in skipped.headers["Location"]
    assert any(c.startswith("gh_passkey_skip=1;") for c in skipped.headers.getlist("Set-Cookie"))

    again = password_sign_in()
    assert again.status_code == 303  # straight to the app


def test_account_passkeys_rename_and_remove(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    signed_in_with_passkey(client, web, tenant.id, authenticator())
    page, csrf = _csrf(client, tenant.id)
    html = page.get_data(as_text=True)
    passkey_id = html.split("/account/passkeys/")[1].split("/")[0]
    renamed = client.post(
        f"/account/passkeys/{passkey_id}/rename",
        query_string={"tenant": tenant.id},
        data={"csrf_token": csrf, "name": "Work key"},
    )
    assert renamed.status_code == 303
    assert "Work key" in client.get(renamed.headers["Location"]).get_data(as_text=True)
    removed = client.post(
        f"/account/passkeys/{passkey_id}/remove",
        query_string={"tenant": tenant.id},
        data={"csrf_token": csrf},
    )
    assert removed.status_code == 303
    listed = client.get(removed.headers["Location"]).get_data(as_text=True)
    assert "Passkey removed." in listed and "You have no passkeys yet." in listed
    assert len(audit_events(client, tenant.headers, "passkey.removed")) == 1
    missing = client.post(
        f"/account/passkeys/{passkey_id}/remove",
        query_string={"tenant": tenant.id},
        data={"csrf_token": csrf},
    )
    assert missing.status_code == 404 and "passkey_not_found" in missing.get_data(as_text=True)


def test_account_passkeys_need_a_sign_in(client: FlaskClient, tenant: TenantHandle) -> None:
    answer = client.get("/account/passkeys", query_string={"tenant": tenant.id})
    # The account pages' sign-in for this tenant, not the passkey list.
    body = answer.get_data(as_text=True)
    assert 'action="/account/login"' in body and "You have no passkeys" not in body


def test_management_lists_and_deletes_authentication_methods(
    app: Flask,
    client: FlaskClient,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
    web: AppHandle,
    alice: str,
) -> None:
    device = signed_in_with_passkey(client, web, tenant.id, authenticator(synced=True))
    confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    path = f"/api/v2/users/{alice}/authentication-methods"

    listed = client.get(path, headers=tenant.headers)

    assert listed.status_code == 200, listed.get_data(as_text=True)
    passkey, totp = listed.get_json()
    assert passkey["type"] == "passkey" and passkey["name"] == "My laptop"
    assert passkey["credential_device_type"] == "multi_device"
    assert passkey["credential_backed_up"] is True
    assert passkey["key_id"] == b64url(device.credential_id)
    assert passkey["identity_user_id"] == alice and passkey["public_key"]
    assert passkey["user_handle"] and passkey["last_auth_at"] is None
    assert set(totp) >= {"id", "type", "confirmed", "created_at"} and totp["type"] == "totp"
    assert totp["confirmed"] is True and "key_id" not in totp

    elsewhere = client.get(path, headers=other_tenant.headers)
    assert elsewhere.status_code == 404
    cross = client.delete(f"{path}/{passkey['id']}", headers=other_tenant.headers)
    assert cross.status_code == 404

    assert client.delete(f"{path}/{passkey['id']}", headers=tenant.headers).status_code == 204
    assert client.delete(f"{path}/{totp['id']}", headers=tenant.headers).status_code == 204
    assert client.get(path, headers=tenant.headers).get_json() == []
    gone = client.delete(f"{path}/{passkey['id']}", headers=tenant.headers)
    assert gone.status_code == 404
    assert gone.get_json()["errorCode"] == "authentication_method_not_found"


@pytest.mark.parametrize(
    ("credential", "ceremony", "status", "code"),
    [
        ("not json", None, 401, "passkey_invalid"),
        ('{"id": 5}', None, 401, "passkey_invalid"),
        ("", None, 400, "passkey_invalid"),
        ("x" * 40000, None, 400, "passkey_invalid"),
        ("{}", "forged", 400, "form_expired"),
        ("{}", "", 400, "form_expired"),
    ],
)
def test_bad_passkey_input_shows_the_login_page_with_an_error(
    client: FlaskClient,
    web: AppHandle,
    credential: str,
    ceremony: str | None,
    status: int,
    code: str,
) -> None:
    fields, _ = _login_page(client, web)
    options = passkey_options(client, fields)
    answer = passkey_post(
        client, fields, options["ceremony"] if ceremony is None else ceremony, credential
    )
    assert answer.status_code == status
    assert f'data-code="{code}"' in answer.get_data(as_text=True)


def test_options_need_the_pages_csrf_token(client: FlaskClient, web: AppHandle) -> None:
    fields, _ = _login_page(client, web)
    answer = client.post("/authorize/passkey/options", data={"authz": fields["authz"]})
    assert answer.status_code == 403 and "csrf_failed" in answer.get_data(as_text=True)


def test_no_passkey_is_offered_when_the_relying_party_is_an_ip_address(
    app: Flask, client: FlaskClient, web: AppHandle, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "WEBAUTHN_RP_ID", "127.0.0.1")
    _, challenge = pkce_pair()
    page = client.get("/authorize", query_string=authorize_query(web, challenge))
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "passkey" not in html.lower()
    assert 'autocomplete="username"' in html
    signed_in = client.post(
        "/authorize",
        data={
            **form_fields(html),
            "username": "alice",
            "password": factories.PASSWORD,
            "webauthn": "1",
        },
    )
    assert signed_in.status_code == 303  # no offer: straight to the app


def test_passkey_sign_in_is_limited_per_ip(
    app: Flask, database_url: str, tmp_path: Any, web: AppHandle, alice: str
) -> None:
    with rate_limited_app(
        app,
        database_url,
        tmp_path,
        RATELIMIT_SIGNIN_PER_IP="2 per minute",
        WEBAUTHN_RP_ID=RP_ID,
        WEBAUTHN_ORIGINS=ORIGIN,
    ) as limited:
        browser = limited.test_client()
        device = authenticator()
        answers = [sign_in_with(browser, web, device)[0].status_code for _ in range(3)]

    assert answers == [401, 401, 429]  # an unknown passkey twice, then the limit
