"""The assignment board in a real browser: a supervisor ticks two items and assigns them in one
action; the executive, in a browser session of their own, then finds them in My queue."""
import os
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from queue_app.models.base import utcnow
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def world(session, make_team, make_user):
    returns = make_team(name="Returns", work_types=["return"])
    sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    tom = make_user(email="tom@example.com", name="Tom Becker", teams=[returns])
    session.commit()
    return type("World", (), dict(returns=returns, sup=sup, priya=priya, tom=tom))


def refs(page, table_id):
    return page.locator(f"#{table_id} tbody tr").evaluate_all("rows => rows.map(r => r.dataset.ref)")


def test_supervisor_bulk_assigns_two_items_and_the_executive_sees_them(new_page, session, world, make_item,
                                                                       tmp_path):
    now = utcnow()
    first = make_item(team=world.returns, subject="Refund for ORD-1", now=now - timedelta(hours=2))
    second = make_item(team=world.returns, subject="Parcel lost ORD-2", now=now - timedelta(hours=1))
    third = make_item(team=world.returns, subject="Wrong size ORD-3", now=now)
    session.commit()

    supervisor = new_page()
    sign_in(supervisor, "sam@example.com")
    supervisor.get_by_role("link", name="Supervisor").click()
    expect(supervisor.get_by_role("heading", level=1)).to_have_text("Assignment board")
    nav = supervisor.get_by_role("navigation", name="Supervisor")
    for name in ("Board", "Approvals", "Reports", "People & out of office"):
        expect(nav.get_by_role("link", name=name)).to_be_visible()
    assert refs(supervisor, "unassigned") == [first.ref, second.ref, third.ref]

    # "select all" ticks the page; unticking one leaves the two to assign
    supervisor.get_by_label("Select all items on this page").check()
    expect(supervisor.locator("#bulk-count")).to_have_text("3 items selected")
    supervisor.get_by_label(f"Select {third.ref}").uncheck()
    expect(supervisor.locator("#bulk-count")).to_have_text("2 items selected")
    supervisor.get_by_label("Assign the selected items to").select_option(str(world.priya.id))
    supervisor.get_by_role("button", name="Assign selected").click()

    expect(supervisor.locator(".flash-success")).to_have_text(
        f"2 items assigned to Priya Nair: {first.ref}, {second.ref}.")
    assert refs(supervisor, "unassigned") == [third.ref]
    expect(supervisor.locator('#load tr[data-user="priya@example.com"] .open-count')).to_have_text("2")
    folder = Path(os.environ.get("BACKDESK_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    supervisor.screenshot(path=str(folder / "supervisor-board.png"), full_page=True)

    executive = new_page()
    sign_in(executive, "priya@example.com")
    assert refs(executive, "my-queue") == [first.ref, second.ref]
    expect(executive.locator("#my-queue")).to_contain_text("Refund for ORD-1")
    expect(executive.locator("#my-queue")).not_to_contain_text("Wrong size ORD-3")

    # the supervisor then reassigns one of them from Priya's list
    supervisor.get_by_role("link", name="Priya Nair", exact=True).click()
    expect(supervisor.get_by_role("heading", level=1)).to_have_text("Open items of Priya Nair")
    supervisor.get_by_label(f"Select {second.ref}").check()
    supervisor.get_by_label("Give the selected items to").select_option(str(world.tom.id))
    supervisor.get_by_role("button", name="Reassign selected").click()
    expect(supervisor.locator(".flash-success")).to_have_text(f"1 item assigned to Tom Becker: {second.ref}.")
    assert refs(supervisor, "person-items") == [first.ref]
    executive.reload()
    assert refs(executive, "my-queue") == [first.ref]
