"""Attachments on the item page: listed per message, downloaded safely, shown inline only as plain images."""
import base64
import re
from urllib.parse import quote

import pytest

from queue_app.db.blobs import store_blob
from queue_app.models import Attachment, Message
from queue_app.services.intake import filing, mailboxes
from tests.conftest import Auth

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
                       "AAAABJRU5ErkJggg==")
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
HTML = b"<html><body><script>alert(document.cookie)</script><h1>Invoice</h1></body></html>"


def text(response):
    return response.get_data(as_text=True)


@pytest.fixture
def world(session, make_team, make_user, make_item):
    returns = make_team(name="Returns", work_types=["return"])
    docs = make_team(name="Documents", work_types=["document_verification"])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    lena = make_user(email="lena@example.com", name="Lena Vogel", teams=[docs])
    item = make_item(team=returns, requester_email="carla@customer.example.com")
    other = make_item(team=returns, requester_email="carla@customer.example.com")
    session.commit()
    return type("World", (), dict(returns=returns, docs=docs, priya=priya, lena=lena, item=item, other=other))


def add_message(session, item, *, flagged=False, automatic=False, kind="inbound", body_html=None):
    message = Message(work_item_id=item.id, kind=kind, from_address="carla@customer.example.com",
                      subject="Photos of the damage", body_text="Photos attached.", body_html=body_html,
                      flagged_for_review=flagged, is_automatic=automatic)
    session.add(message)
    session.flush()
    return message


def attach(session, message, filename, data, content_type, declared=None):
    attachment = Attachment(message_id=message.id, filename=filename, content_type=content_type,
                            declared_content_type=declared, size=len(data), sha256=store_blob(session, data))
    session.add(attachment)
    session.flush()
    return attachment


@pytest.fixture
def files(session, world):
    message = add_message(session, world.item)
    found = dict(
        png=attach(session, message, "damage.png", PNG, "image/png", "image/png"),
        pdf=attach(session, message, "Rückgabe 📦 \"final\".pdf", PDF, "application/pdf", "application/pdf"),
        html=attach(session, message, "invoice.html", HTML, "text/html", "text/html"),
        sneaky=attach(session, message, "../../etc/photo.png", HTML, "text/plain", "image/png"),
    )
    session.commit()
    return type("Files", (), found)


@pytest.fixture
def priya(client, world):
    Auth(client).login("priya@example.com")
    return client


def url(item, attachment, inline=False):
    return f"/items/{item.ref}/attachments/{attachment.id}" + ("/inline" if inline else "")


def assert_locked_down(response):
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'"


def test_download_is_an_attachment_with_the_sniffed_type(priya, world, files):
    response = priya.get(url(world.item, files.png))
    assert response.status_code == 200 and response.data == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Disposition"] == \
        "attachment; filename=\"damage.png\"; filename*=UTF-8''damage.png"
    assert_locked_down(response)


def test_non_ascii_and_hostile_names_get_a_safe_ascii_fallback(priya, world, files):
    response = priya.get(url(world.item, files.pdf))
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment; ")
    fallback = re.search(r'filename="([^"]*)"', disposition).group(1)
    assert fallback.isascii() and fallback.endswith(".pdf") and '"' not in fallback and fallback.startswith("Ruckgabe")
    assert "filename*=UTF-8''" + quote('Rückgabe 📦 "final".pdf', safe="") in disposition
    # Not an image, so never typed as something a browser might render.
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert_locked_down(response)

    response = priya.get(url(world.item, files.sneaky))
    disposition = response.headers["Content-Disposition"]
    assert 'filename="photo.png"' in disposition and ".." not in disposition and "/" not in disposition.split("''")[0]
    assert response.headers["Content-Type"] == "application/octet-stream"  # it claimed image/png; it is not


def test_html_attachment_is_never_served_as_html(priya, world, files):
    response = priya.get(url(world.item, files.html))
    assert response.status_code == 200 and response.data == HTML
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert_locked_down(response)
    assert priya.get(url(world.item, files.html, inline=True)).status_code == 404


def test_inline_only_for_plain_images(priya, world, files):
    response = priya.get(url(world.item, files.png, inline=True))
    assert response.status_code == 200 and response.data == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Disposition"].startswith('inline; filename="damage.png"')
    assert_locked_down(response)
    for attachment in (files.pdf, files.html, files.sneaky):
        assert priya.get(url(world.item, attachment, inline=True)).status_code == 404


def test_another_teams_attachment_is_not_found(app, world, files):
    lena = app.test_client()
    Auth(lena).login("lena@example.com")
    for inline in (False, True):
        assert lena.get(url(world.item, files.png, inline)).status_code == 404


def test_an_attachment_of_another_item_is_not_found(priya, session, world, files):
    foreign = attach(session, add_message(session, world.other), "other.png", PNG, "image/png")
    session.commit()
    for inline in (False, True):
        assert priya.get(url(world.item, foreign, inline)).status_code == 404  # wrong item in the URL
        assert priya.get(url(world.other, files.png, inline)).status_code == 404
        assert priya.get(url(world.other, foreign, inline)).status_code == 200
    assert priya.get(f"/items/{world.item.ref}/attachments/999999").status_code == 404
    assert priya.get(f"/items/BO-999999/attachments/{files.png.id}").status_code == 404


def test_signed_out_downloads_go_to_login(client, world, files):
    response = client.get(url(world.item, files.png))
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_item_page_lists_attachments_with_markers(priya, session, world, files):
    flagged = add_message(session, world.item, flagged=True)
    attach(session, flagged, "unknown-sender.pdf", PDF, "application/pdf")
    add_message(session, world.item, kind="outbound", automatic=True)
    session.commit()
    page = text(priya.get(f"/items/{world.item.ref}"))
    assert f'href="{url(world.item, files.png)}"' in page and "damage.png" in page
    assert "image/png" in page and f'href="{url(world.item, files.png, inline=True)}"' in page
    assert f'href="{url(world.item, files.html, inline=True)}"' not in page
    assert "invoice.html" in page and "text/html" in page
    assert "sent as image/png" in page  # the sneaky one: declared and sniffed types differ
    flagged_block = re.search(rf'id="message-{flagged.id}".*?</li>\s*</ul>', page, re.S).group(0)
    assert "unknown-sender.pdf" in flagged_block and "flagged for review" in flagged_block
    assert 'class="badge msg-automatic"' in page


def test_html_body_renders_in_a_container_with_a_plain_text_fallback(priya, session, world):
    add_message(session, world.item, body_html="<p>Hello <strong>team</strong></p>")
    session.commit()
    page = text(priya.get(f"/items/{world.item.ref}"))
    assert re.search(r'<div class="msg-html"[^>]*><p>Hello <strong>team</strong></p></div>', page)
    assert "<summary>Show plain text</summary>" in page and "Photos attached." in page


def test_an_emailed_html_message_with_an_inline_image_end_to_end(priya, session, world):
    """Through the real intake: the cid: image points at the inline route, which serves it."""
    mailboxes.create_mailbox(session, address="returns@desk.example.com", type="return", team_name="Returns")
    session.commit()
    png64 = base64.b64encode(PNG).decode()
    raw = ("From: Carla <carla@customer.example.com>\r\nTo: returns@desk.example.com\r\n"
           "Subject: Broken lamp\r\nMessage-ID: <lamp-1@customer.example.com>\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/related; boundary="b1"\r\n\r\n'
           "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           '<p>See <img src="cid:photo1@x" alt="photo"><script>alert(1)</script></p>\r\n'
           "--b1\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <photo1@x>\r\n"
           f'Content-Disposition: inline; filename="lamp.png"\r\n\r\n{png64}\r\n--b1--\r\n').encode()
    inbound = filing.receive(session, raw, source="smtp", envelope_to=["returns@desk.example.com"])
    outcome = filing.process(session, inbound)
    session.commit()
    assert outcome.status == "created"
    item = outcome.item
    page = text(priya.get(f"/items/{item.ref}"))
    match = re.search(rf'<img[^>]*src="(/items/{item.ref}/attachments/(\d+)/inline)"', page)
    assert match, page
    assert "<script>alert(1)" not in page
    response = priya.get(match.group(1))
    assert response.status_code == 200 and response.data == PNG and response.headers["Content-Type"] == "image/png"


# --- previews: the PDF bytes the item page's viewer fetches --------------------------------

def preview_url(item, attachment):
    return f"/items/{item.ref}/attachments/{attachment.id}/preview"


def test_a_pdf_preview_is_typed_for_the_viewer_but_still_a_download(priya, world, files):
    response = priya.get(preview_url(world.item, files.pdf))
    assert response.status_code == 200 and response.data == PDF
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"].startswith("attachment;")  # never shown as a page
    assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert_locked_down(response)


def test_only_pdfs_have_a_preview_route(priya, world, files):
    for attachment in (files.png, files.html, files.sneaky):
        assert priya.get(preview_url(world.item, attachment)).status_code == 404


def test_another_teams_executive_cannot_fetch_a_preview(app, world, files):
    lena = app.test_client()
    Auth(lena).login("lena@example.com")
    assert lena.get(preview_url(world.item, files.pdf)).status_code == 404
    assert lena.get(url(world.item, files.pdf)).status_code == 404  # as for the download


def test_a_preview_of_another_item_or_signed_out_is_refused(client, priya, session, world, files):
    foreign = attach(session, add_message(session, world.other), "other.pdf", PDF, "application/pdf")
    session.commit()
    assert priya.get(preview_url(world.item, foreign)).status_code == 404  # wrong item in the URL
    assert priya.get(preview_url(world.other, foreign)).status_code == 200
    assert priya.get(f"/items/{world.item.ref}/attachments/99999999999999/preview").status_code == 404
    anonymous = client.application.test_client()
    response = anonymous.get(preview_url(world.item, files.pdf))
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_the_item_page_lists_its_documents_for_preview(priya, session, world, files):
    flagged = add_message(session, world.item, flagged=True)
    attach(session, flagged, "unknown-sender.pdf", PDF, "application/pdf")
    session.commit()
    page = text(priya.get(f"/items/{world.item.ref}"))
    panel = re.search(r'<section class="card preview-card".*?</section>', page, re.S).group(0)
    assert f'data-src="{preview_url(world.item, files.pdf)}"' in panel
    assert f'data-src="{url(world.item, files.png, inline=True)}"' in panel
    assert f'href="{url(world.item, files.pdf)}"' in panel  # the download, which works without JavaScript
    assert "invoice.html" not in panel and "unknown-sender.pdf" not in panel
    assert 'id="preview-choose"' in panel  # several documents: a chooser
    assert 'src="/static/preview.js"' in page and 'type="module"' in page


def test_an_item_without_documents_has_no_preview_panel(priya, world):
    page = text(priya.get(f"/items/{world.item.ref}"))
    assert 'id="preview"' not in page and "preview.js" not in page
