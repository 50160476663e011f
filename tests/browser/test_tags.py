"""Tags in a real browser: add one on the item page, click its chip, and the queue shows only the
items carrying it."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def world(session, make_team, make_user, make_item):
    returns = make_team(name="Returns", work_types=["return", "general"])
    sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    items = [make_item(team=returns, assignee=priya, actor=sup, type="general", subject=subject)
             for subject in ("Refund for order ORD-1001", "Address change for ORD-1002", "Invoice copy ORD-1003")]
    session.commit()
    return type("World", (), dict(returns=returns, priya=priya, items=items))


def test_a_tag_added_on_the_item_page_filters_the_queue(page, shot, world):
    sign_in(page, "priya@example.com")
    expect(page.locator("#my-queue tbody tr")).to_have_count(3)
    page.get_by_role("link", name="Refund for order ORD-1001").click()
    expect(page.locator("#no-tags")).to_have_text("No tags yet.")

    page.get_by_label("Add tags").fill("VIP, fraud check")
    page.locator("#tags-form").get_by_role("button", name="Add").click()
    expect(page.locator(".flash-success")).to_contain_text("Tags saved.")
    expect(page.locator("#item-tags .tag-chip")).to_have_text(["fraud-check", "vip"])
    expect(page.locator("#history")).to_contain_text("Tags changed")

    page.get_by_role("button", name="Remove tag fraud-check").click()
    expect(page.locator(".flash-success")).to_contain_text("Tag fraud-check removed.")
    expect(page.locator("#item-tags .tag-chip")).to_have_text(["vip"])
    page.screenshot(path=shot("item-tags.png"), full_page=True)

    page.locator("#item-tags").get_by_role("link", name="vip").click()
    expect(page.get_by_label("Tag", exact=True)).to_have_value("vip")
    rows = page.locator("#my-queue tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Refund for order ORD-1001")
    expect(rows.locator(".tag-chip")).to_have_text(["vip"])
    page.screenshot(path=shot("queue-tagged.png"), full_page=True)
