"""Adding documents in a real browser: the item page's upload box (picker, progress, files listed
afterwards) and the front-office form's documents."""

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from queue_app.models import WorkItem
from tests.browser.conftest import sign_in
from tests.check_files import pdf, png

pytestmark = pytest.mark.browser


@pytest.fixture
def world(session, make_team, make_user):
    docs = make_team(name="Documents", work_types=["document_verification", "general"])
    ana = make_user(email="ana@example.com", name="Ana Exec", teams=[docs])
    front = make_user(email="front@example.com", name="Fran Front", teams=[docs])
    session.commit()
    return type("World", (), dict(docs=docs, ana=ana, front=front))


def test_executive_uploads_a_pdf_and_an_image_with_a_progress_bar(page, shot, session, world, make_item):
    item = make_item(team=world.docs, type="document_verification", assignee=world.ana, subject="Passport check")
    session.commit()
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{item.ref}")
    expect(page.locator("#upload-drop-hint")).to_be_visible()  # the script took over: drop files here too
    expect(page.locator("#upload-progress")).to_be_hidden()

    page.get_by_label("Files").set_input_files([
        {"name": "passport.pdf", "mimeType": "application/pdf", "buffer": pdf()},
        {"name": "photo.png", "mimeType": "image/png", "buffer": png()},
    ])
    expect(page.locator("#upload-chosen li")).to_have_count(2)
    expect(page.locator("#upload-chosen")).to_contain_text("passport.pdf")

    # Hold the upload at the server's door so the progress bar can be seen while it is on its way.
    held = []
    page.route(f"**/items/{item.ref}/attachments", lambda route: held.append(route))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-progress")).to_be_visible()
    expect(page.locator("#upload-status")).to_have_text("Uploading 2 files…")
    expect(page.locator("#upload-submit")).to_be_disabled()
    page.screenshot(path=shot("upload-progress.png"), full_page=True)
    page.wait_for_function("() => true")  # let the route handler run
    assert len(held) == 1
    assert held[0].request.headers.get("x-csrftoken")
    held[0].continue_()

    expect(page.locator(".flash-success")).to_have_text("Added 2 files: passport.pdf, photo.png. "
                                                        "The checks run again.")
    attachments = page.locator("#thread .attachments li")
    expect(attachments).to_have_count(2)
    expect(attachments.nth(0)).to_contain_text("passport.pdf")
    expect(attachments.nth(1)).to_contain_text("photo.png")
    expect(page.locator("#history")).to_contain_text("passport.pdf")
    expect(page.locator("#upload-progress")).to_be_hidden()
    thumb = page.get_by_role("img", name="Preview of photo.png")  # in the thread: the image's thumbnail
    expect(thumb).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth === 1", arg=thumb.element_handle())
    expect(page.locator("#thread img.attachment-thumb")).to_have_count(1)
    # Beside the fields, the Documents panel draws the PDF's first page (the first document).
    viewer = page.locator("#preview-viewer")
    expect(viewer).to_have_attribute("data-state", "rendered")
    expect(viewer).to_have_attribute("data-pages", "1")
    expect(page.locator("#preview-stage canvas")).to_be_visible()
    expect(page.locator("#preview-files")).to_contain_text("photo.png")
    page.screenshot(path=shot("upload-done.png"), full_page=True)


def test_a_refused_file_is_said_on_the_page(page, session, world, make_item):
    item = make_item(team=world.docs, type="document_verification", assignee=world.ana)
    session.commit()
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{item.ref}")

    page.get_by_label("Files").set_input_files([
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"just text"},
        {"name": "passport.pdf", "mimeType": "application/pdf", "buffer": pdf()},
    ])
    page.get_by_role("button", name="Upload").click()

    expect(page.locator(".flash-error")).to_contain_text("notes.txt was not added: the content is text/plain")
    expect(page.locator(".flash-success")).to_contain_text("Added passport.pdf.")
    expect(page.locator("#thread .attachments li")).to_have_count(1)


def test_front_office_attaches_a_file_on_submit(page, shot, session, world):
    sign_in(page, "front@example.com")
    page.goto("/submit")
    page.get_by_label("Type of request").select_option("general")
    page.get_by_label("Subject").fill("Delivery note for order ORD-2024")
    page.get_by_label("Customer email").fill("carla@customer.example.com")
    page.get_by_label("Documents (optional)").set_input_files(
        [{"name": "delivery-note.pdf", "mimeType": "application/pdf", "buffer": pdf()}])
    page.get_by_role("button", name="Submit request").click()

    expect(page.locator("#new-ref")).to_be_visible()
    expect(page.locator("#new-files")).to_have_text("delivery-note.pdf")
    page.screenshot(path=shot("submit-with-file.png"), full_page=True)
    session.expire_all()
    item = session.scalar(sa.select(WorkItem).where(WorkItem.subject == "Delivery note for order ORD-2024"))
    assert [a.filename for m in item.messages for a in m.attachments] == ["delivery-note.pdf"]


def test_files_dropped_on_the_box_are_uploaded(page, session, world, make_item):
    item = make_item(team=world.docs, type="document_verification", assignee=world.ana)
    session.commit()
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{item.ref}")

    dropped = page.evaluate_handle("""() => {
        const data = new DataTransfer();
        data.items.add(new File(["%PDF-1.4\\n%%EOF\\n"], "dropped.pdf", {type: "application/pdf"}));
        data.items.add(new File(["%PDF-1.4\\n%%EOF\\n"], "second.pdf", {type: "application/pdf"}));
        return data;
    }""")
    page.dispatch_event("#upload-drop", "dragenter", {"dataTransfer": dropped})
    expect(page.locator("#upload-drop")).to_have_class("dropzone dragging")
    page.dispatch_event("#upload-drop", "drop", {"dataTransfer": dropped})
    expect(page.locator("#upload-drop")).to_have_class("dropzone")
    expect(page.locator("#upload-chosen li")).to_have_count(2)
    page.get_by_role("button", name="Upload").click()

    expect(page.locator(".flash-success")).to_contain_text("Added 2 files: dropped.pdf, second.pdf.")
    expect(page.locator("#thread .attachments li")).to_have_count(2)


def test_files_over_the_request_limit_are_stopped_before_sending(app, page, session, world, make_item):
    item = make_item(team=world.docs, type="document_verification", assignee=world.ana)
    session.commit()
    sign_in(page, "ana@example.com")
    saved = app.config["MAX_CONTENT_LENGTH"]
    app.config["MAX_CONTENT_LENGTH"] = 2048
    try:
        page.goto(f"/items/{item.ref}")
        sent = []
        page.on("request", lambda request: sent.append(request) if request.method == "POST" else None)
        page.get_by_label("Files").set_input_files(
            [{"name": "big.pdf", "mimeType": "application/pdf", "buffer": pdf(padding=4000)}])
        page.get_by_role("button", name="Upload").click()
        expect(page.locator("#upload-status")).to_contain_text("over the limit of 2 KB for one upload")
        expect(page.locator("#upload-progress")).to_be_hidden()
        assert sent == []
    finally:
        app.config["MAX_CONTENT_LENGTH"] = saved


def test_without_javascript_the_box_is_a_plain_form_and_too_much_is_a_413_page(app, browser, live_server, session,
                                                                               world, make_item):
    item = make_item(team=world.docs, type="document_verification", assignee=world.ana)
    session.commit()
    context = browser.new_context(base_url=live_server, java_script_enabled=False)
    context.set_default_timeout(5000)
    saved = app.config["MAX_CONTENT_LENGTH"]
    try:
        page = context.new_page()
        sign_in(page, "ana@example.com")
        page.goto(f"/items/{item.ref}")
        expect(page.locator("#upload-drop-hint")).to_be_hidden()
        page.get_by_label("Files").set_input_files([
            {"name": "passport.pdf", "mimeType": "application/pdf", "buffer": pdf()},
            {"name": "photo.png", "mimeType": "image/png", "buffer": png()}])
        page.get_by_role("button", name="Upload").click()
        expect(page.locator(".flash-success")).to_have_text("Added 2 files: passport.pdf, photo.png. "
                                                            "The checks run again.")
        expect(page.locator("#thread .attachments li")).to_have_count(2)

        app.config["MAX_CONTENT_LENGTH"] = 100 * 1024
        page.get_by_label("Files").set_input_files(
            [{"name": "big.pdf", "mimeType": "application/pdf", "buffer": pdf(padding=400_000)}])
        page.get_by_role("button", name="Upload").click()
        expect(page.get_by_text("The request is too large (limit 100 KB).")).to_be_visible()
    finally:
        app.config["MAX_CONTENT_LENGTH"] = saved
        context.close()
