"""The item's checklist in a real browser: an open mandatory step blocks resolving with a clear message,
and once it is ticked the item resolves."""

import pytest
from playwright.sync_api import expect

from queue_app.models import ChecklistStep
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser

STEP = "Check the order in the shop system"


@pytest.fixture
def world(session, make_team, make_user):
    returns = make_team(name="Returns", work_types=["return"])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    session.add_all([ChecklistStep(team_id=returns.id, work_type="return", position=1, text=STEP, mandatory=True),
                     ChecklistStep(team_id=returns.id, work_type="return", position=2,
                                   text="Note the return reason", mandatory=False)])
    session.commit()
    return type("World", (), dict(returns=returns, priya=priya))


def test_a_mandatory_step_blocks_resolving_until_it_is_ticked(page, shot, session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya, subject="Refund for order ORD-1001")
    session.commit()
    sign_in(page, "priya@example.com")
    page.goto(f"/items/{item.ref}")
    checklist = page.locator("#checklist")
    expect(checklist.get_by_role("heading", name="Checklist")).to_be_visible()
    expect(checklist).to_contain_text("1 mandatory step open")
    expect(checklist.locator("li", has_text=STEP)).to_contain_text("mandatory")
    expect(checklist.locator("li", has_text="Note the return reason")).to_contain_text("optional")

    page.get_by_role("button", name="Resolved").click()

    expect(page.locator(".flash-error")).to_have_text(f"{item.ref} has open mandatory checklist steps: “{STEP}”")
    expect(page.locator("#item-status")).to_have_text("New")
    page.screenshot(path=shot("checklist-blocked.png"), full_page=True)

    page.get_by_label(STEP).check()
    page.get_by_role("button", name="Save checklist").click()
    expect(page.locator(".flash-success")).to_have_text("Checklist saved.")
    expect(page.get_by_label(STEP)).to_be_checked()
    expect(checklist.locator("li", has_text=STEP)).to_contain_text("Ticked by Priya Nair")
    expect(checklist).not_to_contain_text("mandatory step open")
    expect(page.locator("#history")).to_contain_text("Checklist ticked")

    page.get_by_role("button", name="Resolved").click()
    expect(page.locator("#item-status")).to_have_text("Resolved")
    expect(page.locator(".flash-success")).to_contain_text("is now resolved")
    page.screenshot(path=shot("checklist-resolved.png"), full_page=True)
