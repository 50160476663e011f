"""Handing an item on in a real browser: an executive hands an item back with a reason, and it is in
the team queue, unassigned, with the reason in its history; watching shows on the page."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def world(session, make_team, make_user):
    returns = make_team(name="Returns", work_types=["return"])
    sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    session.commit()
    return type("World", (), dict(returns=returns, sup=sup, priya=priya))


def test_executive_hands_an_item_back_with_a_reason_and_it_is_in_the_team_queue(page, shot, session, world,
                                                                                make_item):
    item = make_item(team=world.returns, assignee=world.priya, subject="Refund for order ORD-2002")
    session.commit()
    sign_in(page, "priya@example.com")
    page.goto(f"/items/{item.ref}")

    page.get_by_role("button", name="Watch").click()
    expect(page.locator("#watchers")).to_contain_text("You are watching this item.")
    expect(page.locator("#watchers")).to_contain_text("1 watcher.")

    page.locator("#hand-back-reason").fill("Needs someone who reads German")
    page.get_by_role("button", name="Hand back to the queue").click()

    expect(page.locator(".flash-success")).to_contain_text(f"{item.ref} is back in Returns's queue.")
    expect(page.locator("#my-queue")).to_have_count(0)
    team_queue = page.locator("#team-queue")
    expect(team_queue).to_contain_text("Refund for order ORD-2002")
    page.screenshot(path=shot("item-handed-back.png"), full_page=True)

    team_queue.get_by_role("link", name=item.ref).click()
    expect(page.locator("#history")).to_contain_text("Needs someone who reads German")
    expect(page.locator("#hand-back-form")).to_have_count(0)  # unassigned: nothing to hand back
