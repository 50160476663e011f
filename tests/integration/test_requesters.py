"""Requester history: the requester page (GET /requesters/<email>), its link from the item page and
search, and GET /api/v1/requesters/<email>/items, each limited to the teams the viewer may see."""
import html
import re
from urllib.parse import quote

import pytest

from queue_app.services.errors import Invalid, NotFound
from queue_app.services.items import requesters
from queue_app.services.items import search as items_search
from queue_app.services.people.users import issue_api_token
from tests.conftest import database_is

ANNA = "anna@customer.example.com"


@pytest.fixture
def history(session, world, make_item, make_team, make_user):
    """Anna's items: two in Returns (one closed), one in Documents; Bob's only in Documents."""
    fixes = make_team(name="Fixes", work_types=["discrepancy_fix"])
    old = make_item(team=world.returns, subject="Old kettle return", requester_email=ANNA,
                    fields={"order_number": "ORD-778899", "purchase_date": "2026-11-01", "amount": "49.90",
                            "currency": "EUR", "reason": "Broken"})
    old.requester_name = "Anna Schmidt"
    old.status = "closed"
    new = make_item(team=world.returns, subject="New toaster return", requester_email=ANNA)
    new.requester_name = "Anna S."
    passport = make_item(team=world.docs, type="document_verification", subject="Passport scan", requester_email=ANNA)
    bob = make_item(team=world.docs, type="document_verification", subject="Licence", requester_email="bob@else.example")
    fix = make_item(team=fixes, type="discrepancy_fix", subject="Balance off",
                    fields={"account": "ACC-554433", "expected_amount": "100.00", "actual_amount": "98.50",
                            "currency": "EUR"})
    admin = make_user(email="ada@example.com", name="Ada Admin", role="admin")
    session.commit()
    return type("History", (), dict(old=old, new=new, passport=passport, bob=bob, fix=fix, fixes=fixes, admin=admin))


# --- the service --------------------------------------------------------------------------------

def test_a_requesters_items_are_those_of_the_viewers_teams_newest_first(session, world, history):
    assert [i.ref for i in requesters.items_page(session, world.priya, ANNA)] == [history.new.ref, history.old.ref]
    assert [i.ref for i in requesters.items_page(session, world.lena, ANNA)] == [history.passport.ref]
    assert [i.ref for i in requesters.items_page(session, history.admin, ANNA)] == [
        history.passport.ref, history.new.ref, history.old.ref]


def test_the_profile_counts_open_and_closed_and_lists_the_names_used(session, world, history):
    person = requesters.profile(session, world.sup, ANNA)
    assert (person.email, person.open_count, person.closed_count) == (ANNA, 1, 1)
    assert person.names == ["Anna S.", "Anna Schmidt"]
    assert requesters.profile(session, world.lena, ANNA).names == []  # her Documents item has no name


def test_a_requester_seen_only_in_other_teams_is_not_found(session, world, history):
    with pytest.raises(NotFound):
        requesters.items_page(session, world.priya, "bob@else.example")
    with pytest.raises(NotFound):
        requesters.profile(session, world.priya, "bob@else.example")
    with pytest.raises(NotFound):
        requesters.profile(session, world.priya, "nobody@example.com")


def test_keyset_pages_neither_skip_nor_repeat(session, world, make_item):
    made = [make_item(team=world.returns, requester_email="many@example.com") for _ in range(7)]
    session.commit()
    seen, before = [], None
    while True:
        page = requesters.items_page(session, world.priya, "many@example.com", before, limit=3)
        seen += [i.id for i in page]
        if len(page) < 3:
            break
        before = page[-1].id
    assert seen == sorted((i.id for i in made), reverse=True)


def test_the_page_query_walks_the_requester_index(session, world, history):
    if database_is("postgresql"):
        # PostgreSQL chooses by its statistics: on a test's few rows a scan of the primary key, or
        # another index and a sort, are as good and it takes them whatever is priced out. SQLite's
        # choice follows the indexes alone, so it shows the query can walk the index in order.
        pytest.skip("PostgreSQL's plan on a few rows follows its statistics, not the indexes alone")
    query = requesters.items_query(world.sup, ANNA, before_id=10 ** 6)
    plan = "\n".join(items_search.explain(session, query))
    session.rollback()
    assert "ix_work_items_requester_email_id" in plan
    assert "TEMP B-TREE" not in plan  # the index gives the order: a page reads a page


@pytest.mark.parametrize("bad", ["", "   ", "no-at-sign", "x" * 300 + "@example.com"])
def test_what_cannot_be_an_address_is_no_requester(session, world, bad):
    with pytest.raises(NotFound):
        requesters.items_page(session, world.priya, bad)


def test_control_characters_are_refused(session, world):
    with pytest.raises(Invalid):
        requesters.items_page(session, world.priya, "a\x00@example.com")


# --- the page -------------------------------------------------------------------------------------

def test_the_page_lists_open_and_closed_items_of_visible_teams_only(client, auth, world, history):
    auth.login("sam@example.com")
    response = client.get(f"/requesters/{quote(ANNA)}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert history.new.ref in html and history.old.ref in html and history.passport.ref not in html
    assert 'id="requester-open">1<' in html and 'id="requester-closed">1<' in html
    assert "Anna Schmidt" in html and ANNA in html


def test_the_page_is_a_404_for_a_requester_only_in_other_teams(client, auth, world, history):
    auth.login("priya@example.com")
    assert client.get("/requesters/bob@else.example").status_code == 404
    assert client.get("/requesters/nobody@example.com").status_code == 404


def test_the_page_refuses_control_characters_and_bad_page_links(client, auth, world, history):
    auth.login("priya@example.com")
    assert client.get("/requesters/anna%00@customer.example.com").status_code == 400
    assert client.get(f"/requesters/{quote(ANNA)}", query_string={"before": "abc"}).status_code == 400
    assert client.get(f"/requesters/{quote(ANNA)}", query_string={"before": "9" * 30}).status_code == 400


def test_an_address_with_characters_to_encode_round_trips(client, auth, session, world, make_item):
    odd = "o'brien+returns/eu#1?@example.com"
    item = make_item(team=world.returns, requester_email=odd)
    session.commit()
    auth.login("priya@example.com")
    page = client.get(f"/items/{item.ref}").get_data(as_text=True)
    href = html.unescape(re.search(r'id="requester-link" href="([^"]+)"', page).group(1))
    assert "#" not in href and "?" not in href  # encoded, so the address reaches the page whole
    for url in (href, f"/requesters/{quote(odd)}"):
        response = client.get(url)
        assert response.status_code == 200 and item.ref in response.get_data(as_text=True)


def test_the_page_pages_by_keyset(client, auth, session, world, make_item):
    made = [make_item(team=world.returns, requester_email="many@example.com") for _ in range(requesters.PAGE_SIZE + 2)]
    session.commit()
    auth.login("priya@example.com")
    first = client.get("/requesters/many@example.com").get_data(as_text=True)
    assert made[-1].ref in first and made[0].ref not in first and 'id="requester-older"' in first
    older = client.get("/requesters/many@example.com",
                       query_string={"before": made[2].id}).get_data(as_text=True)
    assert made[0].ref in older and made[1].ref in older and made[2].ref not in older


def test_the_item_page_and_search_link_to_the_requester(client, auth, world, history):
    auth.login("priya@example.com")
    page = client.get(f"/items/{history.new.ref}").get_data(as_text=True)
    assert 'id="requester-link" href="/requesters/anna@customer.example.com"' in page
    results = client.get("/search", query_string={"q": "toaster"}).get_data(as_text=True)
    assert 'href="/requesters/anna@customer.example.com"' in results


# --- search by order number and account reference ------------------------------------------------

def test_search_finds_items_by_order_number_and_account(session, world, history):
    assert [i.ref for i in items_search.search(session, world.priya, "ORD-778899").items] == [history.old.ref]
    assert items_search.search(session, world.priya, "ACC-554433").items == []  # not Priya's team
    assert [i.ref for i in items_search.search(session, history.admin, "ACC-554433").items] == [history.fix.ref]


def test_search_follows_a_changed_order_number(session, world, history):
    history.old.order_number = "ORD-123123"
    session.commit()
    assert items_search.search(session, world.priya, "ORD-778899").items == []
    assert [i.ref for i in items_search.search(session, world.priya, "ORD-123123").items] == [history.old.ref]


def test_the_search_page_finds_an_order_number(client, auth, world, history):
    auth.login("priya@example.com")
    html = client.get("/search", query_string={"q": "ORD-778899"}).get_data(as_text=True)
    assert history.old.ref in html and history.new.ref not in html


# --- the API --------------------------------------------------------------------------------------

def _headers(session, user):
    return {"Authorization": f"Bearer {issue_api_token(session, user)}"}


def test_the_api_lists_a_requesters_visible_items_by_keyset(client, session, world, history):
    headers = _headers(session, world.sup)
    session.commit()
    first = client.get(f"/api/v1/requesters/{quote(ANNA)}/items", query_string={"limit": 1}, headers=headers)
    assert first.status_code == 200, first.get_data(as_text=True)
    body = first.get_json()
    assert [i["ref"] for i in body["items"]] == [history.new.ref] and body["next_cursor"]
    second = client.get(f"/api/v1/requesters/{quote(ANNA)}/items",
                        query_string={"limit": 1, "cursor": body["next_cursor"]}, headers=headers).get_json()
    assert [i["ref"] for i in second["items"]] == [history.old.ref] and second["next_cursor"] is None
    assert second["items"][0]["status"] == "closed"


def test_the_api_follows_the_access_rules(client, session, world, history):
    priya, lena, admin = (_headers(session, u) for u in (world.priya, world.lena, history.admin))
    session.commit()
    url = "/api/v1/requesters/bob@else.example/items"
    assert client.get(url, headers=priya).status_code == 404
    assert [i["ref"] for i in client.get(url, headers=lena).get_json()["items"]] == [history.bob.ref]
    anna = [i["ref"] for i in client.get(f"/api/v1/requesters/{ANNA}/items", headers=admin).get_json()["items"]]
    assert anna == [history.passport.ref, history.new.ref, history.old.ref]
    assert client.get(f"/api/v1/requesters/{ANNA}/items").status_code == 401


def test_the_api_refuses_bad_input_without_a_500(client, session, world, history):
    headers = _headers(session, world.sup)
    session.commit()
    for url, status in ((f"/api/v1/requesters/{ANNA}/items?cursor=junk", 422),
                        (f"/api/v1/requesters/{ANNA}/items?limit=0", 422),
                        (f"/api/v1/requesters/{ANNA}/items?other=1", 422),
                        ("/api/v1/requesters/anna%00@x.example/items", 400),
                        ("/api/v1/requesters/no-at-sign/items", 404),
                        (f"/api/v1/requesters/{ANNA}/items?cursor=%00", 400)):
        response = client.get(url, headers=headers)
        assert response.status_code == status, (url, response.get_data(as_text=True))


def test_a_mixed_case_address_also_finds_the_items_stored_in_lower_case(session, world, history, make_item):
    shouting = make_item(team=world.returns, requester_email="Anna@Customer.Example.com")
    session.commit()
    found = [i.ref for i in requesters.items_page(session, world.priya, "Anna@Customer.Example.com")]
    assert found == [shouting.ref, history.new.ref, history.old.ref]
    assert shouting.ref not in [i.ref for i in requesters.items_page(session, world.priya, ANNA)]
