"""The item page in a real browser: canned responses, htmx notes and replies, shortcuts, conflicts, CSRF."""

import pytest
from playwright.sync_api import expect

from queue_app.models import CannedResponse
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser



@pytest.fixture
def world(session, make_team, make_user):
    returns = make_team(name="Returns", work_types=["return"])
    sup = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    session.add(CannedResponse(title="Refund approved", team_id=returns.id,
                               body="Dear {requester_name},\n\nThe refund for {reference} is approved.\n\n"
                                    "{executive_name}"))
    session.commit()
    return type("World", (), dict(returns=returns, sup=sup, priya=priya))


def make_refund_item(session, world, make_item):
    item = make_item(team=world.returns, assignee=world.priya, subject="Refund for order ORD-1001")
    item.requester_name = "Ann Kowalski"
    session.commit()
    return item


def test_executive_inserts_a_canned_response_replies_and_notes_without_reloading(page, shot, session, world,
                                                                                 make_item):
    item = make_refund_item(session, world, make_item)
    sign_in(page, "priya@example.com")
    page.get_by_role("link", name="Refund for order ORD-1001").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(item.ref)
    expect(page.locator("#canned-insert")).to_be_hidden()  # with JavaScript the select inserts by itself

    page.get_by_label("Insert canned response").select_option(label="Refund approved")
    reply = page.get_by_label("Reply to the requester")
    expect(reply).to_have_value(f"Dear Ann Kowalski,\n\nThe refund for {item.ref} is approved.\n\nPriya Nair")
    reply.press("End")
    reply.type(" (Returns team)")
    # A marker on the window survives htmx swaps but not a page load.
    page.evaluate("window.__noReload = true")
    page.get_by_role("button", name="Send reply").click()
    outbound = page.locator("#thread .msg-outbound")
    expect(outbound).to_contain_text("is approved.")
    expect(outbound).to_contain_text("Priya Nair (Returns team)")
    expect(outbound).to_contain_text("customer@example.com")
    expect(page.locator("#item-live .flash-success")).to_have_text("Reply queued for customer@example.com.")
    expect(page.locator("#history")).to_contain_text("Reply sent")
    expect(reply).to_have_value("")

    page.get_by_label("Internal note").fill("Refund booked in the ledger.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#thread .msg-note")).to_contain_text("Refund booked in the ledger.")
    expect(page.locator("#history")).to_contain_text("Note added")
    expect(page.locator("#thread-count")).to_have_text("2")
    assert page.evaluate("window.__noReload") is True  # no full reload happened

    page.get_by_role("button", name="Pending customer").click()  # the form is a few edits old: still fine
    expect(page.locator("#item-status")).to_have_text("Pending customer")
    expect(page.locator(".flash-success")).to_contain_text("is now pending customer")
    page.screenshot(path=shot("item-replied.png"), full_page=True)


def test_keyboard_shortcuts(page, session, world, make_item):
    item = make_refund_item(session, world, make_item)
    sign_in(page, "priya@example.com")
    page.goto(f"/items/{item.ref}")
    page.keyboard.press("r")
    expect(page.get_by_label("Reply to the requester")).to_be_focused()
    page.keyboard.type("nr")  # typed into the box, not taken as shortcuts
    expect(page.get_by_label("Reply to the requester")).to_have_value("nr")
    page.locator("h1").click()
    page.keyboard.press("n")
    expect(page.get_by_label("Internal note")).to_be_focused()

    page.locator("h1").click()
    page.keyboard.press("e")  # asks first: never resolves by one key
    resolve = page.get_by_role("button", name="Resolved")
    expect(resolve).to_be_focused()
    expect(page.locator("#resolve-confirm")).to_contain_text("Press Enter to resolve")
    page.keyboard.press("Escape")
    expect(page.locator("#resolve-confirm")).to_have_count(0)
    expect(page.locator("#item-status")).to_have_text("New")
    page.locator("h1").click()
    page.keyboard.press("e")
    page.keyboard.press("Enter")
    expect(page.locator("#item-status")).to_have_text("Resolved")

    page.locator("h1").click()
    page.keyboard.press("u")
    page.wait_for_url("**/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("My queue")


def test_second_person_sees_what_changed_with_their_draft_kept(new_page, shot, session, world, make_item):
    item = make_refund_item(session, world, make_item)
    executive, supervisor = new_page(), new_page()
    sign_in(executive, "priya@example.com")
    sign_in(supervisor, "sam@example.com")
    executive.goto(f"/items/{item.ref}")
    supervisor.goto(f"/items/{item.ref}")

    supervisor.get_by_label("Comment (optional)").fill("Waiting for the courier")
    supervisor.get_by_role("button", name="Pending third party").click()
    expect(supervisor.locator("#item-status")).to_have_text("Pending third party")

    executive.get_by_label("Reply to the requester").fill("Your refund is on its way.")
    executive.get_by_role("button", name="Send reply").click()
    panel = executive.locator("#changes")
    expect(panel).to_contain_text("While you were looking, this changed:")
    expect(panel).to_contain_text("Status changed")
    expect(panel).to_contain_text("sam@example.com")
    expect(panel).to_contain_text("Waiting for the courier")
    expect(panel).to_be_focused()
    expect(executive.locator("#item-status")).to_have_text("Pending third party")
    expect(executive.get_by_label("Reply to the requester")).to_have_value("Your refund is on its way.")
    executive.screenshot(path=shot("item-conflict.png"), full_page=True)

    executive.get_by_role("button", name="Send reply").click()  # knowingly, from the refreshed page
    expect(executive.locator("#thread .msg-outbound")).to_contain_text("Your refund is on its way.")


def test_post_without_csrf_token_is_refused_with_a_clear_page(page, session, world, make_item):
    item = make_refund_item(session, world, make_item)
    sign_in(page, "priya@example.com")
    page.goto(f"/items/{item.ref}")
    page.evaluate("document.querySelector('#note-form input[name=csrf_token]').remove();"
                  "document.querySelector('#note-form').removeAttribute('hx-post');")
    page.get_by_label("Internal note").fill("No token")
    with page.expect_response(lambda r: r.url.endswith("/notes")) as posted:
        page.evaluate("HTMLFormElement.prototype.submit.call(document.querySelector('#note-form'))")
    assert posted.value.status == 400
    expect(page.locator("main")).to_contain_text("The form was refused")
    page.goto(f"/items/{item.ref}")
    expect(page.locator("#thread")).to_have_count(0)  # nothing was added


@pytest.mark.parametrize("width,height", [(768, 1024), (1366, 768)])
def test_item_page_fits_tablet_and_laptop(new_page, shot, session, world, make_item, width, height):
    item = make_refund_item(session, world, make_item)
    page = new_page(width=width, height=height)
    sign_in(page, "priya@example.com")
    page.goto(f"/items/{item.ref}")
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"page is {scroll_width}px wide at {width}px"
    for label in ("Reply to the requester", "Internal note", "Insert canned response", "Comment (optional)"):
        box = page.get_by_label(label).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, label
    page.screenshot(path=shot(f"item-{width}x{height}.png"), full_page=True)


def test_drafts_survive_a_status_click_a_conflict_and_a_reload_until_sent(new_page, session, world, make_item):
    item = make_refund_item(session, world, make_item)
    executive, supervisor = new_page(), new_page()
    sign_in(executive, "priya@example.com")
    sign_in(supervisor, "sam@example.com")
    executive.goto(f"/items/{item.ref}")
    reply, note = executive.get_by_label("Reply to the requester"), executive.get_by_label("Internal note")
    reply.fill("Your refund is on its way.")
    note.fill("Courier tracking asked for.")

    executive.get_by_role("button", name="Pending customer").click()  # a full page load
    expect(executive.locator("#item-status")).to_have_text("Pending customer")
    expect(reply).to_have_value("Your refund is on its way.")
    expect(note).to_have_value("Courier tracking asked for.")

    supervisor.goto(f"/items/{item.ref}")
    supervisor.get_by_role("button", name="Open").click()
    expect(supervisor.locator("#item-status")).to_have_text("Open")
    executive.get_by_role("button", name="Pending third party").click()  # stale: a 409
    expect(executive.locator("#changes")).to_contain_text("What you submitted was not saved")
    expect(executive.locator("#changes")).not_to_contain_text("Nothing you entered was saved or lost")
    expect(reply).to_have_value("Your refund is on its way.")
    expect(note).to_have_value("Courier tracking asked for.")

    executive.goto(f"/items/{item.ref}")
    executive.get_by_role("button", name="Send reply").click()
    expect(executive.locator("#thread .msg-outbound")).to_contain_text("Your refund is on its way.")
    expect(reply).to_have_value("")
    executive.reload()
    expect(reply).to_have_value("")  # sent, so cleared
    expect(note).to_have_value("Courier tracking asked for.")  # not sent, so kept
    executive.get_by_role("button", name="Add note").click()
    expect(executive.locator("#thread .msg-note")).to_contain_text("Courier tracking asked for.")
    executive.reload()
    expect(note).to_have_value("")


def test_a_draft_is_kept_on_the_server_so_another_computer_shows_it(new_page, session, world, make_item):
    item = make_refund_item(session, world, make_item)
    desk, laptop = new_page(), new_page()  # two browsers of the same person
    sign_in(desk, "priya@example.com")
    desk.goto(f"/items/{item.ref}")
    with desk.expect_response(lambda r: r.url.endswith("/drafts/reply") and r.status == 204):
        desk.get_by_label("Reply to the requester").fill("Typed at my desk.")
    desk.get_by_label("Internal note").fill("Left for later.")
    desk.get_by_role("button", name="Pending customer").click()  # leaving at once: still saved
    expect(desk.locator("#item-status")).to_have_text("Pending customer")
    expect(desk.get_by_label("Internal note")).to_have_value("Left for later.")

    sign_in(laptop, "priya@example.com")
    laptop.goto(f"/items/{item.ref}")
    expect(laptop.get_by_label("Reply to the requester")).to_have_value("Typed at my desk.")
    expect(laptop.get_by_label("Internal note")).to_have_value("Left for later.")

    laptop.get_by_role("button", name="Send reply").click()
    expect(laptop.locator("#thread .msg-outbound")).to_contain_text("Typed at my desk.")
    desk.reload()
    expect(desk.get_by_label("Reply to the requester")).to_have_value("")  # sent elsewhere: gone here too
    expect(desk.get_by_label("Internal note")).to_have_value("Left for later.")
