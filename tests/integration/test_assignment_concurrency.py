"""Two arrivals at once for an executive with one free slot: exactly one gets it.

Each side runs in its own thread with its own session and database connection, on the
file SQLite database of the test run or on PostgreSQL when DATABASE_URL points there.
"""
import threading
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from queue_app.models import Team, User, WorkItem
from queue_app.models.work_item import OPEN_STATUSES
from queue_app.services.assignment import auto
from queue_app.services.items import lifecycle, state

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
HOLD_SECONDS = 0.5


@pytest.fixture
def one_free_slot(session, make_team, make_user, make_item):
    """An executive with capacity 2 and one open item; a least-loaded team."""
    team = make_team(name="Returns", work_types=["return"])
    ann = make_user(email="ann@example.com", teams=[team], capacity=2)
    first = make_item(team=team, now=NOW)
    state.assign(session, first, ann, actor=None, now=NOW, check_access=False)
    team.auto_assign = "least_loaded"
    session.commit()
    return team.id, ann.id


def open_load(session, user_id):
    session.expire_all()
    return session.scalar(sa.select(sa.func.count()).where(WorkItem.assignee_id == user_id,
                                                           WorkItem.status.in_(OPEN_STATUSES)))


def run_threads(app, *targets):
    errors = []

    def wrap(target):
        def run():
            with app.app_context():
                try:
                    target()
                except BaseException as exc:  # noqa: BLE001 - reported by the test below
                    errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


def test_two_arrivals_at_once_fill_the_last_slot_once(app, db, session, one_free_slot):
    team_id, ann_id = one_free_slot
    start = threading.Barrier(2)
    created = []

    def arrival(n):
        def run():
            with Session(db.engine) as own:
                team = own.get(Team, team_id)
                start.wait()
                item = lifecycle.create_item(own, actor=None, source="api", type="return", subject=f"arrival {n}",
                                              fields={}, require_fields=False, team=team, now=NOW)
                created.append((item.id, item.assignee_id))
                own.commit()
        return run

    run_threads(app, arrival(1), arrival(2))
    assert sorted(assignee is not None for _, assignee in created) == [False, True]
    assert open_load(session, ann_id) == 2


def test_the_lock_makes_the_second_assigner_count_the_firsts_item(app, db, session, one_free_slot, make_item):
    """The first assigner holds its lock for a while before committing; without the lock the
    second would count the old load (1 of 2) and take the executive over capacity."""
    team_id, ann_id = one_free_slot
    team = session.get(Team, team_id)
    team.auto_assign = "manual"  # the two items arrive unassigned
    ids = [make_item(team=team, now=NOW).id for _ in range(2)]
    team.auto_assign = "least_loaded"
    session.commit()
    locked = threading.Event()
    results = {}

    def first():
        with Session(db.engine) as own:
            chosen = auto.auto_assign(own, own.get(WorkItem, ids[0]), NOW)
            results["first"] = chosen.id if chosen else None
            locked.set()
            threading.Event().wait(HOLD_SECONDS)  # still uncommitted: the second must wait for us
            own.commit()

    def second():
        assert locked.wait(30)
        with Session(db.engine) as own:
            results["second"] = auto.auto_assign(own, own.get(WorkItem, ids[1]), NOW)
            own.commit()

    run_threads(app, first, second)
    assert results == {"first": ann_id, "second": None}
    assert open_load(session, ann_id) == 2
    assert session.get(WorkItem, ids[1]).assignee_id is None


def test_many_arrivals_at_once_never_exceed_capacity(app, db, session, make_team, make_user):
    team = make_team(name="Returns", work_types=["return"])
    people = [make_user(email=f"e{n}@example.com", teams=[team], capacity=3) for n in range(2)]
    team.auto_assign = "round_robin"
    session.commit()
    team_id = team.id
    start = threading.Barrier(8)

    def arrival(n):
        def run():
            start.wait()
            with Session(db.engine) as own:
                lifecycle.create_item(own, actor=None, source="api", type="return", subject=f"arrival {n}",
                                       fields={}, require_fields=False, team=own.get(Team, team_id),
                                       now=NOW)
                own.commit()
        return run

    run_threads(app, *(arrival(n) for n in range(8)))
    loads = [open_load(session, p.id) for p in people]
    assert loads == [3, 3]
    assert session.scalar(sa.select(sa.func.count()).where(WorkItem.assignee_id.is_(None))) == 2
    assert session.scalar(sa.select(sa.func.max(User.capacity))) == 3  # the lock changed nothing
