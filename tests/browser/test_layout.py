"""The layout at the widths people use: a wide screen uses its width, a laptop's tables fit without
scrolling sideways, and on a phone every column of a queue is on screen (rows become cards)."""
import pytest

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def world(session, make_team, make_user, make_item):
    returns = make_team(name="Returns and refunds for online orders", work_types=["return"])
    make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[returns])
    priya = make_user(email="priya@example.com", name="Priya Nair", teams=[returns])
    for n in range(3):
        item = make_item(team=returns, assignee=priya,
                         subject=f"Refund for order ORD-10{n} returned damaged by the courier, customer asks "
                                 "for a replacement instead of the money back")
        item.requester_name = "Annabelle Kowalski-Fitzgerald"
        item.requester_email = "annabelle.kowalski-fitzgerald@example.com"
        make_item(team=returns, subject=f"Unassigned return {n} with a fairly long subject about a parcel")
    session.commit()
    return returns


def page_width(page):
    return page.evaluate("document.documentElement.scrollWidth")


def table_fits(page, table_id):
    """The table is no wider than its scrolling box (nothing hidden sideways)."""
    return page.evaluate(f"""(() => {{ const t = document.getElementById("{table_id}");
        const wrap = t.closest(".table-wrap") || t.parentElement;
        return [t.getBoundingClientRect().width, wrap.clientWidth]; }})()""")


def test_a_wide_screen_uses_its_width(new_page, world):
    page = new_page(width=1920, height=1080)
    sign_in(page, "priya@example.com")
    table, _wrap = table_fits(page, "my-queue")
    assert table > 1700, f"the queue is {table}px wide on a 1920px screen"
    assert page_width(page) <= 1920


@pytest.mark.parametrize("email,table_id", [("priya@example.com", "my-queue"), ("sam@example.com", "unassigned")])
def test_a_laptop_shows_whole_tables(new_page, world, email, table_id):
    page = new_page(width=1366, height=768)
    sign_in(page, email)
    if email == "sam@example.com":
        page.goto("/supervisor")
    table, wrap = table_fits(page, table_id)
    assert table <= wrap + 1, f"#{table_id} is {table}px in a {wrap}px box at 1366px"
    assert page_width(page) <= 1366


@pytest.mark.parametrize("email,table_id", [("priya@example.com", "my-queue"), ("sam@example.com", "unassigned")])
def test_on_a_phone_every_column_is_on_screen(new_page, world, email, table_id):
    page = new_page(width=390, height=844)
    sign_in(page, email)
    if email == "sam@example.com":
        page.goto("/supervisor")
    assert page_width(page) <= 390
    cells = page.locator(f"#{table_id} tbody tr").first.locator("td")
    assert cells.count() >= 6
    for i in range(cells.count()):
        box = cells.nth(i).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390 + 1, (i, box)
