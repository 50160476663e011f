"""Documents previewed on the item page in a real browser: PDFs drawn by the vendored pdf.js (first
page, paging, zoom), encrypted or damaged PDFs said plainly, images zoomed and rotated. The
new_page fixture fails any test in which the Content-Security-Policy blocked something, so pdf.js
and its worker run under the site's strict policy here."""
import io
import re

import pytest
from playwright.sync_api import expect
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from queue_app.models import WorkItem
from queue_app.services.items import lifecycle
from tests.browser.conftest import sign_in
from tests.check_files import attach, encrypted_pdf, png

pytestmark = pytest.mark.browser

BLUE, RED = (0, 0, 1), (1, 0, 0)


def coloured_pdf(*colours):
    """One page per colour, each filled with it, and a document number written on it in Helvetica
    (a font the file does not carry, as in many scans' text layer)."""
    writer = PdfWriter()
    for r, g, b in colours:
        page = writer.add_blank_page(width=300, height=400)
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        stream = DecodedStreamObject()
        stream.set_data(f"{r} {g} {b} rg 0 0 300 400 re f BT 1 1 1 rg /F1 20 Tf 20 360 Td (P1234567) Tj ET".encode())
        page.replace_contents(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
def world(session, make_team, make_user, make_item):
    docs = make_team(name="Documents", work_types=["document_verification", "general"])
    ana = make_user(email="ana@example.com", name="Ana Exec", teams=[docs])
    item = make_item(team=docs, type="document_verification", assignee=ana, subject="Passport check")
    session.commit()
    return type("World", (), dict(docs=docs, ana=ana, item=item))


def rendered(page):
    viewer = page.locator("#preview-viewer")
    expect(viewer).to_have_attribute("data-state", "rendered")
    return viewer


def centre_colour(page):
    """The RGB of the middle of the drawn page."""
    return page.evaluate("""() => {
        const c = document.querySelector('#preview-stage canvas');
        const [r, g, b] = c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data;
        return [r, g, b];
    }""")


def test_an_uploaded_pdf_is_drawn_beside_the_fields(page, new_page, shot, world):
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{world.item.ref}")
    expect(page.locator("#preview")).to_have_count(0)  # no documents yet: no panel
    page.get_by_label("Files").set_input_files(
        [{"name": "passport.pdf", "mimeType": "application/pdf", "buffer": coloured_pdf(BLUE)}])
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".flash-success")).to_contain_text("Added passport.pdf.")

    viewer = rendered(page)
    expect(viewer).to_have_attribute("data-pages", "1")
    expect(page.locator("#preview-page-status")).to_have_text("Page 1 of 1")
    expect(page.locator("#preview-stage canvas")).to_be_visible()
    assert centre_colour(page) == [0, 0, 255]  # the page's blue, not an empty frame
    expect(page.locator("#preview-files")).to_contain_text("passport.pdf")
    expect(page.locator("#preview-pages")).to_be_hidden()  # one page: no page list
    # Beside the fields: the panel follows the request's details and sits next to the checks.
    fields = page.locator("#item-fields").bounding_box()
    panel = page.locator("#preview").bounding_box()
    checks = page.locator("#checks-heading").bounding_box()
    assert panel["y"] > fields["y"] and checks["x"] > panel["x"] + panel["width"] - 1
    page.screenshot(path=shot("preview-pdf.png"), full_page=True)

    wide = new_page(width=1920, height=1080)  # a wide screen: the document right beside the details
    sign_in(wide, "ana@example.com")
    wide.goto(f"/items/{world.item.ref}")
    rendered(wide)
    fields = wide.locator("#item-fields").bounding_box()
    panel = wide.locator("#preview").bounding_box()
    checks = wide.locator("#checks-heading").bounding_box()
    assert fields["x"] + fields["width"] < panel["x"] and panel["y"] < fields["y"] + fields["height"]
    assert panel["x"] + panel["width"] < checks["x"]
    assert centre_colour(wide) == [0, 0, 255]
    wide.screenshot(path=shot("preview-pdf-wide.png"))


def test_paging_and_zoom_through_a_two_page_pdf(page, session, world):
    attach(session, world.item, "statement.pdf", coloured_pdf(BLUE, RED))
    session.commit()
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{world.item.ref}")

    viewer = rendered(page)
    expect(viewer).to_have_attribute("data-pages", "2")
    expect(page.locator("#preview-page-status")).to_have_text("Page 1 of 2")
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()
    assert centre_colour(page) == [0, 0, 255]
    # Parsed in pdf.js's worker, loaded from this site (the CSP guard of new_page covers it too).
    assert [w.url.split("/static/", 1)[-1] for w in page.workers] == ["vendor/pdfjs/pdf.worker.min.mjs"]

    page.get_by_role("button", name="Next page").click()
    expect(viewer).to_have_attribute("data-page", "2")
    rendered(page)
    expect(page.locator("#preview-page-status")).to_have_text("Page 2 of 2")
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    assert centre_colour(page) == [255, 0, 0]

    # The page list shows each page's picture, drawn by pdf.js beside its number once it is in view.
    page.locator("#preview-pages").scroll_into_view_if_needed()
    for n, colour in ((1, [0, 0, 255]), (2, [255, 0, 0])):
        expect(page.get_by_role("button", name=f"Page {n}", exact=True)).to_have_attribute("data-drawn", "1")
        assert page.evaluate("""(n) => {
            const c = document.querySelector(`#preview-page-list button[data-page="${n}"] canvas`);
            const [r, g, b] = c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data;
            return [r, g, b];
        }""", n) == colour
    page.get_by_role("button", name="Page 1", exact=True).click()  # the page list
    expect(viewer).to_have_attribute("data-page", "1")
    rendered(page)
    assert centre_colour(page) == [0, 0, 255]
    expect(page.get_by_role("button", name="Page 1", exact=True)).to_have_attribute("aria-current", "page")

    width = page.locator("#preview-stage canvas").bounding_box()["width"]
    page.get_by_role("button", name="Zoom in").click()
    expect(page.locator("#preview-zoom-status")).to_have_text("125%")
    rendered(page)
    page.wait_for_function(f"() => document.querySelector('#preview-stage canvas').getBoundingClientRect().width > {width + 10}")
    page.get_by_role("button", name="Rotate clockwise").click()
    rendered(page)
    page.wait_for_function("() => { const c = document.querySelector('#preview-stage canvas'); return c.width > c.height; }")


def test_an_encrypted_pdf_says_it_cannot_be_previewed(page, session, world):
    attach(session, world.item, "locked.pdf", encrypted_pdf())
    session.commit()
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{world.item.ref}")

    expect(page.locator("#preview-viewer")).to_have_attribute("data-state", "failed")
    expect(page.locator("#preview-message")).to_have_text(
        "Cannot preview locked.pdf: the PDF is encrypted. Download it to open it in another program.")
    expect(page.locator("#preview-stage canvas")).to_be_hidden()
    expect(page.locator("#preview-files").get_by_role("link", name="locked.pdf")).to_be_visible()


def test_a_damaged_pdf_says_it_cannot_be_previewed(page, session, world):
    attach(session, world.item, "broken.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8)
    session.commit()
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{world.item.ref}")

    expect(page.locator("#preview-viewer")).to_have_attribute("data-state", "failed")
    expect(page.locator("#preview-message")).to_contain_text("Cannot preview broken.pdf: the PDF is damaged")
    expect(page.locator("#preview-stage canvas")).to_be_hidden()


def test_several_documents_are_chosen_and_images_zoom_and_rotate(page, session, world):
    attach(session, world.item, "passport.pdf", coloured_pdf(BLUE))
    attach(session, world.item, "photo.png", png())
    session.commit()
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{world.item.ref}")
    rendered(page)
    assert centre_colour(page) == [0, 0, 255]

    page.get_by_label("Document", exact=True).select_option(label="photo.png")
    rendered(page)
    image = page.locator("#preview-stage img")
    expect(image).to_be_visible()
    expect(page.locator("#preview-stage canvas")).to_be_hidden()
    expect(page.locator("#preview-paging")).to_be_hidden()  # an image has no pages
    page.get_by_role("button", name="Zoom in").click()
    page.get_by_role("button", name="Rotate clockwise").click()
    expect(image).to_have_css("transform", re.compile(r"^matrix\(0, 1\.25, -1\.25, 0, [\d.]+, 0\)$"))  # 90°, 125%
    # Turned and zoomed, the image is still where the stage can scroll to all of it.
    box, stage = image.bounding_box(), page.locator("#preview-stage").bounding_box()
    assert box["x"] >= stage["x"] and box["y"] >= stage["y"] and box["width"] > 1

    page.get_by_label("Document", exact=True).select_option(label="passport.pdf")
    rendered(page)
    expect(page.locator("#preview-stage canvas")).to_be_visible()
    expect(page.locator("#preview-zoom-status")).to_have_text("100%")  # each document starts afresh


def test_without_javascript_the_downloads_stay(browser, live_server, world, session):
    attach(session, world.item, "passport.pdf", coloured_pdf(BLUE))
    session.commit()
    context = browser.new_context(base_url=live_server, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, "ana@example.com")
        page.goto(f"/items/{world.item.ref}")
        expect(page.locator("#preview-viewer")).to_be_hidden()
        link = page.locator("#preview-files").get_by_role("link", name="passport.pdf")
        expect(link).to_have_attribute("href", f"/items/{world.item.ref}/attachments/"
                                       f"{link.get_attribute('href').rsplit('/', 1)[-1]}")
    finally:
        context.close()


def test_the_preview_comes_back_after_a_conflict_swaps_the_page(page, session, world):
    attach(session, world.item, "passport.pdf", coloured_pdf(BLUE))
    session.commit()
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{world.item.ref}")
    rendered(page)

    item = session.get(WorkItem, world.item.id)  # meanwhile, someone else changes the item
    lifecycle.change_status(session, item, "pending_third_party", actor=world.ana, check_access=False)
    session.commit()
    page.get_by_label("Reply to the requester").fill("We are checking your passport.")
    page.get_by_role("button", name="Send reply").click()  # stale: htmx swaps in the page as it is now
    expect(page.locator("#changes")).to_contain_text("While you were looking, this changed:")
    rendered(page)
    expect(page.locator("#preview-stage canvas")).to_be_visible()
    assert centre_colour(page) == [0, 0, 255]


def test_hostile_files_are_refused_with_a_reason_and_run_nothing(page, session, world):
    """The hostile corpus (tests/hostile_files.py) in the panel: encrypted and damaged PDFs said plainly,
    a decompression bomb the checks flagged never fetched into the browser, a pixel bomb never served as
    a picture, a PDF's JavaScript never run, an SVG never shown."""
    from queue_app.services.checks import runner
    from tests import hostile_files

    files = (("locked.pdf", hostile_files.encrypted_pdf), ("broken.pdf", hostile_files.malformed_xref_pdf),
             ("bomb.pdf", hostile_files.decompression_bomb_pdf), ("scan.png", hostile_files.pixel_bomb_png),
             ("script.pdf", hostile_files.javascript_pdf), ("drawing.svg", hostile_files.svg_with_script))
    ids = {name: attach(session, world.item, name, make()).id for name, make in files}
    runner.run_checks(session, world.item.id)  # the bomb is refused on the strength of its "PDF opens" result
    session.commit()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{world.item.ref}")
    viewer, message = page.locator("#preview-viewer"), page.locator("#preview-message")

    expect(viewer).to_have_attribute("data-state", "failed")
    expect(message).to_have_text(
        "Cannot preview locked.pdf: the PDF is encrypted. Download it to open it in another program.")
    choose = page.get_by_label("Document", exact=True)
    expect(choose.locator("option")).to_have_text(  # every file but the SVG
        ["locked.pdf", "broken.pdf", "bomb.pdf", "scan.png", "script.pdf"])

    choose.select_option(label="broken.pdf")
    expect(message).to_contain_text("Cannot preview broken.pdf: the PDF is damaged")
    expect(viewer).to_have_attribute("data-state", "failed")

    choose.select_option(label="bomb.pdf")
    expect(message).to_have_text("Cannot preview bomb.pdf: the checks found it too costly to open (a decompression "
                                 "bomb or over the limits). See the file checks.")
    expect(viewer).to_have_attribute("data-state", "failed")

    choose.select_option(label="scan.png")
    expect(message).to_have_text("Cannot preview scan.png: the image is damaged or too large to show. "
                                 "See the file checks.")
    expect(page.locator("#preview-stage img")).to_be_hidden()

    choose.select_option(label="script.pdf")  # drawn as a page; its OpenAction script never runs
    rendered(page)
    expect(page.locator("#preview-stage canvas")).to_be_visible()
    page.wait_for_timeout(300)
    assert dialogs == []
    expect(page.locator("#checks")).to_contain_text("bomb.pdf: has a compressed part that inflates to over 256 MB")
    expect(page.locator("#checks")).to_contain_text("scan.png: declares 100000 x 100000 pixels")
    expect(page.locator("#checks")).to_contain_text(
        "drawing.svg: is image/svg+xml, not one of PDF, PNG, JPEG or TIFF")
    svg = f"/attachments/{ids['drawing.svg']}/"
    expect(page.locator(f"[src*='{svg}'], [data-src*='{svg}'], object, embed, iframe")).to_have_count(0)
    expect(page.locator("svg text", has_text="Passport")).to_have_count(0)  # never drawn in the page
