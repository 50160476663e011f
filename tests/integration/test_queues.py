"""My queue (saved views, filters, keyset paging), the team queue, "take next" and the refresh
fragment, through services.assignment.worklists and the inbox pages, on the database under test."""
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from queue_app.models import Event, User, WorkItem
from queue_app.services.assignment import worklists
from queue_app.services.errors import Invalid
from queue_app.web import paging as web_paging
from tests.conftest import csrf_token_from
from tests.integration.test_assignment_concurrency import run_threads

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)


def set_due(session, item, due, **values):
    item.sla_next_due = due
    for name, value in values.items():
        setattr(item, name, value)
    session.flush()
    return item


def refs_of(items):
    return [item.ref for item in items]


def my_queue(session, user, args=None, zone=timezone.utc, now=NOW, cursor=None, size=50):
    flt = worklists.parse_filter(args or {})
    query = worklists.my_queue_query(user, flt, zone=zone, now=now)
    return web_paging.page(session, query, cursor, size=size, attention_first=True)


@pytest.fixture
def mine(session, world, make_item):
    """Five items of Priya's: one needing attention, one breached, one waiting on the customer, two on track."""
    def item(subject, due, **values):
        return set_due(session, make_item(team=world.returns, assignee=world.priya, subject=subject), due, **values)

    later = item("later", NOW + timedelta(days=3), priority="low")
    soon = item("soon", NOW + timedelta(hours=2), priority="urgent")
    breached = item("breached", NOW - timedelta(hours=1), sla_state="breached")
    flagged = item("flagged", NOW + timedelta(days=5), needs_attention=True)
    waiting = item("waiting", None, status="pending_customer", sla_state="paused")
    item("done", NOW, status="resolved")
    make_item(team=world.returns, assignee=world.tom, subject="toms")
    session.commit()
    return type("Mine", (), dict(later=later, soon=soon, breached=breached, flagged=flagged, waiting=waiting))


def test_my_queue_is_attention_first_then_by_due_instant_open_items_only(session, world, mine):
    items, cursor = my_queue(session, world.priya)
    assert refs_of(items) == refs_of([mine.flagged, mine.breached, mine.soon, mine.later, mine.waiting])
    assert cursor is None


@pytest.mark.parametrize("args, expected", [
    ({"view": "waiting_on_customer"}, ["waiting"]),
    ({"view": "needs_attention"}, ["flagged", "breached"]),
    ({"view": "due_today"}, ["breached", "soon"]),
    ({"priority": "urgent"}, ["soon"]),
    ({"priority": "low", "type": "return"}, ["later"]),
    ({"type": "escalation"}, []),
    ({"status": "pending_customer"}, ["waiting"]),
    ({"view": "needs_attention", "priority": "normal"}, ["flagged", "breached"]),
    ({"view": "", "type": ""}, ["flagged", "breached", "soon", "later", "waiting"]),
])
def test_saved_views_and_filters(session, world, mine, args, expected):
    items, _ = my_queue(session, world.priya, args)
    assert [item.subject for item in items] == expected


def test_due_today_ends_at_midnight_in_the_viewers_zone(session, world, make_item):
    # 10:00 UTC is 23:00 in Auckland (UTC+13 in November): its day ends an hour later, UTC's 14 hours later.
    in_two_hours = set_due(session, make_item(team=world.returns, assignee=world.priya, subject="two hours"),
                           NOW + timedelta(hours=2))
    set_due(session, make_item(team=world.returns, assignee=world.priya, subject="tomorrow"), NOW + timedelta(hours=20))
    session.commit()

    utc_day, _ = my_queue(session, world.priya, {"view": "due_today"})
    auckland_day, _ = my_queue(session, world.priya, {"view": "due_today"}, zone=ZoneInfo("Pacific/Auckland"))

    assert [item.subject for item in utc_day] == ["two hours"]
    assert auckland_day == [] and in_two_hours.sla_next_due > worklists.end_of_today(ZoneInfo("Pacific/Auckland"), NOW)


@pytest.mark.parametrize("args, field", [
    ({"view": "everything"}, "view"), ({"type": "refund"}, "type"), ({"status": "resolved"}, "status"),
    ({"priority": "critical"}, "priority"), ({"status": "x" * 500}, "status"),
])
def test_unknown_filter_values_are_refused_naming_the_allowed_ones(args, field):
    with pytest.raises(Invalid) as caught:
        worklists.parse_filter(args)
    assert field in caught.value.fields
    assert "choose one of" in caught.value.message


def test_keyset_paging_keeps_the_filter_and_neither_skips_nor_repeats(session, world, make_item):
    made = []
    for n in range(7):
        item = make_item(team=world.returns, assignee=world.priya, subject=f"urgent {n}", priority="urgent")
        made.append(set_due(session, item, NOW + timedelta(hours=n % 3), needs_attention=n == 4))
    for n in range(4):
        set_due(session, make_item(team=world.returns, assignee=world.priya, subject=f"low {n}", priority="low"),
                NOW + timedelta(hours=n))
    session.commit()

    seen, cursor = [], None
    while True:
        page, cursor = my_queue(session, world.priya, {"priority": "urgent"}, cursor=cursor, size=3)
        seen += page
        if cursor is None:
            break
    assert len(seen) == 7 and {item.priority for item in seen} == {"urgent"}
    assert len(set(refs_of(seen))) == 7
    expected = sorted(made, key=lambda i: (not i.needs_attention, i.sla_next_due, i.id))
    assert refs_of(seen) == refs_of(expected)


def test_team_queue_is_the_unassigned_open_items_of_my_teams(session, world, make_item):
    mine = set_due(session, make_item(team=world.returns), NOW)
    make_item(team=world.returns, assignee=world.tom)
    make_item(team=world.docs, type="document_verification")
    session.commit()
    rows, _ = web_paging.page(session, worklists.team_queue_query(world.priya))
    assert refs_of(rows) == [mine.ref]
    lonely = User(email="nobody@example.com", name="No Team", role="executive", password_hash="x")
    assert worklists.team_queue_query(lonely) is None


# --- the page ---------------------------------------------------------------------------------

def test_the_page_filters_and_its_next_page_link_keeps_the_filter(client, auth, session, world, make_item, monkeypatch):
    monkeypatch.setattr(web_paging, "page", partial(web_paging.page, size=2))
    for n in range(3):
        set_due(session, make_item(team=world.returns, assignee=world.priya, subject=f"Urgent {n}", priority="urgent"),
                NOW + timedelta(hours=n))
    set_due(session, make_item(team=world.returns, assignee=world.priya, subject="Low one", priority="low"), NOW)
    session.commit()
    auth.login("priya@example.com")

    html = client.get("/", query_string={"priority": "urgent"}).get_data(as_text=True)
    assert "Urgent 0" in html and "Urgent 1" in html and "Low one" not in html
    link = re.search(r'<a href="([^"]+)">Next page', html).group(1).replace("&amp;", "&")
    assert "priority=urgent" in link and "after=" in link
    second = client.get(link).get_data(as_text=True)
    assert "Urgent 2" in second and "Urgent 0" not in second and "Low one" not in second


@pytest.mark.parametrize("query", [{"view": "all_of_it"}, {"priority": "p0"}, {"status": "closed"},
                                   {"after": "garbage", "type": "nope"}])
def test_a_bad_filter_on_the_page_is_a_clear_400_not_an_error(client, auth, world, query):
    auth.login("priya@example.com")
    response = client.get("/", query_string=query)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="filter-error"' in html and "choose one of" in html


def test_a_malformed_cursor_shows_the_first_page(client, auth, session, world, mine):
    auth.login("priya@example.com")
    response = client.get("/", query_string={"after": "a1_notadate_x"})
    assert response.status_code == 200 and mine.flagged.ref in response.get_data(as_text=True)


def test_refresh_answers_204_until_something_changes(client, auth, session, world, mine):
    auth.login("priya@example.com")
    html = client.get("/").get_data(as_text=True)
    stamp = re.search(r'data-stamp="([^"]+)"', html).group(1)

    assert client.get("/queue/refresh", query_string={"stamp": stamp}).status_code == 204
    mine.soon.priority = "high"
    session.commit()
    changed = client.get("/queue/refresh", query_string={"stamp": stamp})
    assert changed.status_code == 200
    assert 'id="queues"' in changed.get_data(as_text=True) and mine.soon.ref in changed.get_data(as_text=True)
    assert 'href="/queue/refresh' not in changed.get_data(as_text=True)  # pager links go to the page, not here


def test_refresh_notices_an_item_leaving_and_a_new_unassigned_one(session, world, mine, make_item):
    before = worklists.change_stamp(session, world.priya, NOW)
    mine.later.assignee_id = world.tom.id
    session.commit()
    after_reassign = worklists.change_stamp(session, world.priya, NOW)
    make_item(team=world.returns)
    session.commit()
    assert len({before, after_reassign, worklists.change_stamp(session, world.priya, NOW)}) == 3


# --- take next --------------------------------------------------------------------------------

@pytest.fixture
def team_queue(session, world, make_item):
    """Unassigned Returns items: a return due in 1 h, an escalation due in 2 h, a return due in 3 h."""
    def item(type_, hours, subject):
        return set_due(session, make_item(team=world.returns, type=type_, subject=subject),
                       NOW + timedelta(hours=hours))

    first = item("return", 1, "first")
    second = item("escalation", 2, "second")
    third = item("return", 3, "third")
    set_due(session, make_item(team=world.docs, type="document_verification", subject="docs"), NOW)
    session.commit()
    return type("Queue", (), dict(first=first, second=second, third=third))


def test_take_next_gives_the_most_urgent_and_records_the_assignment(session, world, team_queue):
    item = worklists.take_next(session, world.priya, NOW)
    session.commit()
    assert item.ref == team_queue.first.ref and item.assignee_id == world.priya.id
    events = session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == "assigned")).all()
    assert len(events) == 1 and events[0].data["to"] == "priya@example.com"


def test_take_next_respects_skills(session, world, team_queue):
    world.priya.skills = ["escalation"]
    session.commit()
    assert worklists.take_next(session, world.priya, NOW).ref == team_queue.second.ref
    session.commit()
    assert worklists.take_next(session, world.priya, NOW) is None


def test_take_next_without_skills_takes_any_type_then_runs_dry(session, world, team_queue):
    taken = [worklists.take_next(session, world.priya, NOW) for _ in range(4)]
    session.commit()
    assert [item.ref if item else None for item in taken] == [team_queue.first.ref, team_queue.second.ref,
                                                              team_queue.third.ref, None]


def test_take_next_for_someone_in_no_team_is_refused(session, make_user):
    loner = make_user(email="loner@example.com")
    session.commit()
    with pytest.raises(Invalid):
        worklists.take_next(session, loner, NOW)


@pytest.mark.parametrize("hold", [0.0, 0.4])
def test_two_people_taking_next_at_once_never_get_the_same_item(app, db, session, world, team_queue, hold):
    """Each side has its own session and connection. With `hold`, the first holds its transaction
    open after claiming, so the second must pass over the claimed item instead of taking it too."""
    start = threading.Barrier(2)
    taken = {}

    def taker(user_id, delay):
        def run():
            with Session(db.engine) as own:
                user = own.get(User, user_id)
                start.wait()
                time.sleep(delay)
                item = worklists.take_next(own, user, NOW)
                taken[user_id] = item.ref if item else None
                time.sleep(hold)
                own.commit()
        return run

    run_threads(app, taker(world.priya.id, 0), taker(world.tom.id, 0.1 if hold else 0))
    assert None not in taken.values()
    assert len(set(taken.values())) == 2
    assert set(taken.values()) == {team_queue.first.ref, team_queue.second.ref}
    session.expire_all()
    owners = dict(session.execute(sa.select(WorkItem.ref, WorkItem.assignee_id)
                                  .where(WorkItem.ref.in_(list(taken.values())))).all())
    assert {owners[ref] for ref in taken.values()} == {world.priya.id, world.tom.id}
    assigned = session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "assigned"))
    assert assigned == 2


def test_the_take_next_button_opens_the_item(client, auth, world, team_queue):
    auth.login("priya@example.com")
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    response = client.post("/take-next", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/items/{team_queue.first.ref}")


def test_take_next_with_nothing_left_says_so(client, auth, world):
    auth.login("priya@example.com")
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    response = client.post("/take-next", data={"csrf_token": token}, follow_redirects=True)
    assert "nothing left in your teams" in response.get_data(as_text=True)


def test_take_next_without_the_csrf_token_is_refused(client, auth, world, team_queue):
    auth.login("priya@example.com")
    response = client.post("/take-next", data={})
    assert response.status_code == 400
    assert "refused" in response.get_data(as_text=True)
