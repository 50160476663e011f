"""A live server running the test app, and headless Debian Chromium driven by Playwright.

The server runs in a thread of this process against the same database; each request
pushes its own app context, so it sees only committed data. Tests commit what they
create, and the autouse fixture in tests/conftest.py empties the tables afterwards.
"""
import os
from pathlib import Path
import threading

import pytest
from werkzeug.serving import make_server

from tests.factories import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="session")
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser, live_server):
    """Open pages in fresh browser contexts (separate cookies, like separate people). Any script or
    style the Content-Security-Policy blocked fails the test: it would be behaviour lost in production."""
    contexts = []
    blocked = []

    def open_page(width=1280, height=900):
        context = browser.new_context(base_url=live_server, viewport={"width": width, "height": height})
        context.set_default_timeout(5000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not blocked, blocked


@pytest.fixture
def page(new_page):
    return new_page()




def sign_in(page, email, password=PASSWORD):
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")


@pytest.fixture
def shot(tmp_path):
    """Screenshot paths: in BACKDESK_SCREENSHOTS when set (to look at the pages), else a temp dir."""
    folder = Path(os.environ.get("BACKDESK_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return lambda name: str(folder / name)
