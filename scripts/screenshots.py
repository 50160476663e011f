"""Take the README's screenshots (docs/screenshots/*.png) from a fresh demo database.

    .venv/bin/python scripts/screenshots.py

Runs the app in this process on a temporary SQLite database filled by `seed-demo`, and
drives Debian's Chromium (/usr/bin/chromium) with Playwright. Needs no Redis: nothing is
enqueued while the pages are only looked at.
"""
import os
import re
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
sys.path.insert(0, str(ROOT))

WORK = tempfile.mkdtemp(prefix="backdesk-shots-")
os.environ.update(BACKDESK_ENV="development", BACKDESK_INSTANCE_DIR=WORK,
                  DATABASE_URL=f"sqlite:///{WORK}/demo.db", REDIS_URL="redis://127.0.0.1:1/0")


def main():
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from config import DevelopmentConfig
    from queue_app import create_app
    from queue_app.extensions import db

    config = DevelopmentConfig.load()
    config.OUTBOX_DELIVER_ON_COMMIT = False
    app = create_app(config)
    with app.app_context():
        db.create_all()
        result = app.test_cli_runner().invoke(args=["seed-demo", "--seed", "7"])
    if result.exit_code != 0:
        sys.exit(f"seed-demo failed: {result.output}")
    logins = dict(re.findall(r"^(\S+@\S+)\s+(\S+)\s+\(", (Path(WORK) / "demo-logins.txt").read_text(), re.M))

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    OUT.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])

        def signed_in(email):
            context = browser.new_context(base_url=base, viewport={"width": 1366, "height": 860})
            page = context.new_page()
            page.goto("/login")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", logins[email])
            page.click("main [type=submit]")
            page.wait_for_load_state()
            return page

        priya = signed_in("priya@backdesk.example.com")
        priya.goto("/")
        priya.screenshot(path=OUT / "inbox.png")
        priya.locator("table a[href^='/items/']").first.click()
        priya.wait_for_load_state()
        priya.screenshot(path=OUT / "item.png", full_page=False)

        sam = signed_in("sam.supervisor@backdesk.example.com")
        sam.goto("/supervisor")
        sam.screenshot(path=OUT / "board.png")
        sam.goto("/supervisor/reports")
        sam.screenshot(path=OUT / "reports.png")
        browser.close()
    server.shutdown()
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
