"""The executive's queue in a real browser: urgency order, keyboard navigation, the shortcuts help,
search, "take next" from two sessions at once, the live refresh, and refusals."""
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
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    tom = make_user(email="tom@example.com", name="Tom Becker", teams=[returns])
    lena = make_user(email="lena@example.com", name="Lena Vogel", teams=[docs])
    session.commit()
    return type("World", (), dict(returns=returns, docs=docs, priya=priya, tom=tom, lena=lena))


def refs(page, table_id):
    return page.locator(f"#{table_id} tbody tr").evaluate_all("rows => rows.map(r => r.dataset.ref)")


def selected(page):
    return page.locator("tr[aria-selected=true]").evaluate_all("rows => rows.map(r => r.dataset.ref)")


@pytest.fixture
def three(session, world, make_item):
    """Priya's items by urgency: the one needing attention, then due in 1 h, then due in 5 h."""
    now = utcnow()

    def item(subject, hours, **values):
        made = make_item(team=world.returns, assignee=world.priya, subject=subject)
        made.sla_next_due = now + timedelta(hours=hours)
        for name, value in values.items():
            setattr(made, name, value)
        return made

    late = item("Late refund", 5)
    soon = item("Soon exchange", 1)
    flagged = item("Flagged parcel", 9, needs_attention=True)
    session.commit()
    return [flagged, soon, late]


def test_the_queue_is_in_urgency_order_and_j_k_o_work(page, world, three):
    sign_in(page, "priya@example.com")
    assert refs(page, "my-queue") == [item.ref for item in three]

    page.keyboard.press("j")
    assert selected(page) == [three[0].ref]
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("j")  # stays on the last row
    assert selected(page) == [three[2].ref]
    page.keyboard.press("k")
    assert selected(page) == [three[1].ref]
    expect(page.locator(f"tr[data-ref='{three[1].ref}']")).to_be_focused()

    page.keyboard.press("o")
    page.wait_for_url(f"**/items/{three[1].ref}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(three[1].ref)


def test_enter_opens_the_selected_row_and_keys_in_fields_are_ignored(page, world, three):
    sign_in(page, "priya@example.com")
    page.get_by_label("Priority").focus()
    page.keyboard.press("j")
    assert selected(page) == []
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/items/{three[0].ref}")


def test_question_mark_shows_every_shortcut(page, world, three):
    sign_in(page, "priya@example.com")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    for words in ("Select the next item", "Open the selected item", "Search", "Reply to the requester",
                  "Add an internal note", "Resolve the item"):
        expect(dialog).to_contain_text(words)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_the_search_box_finds_words_and_opens_references(page, world, three, session, make_item):
    other = make_item(team=world.docs, type="document_verification", subject="Refund of a passport fee")
    session.commit()
    sign_in(page, "priya@example.com")

    page.keyboard.press("/")
    box = page.get_by_role("searchbox", name="Search items")
    expect(box).to_be_focused()
    box.fill("refund")
    box.press("Enter")
    page.wait_for_url("**/search?q=refund")
    assert refs(page, "search-results") == [three[2].ref]  # not Lena's team's item
    assert other.ref not in page.content()

    page.get_by_role("searchbox", name="Search items").fill(three[1].ref)
    page.get_by_role("searchbox", name="Search items").press("Enter")
    page.wait_for_url(f"**/items/{three[1].ref}")

    page.goto("/search?q=%22foo*+OR+(")
    expect(page.locator("h2#results-heading")).to_contain_text("Nothing found")


def test_take_next_from_two_sessions_at_once_gets_two_different_items(new_page, session, world, make_item):
    now = utcnow()
    made = []
    for hours in (1, 2, 3):
        item = make_item(team=world.returns, subject=f"Unassigned {hours}")
        item.sla_next_due = now + timedelta(hours=hours)
        made.append(item)
    session.commit()
    priya, tom = new_page(), new_page()
    sign_in(priya, "priya@example.com")
    sign_in(tom, "tom@example.com")

    for page in (priya, tom):  # both submit before either answer arrives
        page.locator("#take-next").click(no_wait_after=True)
    for page in (priya, tom):
        page.wait_for_url(re.compile(r".*/items/BO-\d+$"))
    got = {priya.url.rsplit("/", 1)[1], tom.url.rsplit("/", 1)[1]}
    assert got == {made[0].ref, made[1].ref}
    session.expire_all()
    assert {made[0].assignee_id, made[1].assignee_id} == {world.priya.id, world.tom.id}
    assert made[2].assignee_id is None


def test_the_queue_refreshes_in_place_and_keeps_the_selection(page, session, world, three, make_item):
    sign_in(page, "priya@example.com")
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert selected(page) == [three[1].ref]
    newcomer = make_item(team=world.returns, assignee=world.priya, subject="Brand new urgent one")
    newcomer.sla_next_due = utcnow() + timedelta(minutes=30)
    session.commit()

    # What the 15 s poll does, now rather than later.
    page.evaluate("""() => {
        const q = document.getElementById('queues');
        return htmx.ajax('GET', q.getAttribute('hx-get'), {source: q, target: q, swap: 'outerHTML'});
    }""")
    expect(page.locator(f"#my-queue tr[data-ref='{newcomer.ref}']")).to_be_visible()
    assert refs(page, "my-queue") == [three[0].ref, newcomer.ref, three[1].ref, three[2].ref]
    assert selected(page) == [three[1].ref]
    page.keyboard.press("j")
    assert selected(page) == [three[2].ref]


def test_a_form_without_its_csrf_token_is_refused_with_a_clear_page(page, session, world, make_item):
    item = make_item(team=world.returns, subject="Unassigned")
    session.commit()
    sign_in(page, "priya@example.com")
    page.evaluate("() => document.querySelector('form[action$=\"/take-next\"] input[name=csrf_token]').remove()")
    page.locator("#take-next").click()
    expect(page.locator("body")).to_contain_text("The form was refused")
    session.expire_all()
    assert item.assignee_id is None


def test_another_teams_item_is_refused(page, session, world, make_item):
    theirs = make_item(team=world.docs, type="document_verification", subject="Their passport")
    session.commit()
    sign_in(page, "priya@example.com")
    response = page.goto(f"/items/{theirs.ref}")
    assert response.status == 404
    assert "Their passport" not in page.content()


def test_the_queue_fits_a_tablet(new_page, world, three):
    page = new_page(width=768, height=1024)
    sign_in(page, "priya@example.com")
    expect(page.get_by_role("searchbox", name="Search items")).to_be_visible()
    expect(page.locator("#take-next")).to_be_visible()
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
