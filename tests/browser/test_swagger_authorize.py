"""Swagger UI's Authorize against LocalRealm, in a real headless Chromium.

The whole path a newcomer clicks through: FastAPI serves Swagger UI from local files (npm's
``swagger-ui-dist``: the test machines reach no CDN), Authorize runs the client-credentials flow
from the browser against the realm's token endpoint (a cross-origin request, allowed by the
client's Web Origins), and the protected route answers 200 to the token Swagger UI got. The
screenshot of the result is saved in the test's temporary folder; with
``KEYCLOAK_M2M_UPDATE_SCREENSHOTS=1`` it also replaces the one docs/fastapi.md shows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from keycloak_m2m import Principal, TokenValidator
from keycloak_m2m.fastapi import TokenAuth
from keycloak_m2m.testing import LocalRealm

from ..adapters.servers import serve_asgi
from ..support import AUDIENCE

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")

SWAGGER_UI = Path(__file__).parent / "node_modules" / "swagger-ui-dist"
SCREENSHOT = Path(__file__).parents[2] / "docs" / "images" / "swagger-authorize.png"
CHROMIUM = shutil.which("chromium")
# As the machine's own probe starts it: no sandbox as root, and no calls to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CLIENT_ID = "swagger-ui"
SECRET = "swagger-ui-secret"

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"
    ),
    pytest.mark.skipif(
        not SWAGGER_UI.is_dir(), reason="needs swagger-ui-dist: npm ci --prefix tests/browser"
    ),
]


def documented_app(validator: TokenValidator, token_url: str) -> FastAPI:
    """A FastAPI app whose Swagger UI is served from local files, as docs/fastapi.md shows."""
    auth = TokenAuth(validator, token_url=token_url)
    app = FastAPI(docs_url=None)
    auth.install(app)
    app.mount("/swagger-ui", StaticFiles(directory=SWAGGER_UI), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Notifications",
            swagger_js_url="/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/swagger-ui/favicon-32x32.png",
        )

    caller = Depends(auth)

    @app.get("/notifications")
    async def notifications(principal: Principal = caller) -> dict[str, str]:
        return {"client_id": principal.client_id}

    return app


@pytest.fixture
def served() -> Iterator[tuple[LocalRealm, str]]:
    with LocalRealm("shop") as realm:
        validator = TokenValidator(realm.issuer, AUDIENCE)
        with serve_asgi(documented_app(validator, realm.token_url)) as url:
            realm.add_client(CLIENT_ID, SECRET, audience=[AUDIENCE], web_origins=[url])
            yield realm, url


def test_authorize_then_call_a_protected_route(
    served: tuple[LocalRealm, str], tmp_path: Path
) -> None:
    realm, url = served
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url + "/docs")
            page.click("button.authorize")
            page.fill("#client_id_clientCredentials", CLIENT_ID)
            page.fill("#client_secret_clientCredentials", SECRET)
            page.click("button[aria-label='Apply given OAuth2 credentials']")
            # Swagger UI shows Logout once the token endpoint answered the browser's request.
            page.wait_for_selector("button[aria-label='Remove authorization']", timeout=20_000)
            page.click(".modal-ux .close-modal")

            page.click(".opblock-get .opblock-summary-control")
            page.click("button.try-out__btn")
            page.click("button.execute")
            status = page.wait_for_selector(".live-responses-table tbody .response-col_status")
            assert status is not None
            assert status.inner_text().strip().startswith("200")
            body = page.inner_text(".live-responses-table tbody .response-col_description")
            assert f'"client_id": "{CLIENT_ID}"' in body
            # The curl line would show the (throwaway) token: no token in a picture either.
            page.add_style_tag(content=".curl-command { display: none; }")
            page.screenshot(path=str(tmp_path / SCREENSHOT.name), full_page=True)
            if os.environ.get("KEYCLOAK_M2M_UPDATE_SCREENSHOTS") == "1":
                shutil.copyfile(tmp_path / SCREENSHOT.name, SCREENSHOT)
        finally:
            browser.close()
    assert realm.request_count("token") >= 1


def test_without_web_origins_the_browser_cannot_get_a_token(
    served: tuple[LocalRealm, str],
) -> None:
    realm, url = served
    realm.add_client(CLIENT_ID, SECRET, audience=[AUDIENCE])  # no Web Origins now
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url + "/docs")
            page.click("button.authorize")
            page.fill("#client_id_clientCredentials", CLIENT_ID)
            page.fill("#client_secret_clientCredentials", SECRET)
            page.click("button[aria-label='Apply given OAuth2 credentials']")
            error = page.wait_for_selector(".modal-ux .errors", timeout=20_000)
            assert error is not None
            assert "Failed to fetch" in error.inner_text()
        finally:
            browser.close()
