#!/usr/bin/env python
"""Document preview benchmark (not run by `make test`): a 20-page, 5 MB scanned PDF on the item page.

A document verification item gets a generated scan: 20 pages, each a page-sized RGB image of random
pixels (incompressible, like a scan; about 256 KB a page, 5 MB in all), uploaded through
services.items.attachments as a person's upload would be. The app runs under gunicorn (2 workers, as
in production, on a fresh SQLite file) and headless Debian Chromium opens the item page as the
executive, in a fresh browser context each run (no cache), timing:

  first page   from the navigation to the item page until pdf.js has drawn page 1 beside the fields
               (the viewer's data-state becomes "rendered": the page loaded, the 5 MB fetched from
               /items/<ref>/attachments/<id>/preview, parsed and page 1 painted)
  page 20      from a click on the page list's "20" until page 20 is drawn
  next page    from a click on "next" (page 19 -> 20 -> ...) until drawn, the paging a verifier does

and prints p50 / p95 / max of each over --runs runs (default 10).

  .venv/bin/python bench/preview.py
  .venv/bin/python bench/preview.py --runs 20 --pages 40
"""
import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
EMAIL, PASSWORD = "verifier@bench.example.com", "bench-password-123"


def log(message):
    print(message, flush=True)


def scanned_pdf(pages, side=295, seed=3):
    """`pages` pages, each showing a side x side RGB image of random bytes (side 295: 261 KB a page)."""
    from pypdf import PdfWriter
    from pypdf.generic import ArrayObject, DictionaryObject, NameObject, NumberObject, StreamObject

    rng = random.Random(seed)
    writer = PdfWriter()
    for _ in range(pages):
        page = writer.add_blank_page(width=595, height=842)
        image = StreamObject()
        image.set_data(rng.randbytes(side * side * 3))
        image.update({NameObject("/Type"): NameObject("/XObject"), NameObject("/Subtype"): NameObject("/Image"),
                      NameObject("/Width"): NumberObject(side), NameObject("/Height"): NumberObject(side),
                      NameObject("/ColorSpace"): NameObject("/DeviceRGB"),
                      NameObject("/BitsPerComponent"): NumberObject(8)})
        page[NameObject("/Resources")] = DictionaryObject({
            NameObject("/XObject"): DictionaryObject({NameObject("/Im0"): writer._add_object(image)}),
            NameObject("/ProcSet"): ArrayObject([NameObject("/PDF"), NameObject("/ImageC")])})
        content = StreamObject()
        content.set_data(b"q 595 0 0 842 0 0 cm /Im0 Do Q")
        page[NameObject("/Contents")] = writer._add_object(content)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(pages):
    """The executive, the team and the item with its scan; returns (ref, size of the PDF)."""
    from queue_app import create_app
    from queue_app.extensions import db
    from queue_app.models import Team
    from queue_app.services.items import attachments, lifecycle
    from queue_app.services.people import users

    app = create_app()
    with app.app_context():
        db.create_all()
        team = Team(name="Documents", work_types=["document_verification"])
        db.session.add(team)
        db.session.flush()
        verifier = users.create_user(db.session, email=EMAIL, password=PASSWORD, role="executive", name="Vera Fier",
                                     teams=["Documents"])
        item = lifecycle.create_item(db.session, actor=None, source="api", type="document_verification",
                                     subject="Passport and proof of address", team=team, assignee=verifier,
                                     requester_email="customer@example.com",
                                     fields={"document_type": "passport", "document_number": "C01X00T47",
                                             "expires_on": "2031-05-01"})
        data = scanned_pdf(pages)
        attachments.attach_file(db.session, item, actor=verifier, filename="scan.pdf", data=data)
        db.session.commit()
        return item.ref, len(data)


def percentiles(values):
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:7.0f} ms   p95 {p95 * 1000:7.0f} ms   max {ordered[-1] * 1000:7.0f} ms"


def measure(base_url, ref, runs, pages):
    from playwright.sync_api import expect, sync_playwright

    first, jump, paging = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        for run in range(runs):
            context = browser.new_context(base_url=base_url, viewport={"width": 1440, "height": 1000})
            context.set_default_timeout(60_000)
            page = context.new_page()
            page.goto("/login")
            page.get_by_label("Email").fill(EMAIL)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/")
            viewer = page.locator("#preview-viewer")

            started = time.perf_counter()
            page.goto(f"/items/{ref}")
            expect(viewer).to_have_attribute("data-state", "rendered")
            first.append(time.perf_counter() - started)
            expect(viewer).to_have_attribute("data-pages", str(pages))

            started = time.perf_counter()
            page.get_by_role("button", name=f"Page {pages}", exact=True).click()
            expect(page.locator("#preview-page-status")).to_have_text(f"Page {pages} of {pages}")
            expect(viewer).to_have_attribute("data-state", "rendered")
            jump.append(time.perf_counter() - started)

            page.get_by_role("button", name="Page 1", exact=True).click()
            expect(viewer).to_have_attribute("data-state", "rendered")
            for n in range(2, min(pages, 6) + 1):
                started = time.perf_counter()
                page.locator("#preview-next").click()
                expect(page.locator("#preview-page-status")).to_have_text(f"Page {n} of {pages}")
                expect(viewer).to_have_attribute("data-state", "rendered")
                paging.append(time.perf_counter() - started)
            if run == 0:
                page.screenshot(path=str(Path(tempfile.gettempdir()) / "backdesk-preview-bench.png"))
            context.close()
        browser.close()
    return first, jump, paging


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        sys.exit(f"{CHROMIUM} is not installed (apt-get install chromium)")

    tmp = Path(tempfile.mkdtemp(prefix="backdesk-bench-preview-"))
    env = dict(os.environ, BACKDESK_ENV="development", DATABASE_URL=f"sqlite:///{tmp / 'bench.db'}",
               BACKDESK_INSTANCE_DIR=str(tmp / "instance"), OUTBOX_DELIVER_ON_COMMIT="false", LOG_LEVEL="WARNING",
               SECRET_KEY="bench-only-secret")
    os.environ.update(env)
    (tmp / "instance").mkdir()
    ref, size = seed(args.pages)
    log(f"item {ref}: a {args.pages}-page scanned PDF of {size / 1e6:.1f} MB; database {tmp / 'bench.db'}")

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("gunicorn did not start")
                time.sleep(0.2)
        first, jump, paging = measure(f"http://127.0.0.1:{port}", ref, args.runs, args.pages)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
    log(f"gunicorn (2 workers), headless Chromium, {args.runs} runs, a fresh browser context each:")
    log(f"  time to first page  {percentiles(first)}")
    log(f"  page {args.pages} (page list) {percentiles(jump)}")
    log(f"  next page           {percentiles(paging)}")


if __name__ == "__main__":
    main()
