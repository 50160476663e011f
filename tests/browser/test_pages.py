"""The pages in a real browser: sign in, work an item, assign as a supervisor, file a request."""
import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from queue_app.models.base import utcnow
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser



@pytest.fixture
def world(session, make_team, make_user):
    returns = make_team(name="Returns", work_types=["return"])
    docs = make_team(name="Documents", work_types=["document_verification"])
    sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    make_user(email="tom@example.com", name="Tom Becker", teams=[returns])
    lena = make_user(email="lena@example.com", name="Lena Vogel", teams=[docs])
    session.commit()
    return type("World", (), dict(returns=returns, docs=docs, sup=sup, priya=priya, lena=lena))


def queue_refs(page, table_id):
    return page.locator(f"#{table_id} tbody tr").evaluate_all("rows => rows.map(r => r.dataset.ref)")


def test_executive_works_an_item_from_the_queue(page, shot, session, world, make_item):
    now = utcnow()
    later = make_item(team=world.returns, assignee=world.priya, subject="Parcel returned damaged", now=now)
    sooner = make_item(team=world.returns, assignee=world.priya, subject="Refund for order ORD-1001",
                       priority="high", now=now - timedelta(hours=3, minutes=30))
    session.commit()

    sign_in(page, "priya@example.com")
    assert queue_refs(page, "my-queue") == [sooner.ref, later.ref]
    page.screenshot(path=shot("queue.png"), full_page=True)

    page.get_by_role("link", name="Refund for order ORD-1001").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(sooner.ref)
    expect(page.locator("#item-fields")).to_contain_text("ORD-1001")

    page.get_by_label("Internal note").fill("Asked the warehouse for photos.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator(".flash-success")).to_have_text("Note added.")
    expect(page.locator("#thread .msg-note")).to_contain_text("Asked the warehouse for photos.")

    page.get_by_role("button", name="Pending customer").click()
    expect(page.locator("#item-status")).to_have_text("Pending customer")
    expect(page.locator("#item-sla")).to_have_text("Paused")
    expect(page.locator("#history")).to_contain_text("Status changed")
    page.screenshot(path=shot("item.png"), full_page=True)


def test_supervisor_assigns_and_the_executive_sees_it(new_page, shot, session, world, make_item):
    item = make_item(team=world.returns, subject="Unassigned return")
    session.commit()

    supervisor = new_page()
    sign_in(supervisor, "sam@example.com")
    supervisor.get_by_role("link", name="Supervisor").click()
    row = supervisor.locator(f'#unassigned tr[data-ref="{item.ref}"]')
    row.get_by_label(f"Assign {item.ref} to").select_option(str(world.priya.id))
    row.get_by_role("button", name="Assign").click()
    expect(supervisor.locator(".flash-success")).to_have_text(f"{item.ref} assigned to Priya Nair.")
    expect(supervisor.locator("#unassigned")).to_have_count(0)
    supervisor.screenshot(path=shot("supervisor.png"), full_page=True)

    executive = new_page(width=820, height=1100)  # a tablet
    sign_in(executive, "priya@example.com")
    assert queue_refs(executive, "my-queue") == [item.ref]
    executive.get_by_role("link", name=item.ref).click()
    executive.screenshot(path=shot("item-tablet.png"), full_page=True)


def test_another_teams_item_is_refused(page, shot, session, world, make_item):
    item = make_item(team=world.docs, type="document_verification", subject="Passport check")
    session.commit()
    sign_in(page, "priya@example.com")
    response = page.goto(f"/items/{item.ref}")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("We could not find that")
    expect(page.locator("body")).not_to_contain_text("Passport check")
    page.screenshot(path=shot("refused.png"))


def test_intake_form_shows_the_chosen_types_fields_and_files_the_request(page, shot, session, world):
    sign_in(page, "lena@example.com")
    page.get_by_role("link", name="Submit").click()
    expect(page.locator("#fields-return")).to_be_hidden()
    page.get_by_label("Type of request").select_option("return")
    expect(page.locator("#fields-return")).to_be_visible()
    expect(page.locator("#fields-discrepancy_fix")).to_be_hidden()

    page.get_by_label("Subject").fill("Customer wants a refund")
    page.get_by_label("Customer email").fill("anna@example.com")
    page.get_by_role("button", name="Submit request").click()
    expect(page.locator("#return-order_number-error")).to_have_text("Is required")

    page.screenshot(path=shot("intake-errors.png"), full_page=True)
    page.get_by_label("Order number").fill("ORD-555")
    page.get_by_role("button", name="Submit request").click()
    expect(page.locator("#new-ref")).to_have_text(re.compile(r"^BO-\d{6}$"))
