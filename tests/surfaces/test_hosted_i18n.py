"""The hosted pages and their mails speak English, German and French: the first
supported language of the authorization request's `ui_locales`, then of the browser's
Accept-Language, else English; the sealed request carries the choice from one step of a
flow to the next. Mails are written in the language of the request that sends them."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import TenantHandle
from tests.oauth_support import (
    PASSWORD,
    authorize_query,
    bearer,
    form_fields,
    login_page,
    pkce_pair,
    sign_in,
)
from tests.postmark_fake import FakePostmark
from tests.surfaces.hosted_pages import VIEWPORT

VERIFY_LINK = re.compile(r"http://gatehouse\.test/verify-email\?token=([^\s\"'<>&]+)")
HOST = "app.example.com"


@pytest.fixture()
def mail_tenant(app: Flask) -> TenantHandle:
    return factories.make_tenant(
        app,
        "mailco",
        email_from="noreply@example.com",
        postmark_server_token="pm-token-1",
        password_reset_hosts=[HOST],
    )


@pytest.fixture()
def handle(app: Flask, mail_tenant: TenantHandle) -> Any:
    factories.make_user(
        app,
        mail_tenant.id,
        user_id="u-alice",
        username="alice",
        email="alice@example.com",
        password=PASSWORD,
    )
    return factories.make_application(
        app, mail_tenant.id, name="Acme Notes", redirect_uris=["https://app.example.com/cb"]
    )


def _lang(body: str) -> str:
    found = re.search(r'<html lang="([^"]+)"', body)
    assert found, body[:200]
    return found.group(1)


def _title(body: str) -> str:
    found = re.search(r"<title>(.*?)</title>", body, re.S)
    assert found
    return html.unescape(found.group(1)).strip()


CHOICES = {
    "no preference": ({}, None, "en", "Sign in to Acme Notes"),
    "Accept-Language de": ({}, "de-DE,de;q=0.9,en;q=0.5", "de", "Bei Acme Notes anmelden"),
    "Accept-Language fr-CA": ({}, "fr-CA", "fr", "Connexion à Acme Notes"),
    "unsupported language": ({}, "es-ES,es;q=0.9", "en", "Sign in to Acme Notes"),
    "later supported one": ({}, "es, de;q=0.5", "de", "Bei Acme Notes anmelden"),
    "ui_locales beats it": ({"ui_locales": "fr"}, "de", "fr", "Connexion à Acme Notes"),
    "first known ui_locale": ({"ui_locales": "ja de-CH fr"}, "fr", "de", "Bei Acme Notes anmelden"),
    "unknown ui_locales": ({"ui_locales": "ja"}, "fr", "fr", "Connexion à Acme Notes"),
}


@pytest.mark.parametrize(("extra", "accept", "lang", "title"), CHOICES.values(), ids=CHOICES.keys())
def test_the_login_page_speaks_the_chosen_language(
    client: FlaskClient,
    handle: Any,
    extra: dict[str, str],
    accept: str | None,
    lang: str,
    title: str,
) -> None:
    headers = {"Accept-Language": accept} if accept else {}
    _, challenge = pkce_pair()
    page = client.get(
        "/authorize", query_string=authorize_query(handle, challenge, **extra), headers=headers
    )
    body = page.get_data(as_text=True)
    assert page.status_code == 200, body
    assert _lang(body) == lang and _title(body) == title


def test_the_language_of_ui_locales_carries_to_the_next_step(
    client: FlaskClient, handle: Any
) -> None:
    """The form comes back with a German browser's Accept-Language, but the request
    asked for French: the error is French."""
    page = login_page(client, handle, ui_locales="fr")
    fields = form_fields(page.get_data(as_text=True))
    fields.update(username="alice", password="not the password")
    answer = client.post("/authorize", data=fields, headers={"Accept-Language": "de"})
    body = answer.get_data(as_text=True)
    assert answer.status_code == 401 and _lang(body) == "fr"
    assert "Nom d’utilisateur, e-mail ou mot de passe incorrect" in html.unescape(body)
    assert "Mot de passe" in body


def test_errors_and_pages_without_a_request_follow_the_browser(client: FlaskClient) -> None:
    german = {"Accept-Language": "de"}
    error = client.get("/verify-email?token=forged", headers=german)
    body = html.unescape(error.get_data(as_text=True))
    assert error.status_code == 400 and _lang(body) == "de"
    assert "Etwas ist schiefgelaufen" in body
    assert "Der Link ist ungültig, bereits verwendet oder abgelaufen" in body
    french = client.get("/verify-email?token=forged&ui_locales=fr", headers=german)
    assert "Le lien est invalide" in html.unescape(french.get_data(as_text=True))
    signed_out = client.get("/logout", headers={"Accept-Language": "fr"})
    assert "Vous êtes déconnecté" in html.unescape(signed_out.get_data(as_text=True))


def test_the_sealed_form_errors_are_translated(client: FlaskClient, handle: Any) -> None:
    page = login_page(client, handle)
    fields = form_fields(page.get_data(as_text=True))
    fields.update(username="alice", password=PASSWORD, authz="tampered")
    answer = client.post("/authorize", data=fields, headers={"Accept-Language": "de"})
    body = html.unescape(answer.get_data(as_text=True))
    assert answer.status_code == 400 and "Diese Anmeldung hat zu lange gedauert" in body


def _mails(postmark: FakePostmark, count: int) -> list[Any]:
    mails = factories.wait_until(lambda: len(postmark.mails()) >= count and postmark.mails())
    assert mails and len(mails) == count, postmark.received
    return mails


def test_the_reset_mail_is_written_in_the_request_language(
    client: FlaskClient,
    handle: Any,
    mail_tenant: TenantHandle,
    postmark: FakePostmark,
    celery_worker: object,
) -> None:
    for number, (language, subject, phrase) in enumerate(
        [
            ("de", "Setzen Sie Ihr Passwort zurück", "Neues Passwort wählen"),
            (
                "fr-FR,fr;q=0.9",
                "Réinitialisez votre mot de passe",
                "Choisir un nouveau mot de passe",
            ),
            ("es", "Reset your password", "Choose a new password"),
        ],
        start=1,
    ):
        asked = client.post(
            "/auth/password-reset",
            json={"email": "alice@example.com", "host": HOST},
            headers={"X-Tenant-ID": mail_tenant.id, "Accept-Language": language},
        )
        assert asked.status_code == 200, asked.get_data(as_text=True)
        mail = _mails(postmark, number)[-1]
        assert mail.body["Subject"] == subject
        assert phrase in html.unescape(mail.body["HtmlBody"])
        assert f"https://{HOST}/reset-password?token=" in mail.body["TextBody"]


@pytest.mark.browser
def test_a_german_browser_sees_german_pages_and_mails(
    app: Flask,
    client: FlaskClient,
    live_server: str,
    browser: Any,
    handle: Any,
    mail_tenant: TenantHandle,
    postmark: FakePostmark,
    celery_worker: object,
) -> None:
    context = browser.new_context(viewport=VIEWPORT, locale="de-DE")
    page = context.new_page()
    try:
        _, challenge = pkce_pair()
        page.goto(f"{live_server}/authorize?{urlencode(authorize_query(handle, challenge))}")
        assert page.title() == "Bei Acme Notes anmelden"
        assert page.locator("html").get_attribute("lang") == "de"
        page.get_by_label("Benutzername oder E-Mail-Adresse").fill("alice")
        page.get_by_label("Passwort", exact=True).fill("not the password")
        page.get_by_role("button", name="Anmelden").click()
        alert = page.get_by_role("alert")
        assert "Falscher Benutzername" in alert.inner_text()

        # The app asks for a verification mail on behalf of the German user.
        token = sign_in(client, mail_tenant.id, "alice")["access_token"]
        asked = client.post(
            "/users/me/verify-email",
            headers={**bearer(token), "Accept-Language": page.evaluate("navigator.language")},
        )
        assert asked.status_code == 200
        [mail] = _mails(postmark, 1)
        assert mail.body["Subject"] == "Bestätigen Sie Ihre E-Mail-Adresse"
        assert "Bitte bestätigen Sie, dass dies Ihre E-Mail-Adresse ist." in mail.body["TextBody"]
        assert "Meine E-Mail-Adresse bestätigen" in html.unescape(mail.body["HtmlBody"])
        link = VERIFY_LINK.search(mail.body["TextBody"])
        assert link
        page.goto(f"{live_server}/verify-email?token={link.group(1)}")
        assert page.get_by_role("heading", level=1).inner_text() == "E-Mail-Adresse bestätigt"
    finally:
        context.close()


@pytest.mark.browser
def test_ui_locales_beats_the_browser_language(live_server: str, browser: Any, handle: Any) -> None:
    context = browser.new_context(viewport=VIEWPORT, locale="de-DE")
    page = context.new_page()
    try:
        _, challenge = pkce_pair()
        query = authorize_query(handle, challenge, ui_locales="fr-FR en")
        page.goto(f"{live_server}/authorize?{urlencode(query)}")
        assert page.locator("html").get_attribute("lang") == "fr"
        page.get_by_label("Nom d’utilisateur ou adresse e-mail").fill("alice")
        page.get_by_label("Mot de passe", exact=True).fill("wrong")
        page.get_by_role("button", name="Se connecter").click()
        assert "incorrect" in page.get_by_role("alert").inner_text()
        assert page.locator("html").get_attribute("lang") == "fr"
    finally:
        context.close()


def test_the_lock_message_counts_minutes_in_the_page_language(app: Flask) -> None:
    from app.api.hosted import page_message
    from app.core.errors import RateLimited

    locked = RateLimited("English", code="second_factor_locked", headers={"Retry-After": "61"})
    with app.test_request_context("/authorize", headers={"Accept-Language": "de"}):
        assert "noch 2 Minuten lang abgelehnt" in page_message(locked)
    with app.test_request_context("/authorize", headers={"Accept-Language": "fr"}):
        assert "pendant encore 1 minute ;" in page_message(
            RateLimited("English", code="second_factor_locked", headers={"Retry-After": "60"})
        )
    with app.test_request_context("/authorize"):
        assert page_message(locked).endswith("for 2 more minutes; then try again.")
