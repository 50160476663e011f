"""The requester page in a real browser: from an item page to everything the requester asked of the
viewer's teams, and back to one of their other items."""
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_from_an_item_page_to_the_requesters_history(page, shot, session, make_team, make_user, make_item):
    returns = make_team(name="Returns", work_types=["return"])
    docs = make_team(name="Documents", work_types=["document_verification"])
    make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    earlier = make_item(team=returns, subject="Kettle leaks", requester_email="ann@customer.example.com")
    earlier.status = "closed"
    hidden = make_item(team=docs, type="document_verification", subject="Passport scan",
                       requester_email="ann@customer.example.com")
    current = make_item(team=returns, subject="Toaster sparks", requester_email="ann@customer.example.com")
    current.requester_name = "Ann Kowalski"
    session.commit()

    sign_in(page, "priya@example.com")
    page.goto(f"/items/{current.ref}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(current.ref)
    page.locator("#requester-link").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Ann Kowalski")
    expect(page.locator("#requester-email")).to_have_text("ann@customer.example.com")
    expect(page.locator("#requester-open")).to_have_text("1")
    expect(page.locator("#requester-closed")).to_have_text("1")
    rows = page.locator("#requester-items tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(current.ref)
    expect(rows.nth(1)).to_contain_text(earlier.ref)
    expect(page.locator("#requester-items")).not_to_contain_text(hidden.ref)
    page.screenshot(path=shot("requester-page.png"), full_page=True)

    page.get_by_role("link", name=earlier.ref).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(earlier.ref)
