"""The verification workspace in a real browser: a verifier asks for a new document, the requester's
emailed reply with a new PDF brings the item back, and the new document is verified."""
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from queue_app.models import Message
from queue_app.services.intake import filing, mailboxes
from tests.browser.conftest import sign_in
from tests.browser.test_previews import BLUE, RED, coloured_pdf
from tests.check_files import attach
from tests.integration.test_intake import mail

pytestmark = pytest.mark.browser

DOCS_BOX = "documents@backdesk.example.com"
REQUESTER = "customer@example.com"


@pytest.fixture
def world(session, make_team, make_user, make_item):
    docs = make_team(name="Documents", work_types=["document_verification"])
    ana = make_user(email="ana@example.com", name="Ana Exec", teams=[docs])
    mailboxes.create_mailbox(session, address=DOCS_BOX, type="document_verification", team_name="Documents",
                             priority="normal")
    item = make_item(team=docs, type="document_verification", assignee=ana, subject="Passport check",
                     fields={"document_type": "passport", "document_number": "C01X00T47", "expires_on": "2031-05-01"})
    attach(session, item, "passport-blurred.pdf", coloured_pdf(RED), sender=REQUESTER)
    session.commit()
    return type("World", (), dict(docs=docs, ana=ana, item=item))


def test_resubmission_needed_and_the_requesters_new_pdf_brings_the_item_back(page, shot, session, world):
    sign_in(page, "ana@example.com")
    page.goto(f"/items/{world.item.ref}")
    workspace = page.locator("#verification")
    expect(workspace).to_contain_text("passport-blurred.pdf")
    expect(workspace.locator(".verdict").first).to_contain_text("No verdict yet")
    expect(page.locator("#preview-viewer")).to_have_attribute("data-state", "rendered")  # the scan beside it
    page.screenshot(path=shot("verification-workspace.png"), full_page=True)

    first = workspace.locator(".verdict").first
    first.get_by_label("Resubmission needed").check()
    first.get_by_label("Reason").select_option("Illegible or cut off")
    first.get_by_label("Note").fill("The photo page is blurred; please photograph it in daylight.")
    first.get_by_role("button", name="Record verdict").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Asked {REQUESTER} for a new document")
    expect(page.locator("#waiting-for-document")).to_be_visible()
    expect(first).to_contain_text("Resubmission needed")
    expect(page.locator("#item-status")).to_contain_text("pending customer", ignore_case=True)

    # The requester answers the emailed request with a new PDF.
    session.expire_all()
    request = session.scalar(sa.select(Message).where(Message.work_item_id == world.item.id,
                                                      Message.kind == "outbound").order_by(Message.id.desc()))
    assert "illegible or cut off" in request.body_text
    raw = mail(f"Re: {request.subject}", sender=f"Customer <{REQUESTER}>", to=DOCS_BOX, body="A better one.\n",
               attachments=[("passport-new.pdf", coloured_pdf(BLUE), "application/pdf")],
               In_Reply_To=request.message_id)
    filing.process(session, filing.receive(session, raw, source="smtp"))
    session.commit()

    page.reload()
    expect(page.locator("#waiting-for-document")).to_have_count(0)
    expect(page.locator("#history")).to_contain_text("new document received", ignore_case=True)
    new = workspace.locator(".verdict", has_text="passport-new.pdf")
    expect(new).to_contain_text("No verdict yet")
    new.get_by_label("Verified").check()
    new.get_by_role("button", name="Record verdict").click()
    expect(page.locator(".flash-success")).to_contain_text("Document marked verified")
    expect(workspace.locator(".verdict", has_text="passport-new.pdf")).to_contain_text("Verified")
    page.screenshot(path=shot("verification-verified.png"), full_page=True)
