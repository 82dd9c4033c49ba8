"""Every hosted page, in every state of the page table (hosted_pages.PAGES), passes
axe-core's WCAG 2.0/2.1 A and AA rules with no violation, in headless Chromium under the
pages' own Content-Security-Policy (a row whose page another browser test checks with
axe in its flow, `checked_by`, is not walked twice). With SCREENSHOTS=1
(`make screenshots`) every row is walked and saved as docs/screenshots/<name>.png."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.browser_support import csp_violations
from tests.factories import TenantHandle
from tests.postmark_fake import FakePostmark
from tests.surfaces.hosted_pages import PAGES, VIEWPORT, HostedPage, Scene

pytestmark = pytest.mark.browser

WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture()
def mail_tenant(app: Flask) -> TenantHandle:
    return factories.make_tenant(
        app, "acme", email_from="noreply@example.com", postmark_server_token="pm-token-1"
    )


# Rows another browser test checks in its flow are walked only for their screenshots.
ROWS = [row for row in PAGES if os.environ.get("SCREENSHOTS") or row.checked_by is None]


@pytest.mark.parametrize("hosted", ROWS, ids=[row.name for row in ROWS])
def test_every_hosted_page_passes_axe(
    app: Flask,
    client: FlaskClient,
    live_server: str,
    callback_server: str,
    browser: Any,
    mail_tenant: TenantHandle,
    postmark: FakePostmark,
    celery_worker: object,
    hosted: HostedPage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    context = browser.new_context(
        viewport=VIEWPORT, locale=hosted.locale, color_scheme=hosted.color_scheme
    )
    page = context.new_page()
    csp_errors = csp_violations(page)
    try:
        scene = Scene(
            app, client, live_server, callback_server, mail_tenant, page, postmark, monkeypatch
        )
        hosted.reach(scene)
        # The pages' one script (passkeys.js) does its work at DOMContentLoaded and fetches
        # only on a click, so once "load" fires the page is what axe must see; "networkidle"
        # only added its 500 ms quiet period to every row.
        page.wait_for_load_state("load")
        if os.environ.get("SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{hosted.name}.png"), full_page=True)
        assert page.locator("h1").count() == 1
        assert not csp_errors, csp_errors  # nothing on the page breaks its own policy
        results = Axe().run(page, options=WCAG_AA)
        assert results.violations_count == 0, f"{hosted.name}:\n{results.generate_report()}"
    finally:
        context.close()
