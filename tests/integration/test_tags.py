"""Tags: normalising, the limit, one event per change, who may tag, and the tag filter in My queue, the
team queue, search and the API (its query reads the (tag, work_item_id) index)."""
import re

import pytest
import sqlalchemy as sa

from queue_app.extensions import db as _db
from queue_app.models import Event, ItemTag
from queue_app.services.assignment import worklists
from queue_app.services.errors import Invalid, NotFound, PermissionDenied
from queue_app.services.items import search as items_search
from queue_app.services.items import tags
from queue_app.services.people.users import issue_api_token
from tests.conftest import csrf_token_from, database_is

API = "/api/v1"


class World:
    """Returns with a supervisor and two executives; Documents with its own executive."""

    def __init__(self, session, make_team, make_user):
        self.returns = make_team(name="Returns", work_types=["return", "general"])
        self.docs = make_team(name="Documents", work_types=["document_verification"])
        self.sup = make_user(email="sam@example.com", role="supervisor", teams=[self.returns])
        self.priya = make_user(email="priya@example.com", name="Priya Nair", teams=[self.returns])
        self.tom = make_user(email="tom@example.com", name="Tom Weber", teams=[self.returns])
        self.lena = make_user(email="lena@example.com", teams=[self.docs])
        session.commit()


@pytest.fixture
def world(session, make_team, make_user):
    return World(session, make_team, make_user)


def priya_item(world, make_item, subject="Refund for order ORD-1001", **kw):
    return make_item(team=world.returns, assignee=world.priya, actor=world.sup, type="general", subject=subject,
                     **kw)


# --- normalising and the service ------------------------------------------------------------------

@pytest.mark.parametrize("typed, stored", [
    ("VIP", "vip"), ("  fraud   check ", "fraud-check"), ("Charge_back", "charge_back"), ("Zoë", "zoë"),
    ("Überprüfung", "überprüfung"), ("срочно", "срочно"), ("a" * 40, "a" * 40), ("2026-q4", "2026-q4"),
])
def test_tags_are_normalised(typed, stored):
    assert tags.normalise(typed) == stored


@pytest.mark.parametrize("typed, problem", [
    ("", "a tag cannot be empty"), ("   ", "a tag cannot be empty"), ("a" * 41, "at most 40 characters a tag"),
    ("a/b", "only letters, digits, - and _"), ("vip!", "only letters, digits, - and _"),
    ("<script>", "only letters, digits, - and _"), ("a\u202eb", "only letters, digits, - and _"),
])
def test_a_bad_tag_is_invalid_with_a_field_error(typed, problem):
    with pytest.raises(Invalid) as refused:
        tags.normalise(typed)
    assert refused.value.fields == {"tags": problem}


def test_adding_and_removing_is_one_event_each_and_repeats_change_nothing(session, world, make_item):
    item = priya_item(world, make_item)
    assert tags.change(session, item, actor=world.priya, add=["VIP", "fraud check", "vip"]) == ["fraud-check", "vip"]
    assert tags.change(session, item, actor=world.priya, add=["vip"], remove=["chargeback"]) == ["fraud-check", "vip"]
    assert tags.change(session, item, actor=world.priya, add=["chargeback"], remove=["VIP"]) == \
        ["chargeback", "fraud-check"]
    session.commit()

    kinds = session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == "tags_changed")
                            .order_by(Event.id)).all()
    assert [e.data for e in kinds] == [{"added": ["fraud-check", "vip"], "removed": []},
                                       {"added": ["chargeback"], "removed": ["vip"]}]
    assert {e.actor_id for e in kinds} == {world.priya.id}
    assert [t.tag for t in item.tags] == ["chargeback", "fraud-check"]
    row = session.scalar(sa.select(ItemTag).where(ItemTag.tag == "chargeback"))
    assert row.created_by_id == world.priya.id and row.created_at is not None


def test_an_item_carries_at_most_twenty_tags(session, world, make_item):
    item = priya_item(world, make_item)
    tags.change(session, item, actor=world.priya, add=[f"t{n}" for n in range(tags.MAX_TAGS)])
    with pytest.raises(Invalid) as refused:
        tags.change(session, item, actor=world.priya, add=["one-more"])
    assert refused.value.fields == {"add": "at most 20 tags an item"}
    # swapping one for another keeps it at the limit
    assert len(tags.change(session, item, actor=world.priya, add=["one-more"], remove=["t0"])) == tags.MAX_TAGS


def test_who_may_tag_is_who_may_work_the_item(session, world, make_item):
    item = priya_item(world, make_item)
    tags.change(session, item, actor=world.sup, add=["vip"])  # a supervisor of the team
    with pytest.raises(PermissionDenied):
        tags.change(session, item, actor=world.tom, add=["mine"])  # same team, not the assignee
    with pytest.raises(NotFound):
        tags.change(session, item, actor=world.lena, add=["peek"])  # another team's executive
    assert tags.tags_on(session, item) == ["vip"]


def test_tags_of_loads_a_page_in_one_query(session, world, make_item):
    items = [priya_item(world, make_item, subject=f"Item {n}") for n in range(5)]
    for n, item in enumerate(items):
        tags.change(session, item, actor=world.priya, add=["vip"] + (["fraud-check"] if n % 2 else []))
    session.commit()
    for item in items:
        session.refresh(item)  # loaded again after the commit, as a page's rows are
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(_db.engine, "before_cursor_execute", count)
    try:
        found = tags.tags_of(session, items)
    finally:
        sa.event.remove(_db.engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert found[items[1].id] == ["fraud-check", "vip"] and found[items[0].id] == ["vip"]


def test_the_tag_filter_reads_the_tag_index(session, world, make_item):
    if database_is("postgresql"):
        pytest.skip("PostgreSQL's plan on a few rows follows its statistics, not the indexes alone")
    item = priya_item(world, make_item)
    tags.change(session, item, actor=world.priya, add=["vip"])
    session.commit()
    for query in (items_search.tagged_query(world.priya, "vip"),
                  worklists.my_queue_query(world.priya, worklists.QueueFilter(tag="vip")),
                  worklists.team_queue_query(world.priya, "vip")):
        plan = "\n".join(items_search.explain(session, query))
        assert re.search(r"SEARCH item_tags USING COVERING INDEX ix_item_tags_tag \(tag=\?", plan), plan
        assert "SCAN item_tags" not in plan, plan


# --- the pages ------------------------------------------------------------------------------------

def item_page(client, item):
    return client.get(f"/items/{item.ref}").get_data(as_text=True)


def test_the_item_page_adds_and_removes_tags_without_javascript(client, auth, session, world, make_item):
    item = priya_item(world, make_item)
    session.commit()
    auth.login("priya@example.com")
    html = item_page(client, item)
    assert 'id="tags-form"' in html and "No tags yet." in html

    added = client.post(f"/items/{item.ref}/tags", data={"csrf_token": csrf_token_from(html),
                                                          "tags": "VIP, fraud check"}, follow_redirects=True)
    html = added.get_data(as_text=True)
    assert added.status_code == 200 and "Tags saved." in html
    assert 'href="/?tag=vip"' in html and 'aria-label="Remove tag fraud-check"' in html

    removed = client.post(f"/items/{item.ref}/tags/remove", data={"csrf_token": csrf_token_from(html),
                                                                  "tag": "vip"}, follow_redirects=True)
    assert "Tag vip removed." in removed.get_data(as_text=True)
    session.expire_all()
    assert tags.tags_on(session, item) == ["fraud-check"]


def test_the_item_page_refuses_bad_tags_and_posts_without_csrf(client, auth, session, world, make_item):
    item = priya_item(world, make_item)
    session.commit()
    auth.login("priya@example.com")
    html = item_page(client, item)
    refused = client.post(f"/items/{item.ref}/tags", data={"csrf_token": csrf_token_from(html), "tags": "a/b"},
                          follow_redirects=True)
    assert "has characters a tag cannot hold" in refused.get_data(as_text=True)
    assert client.post(f"/items/{item.ref}/tags", data={"tags": "vip"}).status_code in (302, 400)
    session.expire_all()
    assert tags.tags_on(session, item) == []


def test_someone_who_may_not_work_the_item_sees_the_tags_but_no_forms(client, auth, session, world, make_item):
    item = priya_item(world, make_item)
    tags.change(session, item, actor=world.priya, add=["vip"])
    session.commit()
    auth.login("tom@example.com")
    html = item_page(client, item)
    assert 'href="/?tag=vip"' in html and 'id="tags-form"' not in html and "Remove tag" not in html
    token = csrf_token_from(html)
    assert client.post(f"/items/{item.ref}/tags", data={"csrf_token": token, "tags": "x"}).status_code == 403
    auth.logout()
    auth.login("lena@example.com")
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    assert client.post(f"/items/{item.ref}/tags", data={"csrf_token": token, "tags": "x"}).status_code == 404


def test_my_queue_and_the_team_queue_filter_by_tag(client, auth, session, world, make_item):
    vip = priya_item(world, make_item, subject="Tagged VIP item")
    plain = priya_item(world, make_item, subject="Plain item")
    unassigned_vip = make_item(team=world.returns, actor=world.sup, type="general", subject="Unassigned VIP item")
    unassigned = make_item(team=world.returns, actor=world.sup, type="general", subject="Unassigned plain item")
    tags.change(session, vip, actor=world.priya, add=["vip"])
    tags.change(session, unassigned_vip, actor=world.sup, add=["vip"])
    session.commit()
    auth.login("priya@example.com")

    everything = client.get("/").get_data(as_text=True)
    assert all(i.subject in everything for i in (vip, plain, unassigned_vip, unassigned))
    assert everything.count('class="tag-chip" href="/?tag=vip"') == 2

    page = client.get("/?tag=VIP")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert vip.subject in html and unassigned_vip.subject in html
    assert plain.subject not in html and unassigned.subject not in html
    assert 'value="vip"' in html  # the filter box shows the tag

    bad = client.get("/?tag=a/b")
    assert bad.status_code == 400 and "Showing all your items instead" in bad.get_data(as_text=True)
    assert plain.subject in bad.get_data(as_text=True)  # the unfiltered queue instead


def test_search_filters_by_tag_and_lists_a_tag_alone(client, auth, session, world, make_item):
    vip = priya_item(world, make_item, subject="Kettle refund for Ann")
    plain = priya_item(world, make_item, subject="Kettle refund for Bob")
    other_team = make_item(team=world.docs, type="document_verification", subject="Kettle passport")
    tags.change(session, vip, actor=world.priya, add=["vip"])
    other_team_tag = ItemTag(work_item_id=other_team.id, tag="vip")
    session.add(other_team_tag)
    session.commit()
    auth.login("priya@example.com")

    both = client.get("/search?q=kettle").get_data(as_text=True)
    assert vip.subject in both and plain.subject in both and 'href="/search?tag=vip"' in both
    narrowed = client.get("/search?q=kettle&tag=vip").get_data(as_text=True)
    assert vip.subject in narrowed and plain.subject not in narrowed
    alone = client.get("/search?tag=VIP").get_data(as_text=True)
    assert vip.subject in alone and plain.subject not in alone and other_team.subject not in alone
    assert client.get("/search?tag=a/b").status_code == 400


# --- the API --------------------------------------------------------------------------------------

def test_the_api_changes_tags_lists_by_tag_and_shows_them_on_items(client, session, world, make_item):
    vip = priya_item(world, make_item)
    plain = priya_item(world, make_item)
    headers = {"Authorization": f"Bearer {issue_api_token(session, world.priya)}"}
    session.commit()

    changed = client.put(f"{API}/items/{vip.ref}/tags", headers=headers, json={"add": ["VIP", "fraud check"]})
    assert changed.status_code == 200
    assert changed.get_json() == {"ref": vip.ref, "tags": ["fraud-check", "vip"]}
    changed = client.put(f"{API}/items/{vip.ref}/tags", headers=headers, json={"remove": ["fraud-check"]})
    assert changed.get_json()["tags"] == ["vip"]

    assert client.get(f"{API}/items/{vip.ref}", headers=headers).get_json()["tags"] == ["vip"]
    listed = client.get(f"{API}/items?tag=Vip", headers=headers).get_json()
    assert [i["ref"] for i in listed["items"]] == [vip.ref]
    assert {i["ref"]: i["tags"] for i in client.get(f"{API}/items", headers=headers).get_json()["items"]} == \
        {vip.ref: ["vip"], plain.ref: []}

    bad = client.get(f"{API}/items?tag=a/b", headers=headers)
    assert bad.status_code == 422 and bad.get_json()["error"]["fields"] == {"tag": "only letters, digits, - and _"}
    for body, field in (({"add": ["a/b"]}, "add"), ({}, "add"), ({"add": [1]}, "add"), ({"add": "vip"}, "add")):
        refused = client.put(f"{API}/items/{vip.ref}/tags", headers=headers, json=body)
        assert refused.status_code == 422 and field in refused.get_json()["error"]["fields"], body


def test_the_api_hides_other_teams_items_and_refuses_those_who_may_not_work_them(client, session, world,
                                                                                make_item):
    item = priya_item(world, make_item)
    lena = {"Authorization": f"Bearer {issue_api_token(session, world.lena)}"}
    tom = {"Authorization": f"Bearer {issue_api_token(session, world.tom)}"}
    session.commit()
    assert client.put(f"{API}/items/{item.ref}/tags", headers=lena, json={"add": ["x"]}).status_code == 404
    assert client.put(f"{API}/items/{item.ref}/tags", headers=tom, json={"add": ["x"]}).status_code == 403
    assert client.get(f"{API}/items?tag=x", headers=lena).get_json()["items"] == []


def test_the_item_list_reads_tags_in_one_query_whatever_the_page_size(client, session, world, make_item):
    headers = {"Authorization": f"Bearer {issue_api_token(session, world.priya)}"}
    for n in range(6):
        item = priya_item(world, make_item, subject=f"Item {n}")
        tags.change(session, item, actor=world.priya, add=["vip", f"n{n}"])
    session.commit()

    def tag_selects(limit):
        statements = []

        def count(conn, cursor, statement, *args):
            if re.search(r"\bFROM item_tags\b", statement):
                statements.append(statement)

        sa.event.listen(_db.engine, "before_cursor_execute", count)
        try:
            assert client.get(f"{API}/items?limit={limit}", headers=headers).status_code == 200
        finally:
            sa.event.remove(_db.engine, "before_cursor_execute", count)
        return len(statements)

    assert tag_selects(2) == tag_selects(6) == 1
