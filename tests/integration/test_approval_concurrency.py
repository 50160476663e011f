"""Two decisions on one pending approval at the same moment: one is recorded, the other is refused.

Two checkers (or one checker clicking twice) decide the same request at once. Each side runs in
its own thread with its own session and connection, on the test run's SQLite file or on
PostgreSQL. In the service tests both sides have read the approval as pending before either
writes (a barrier just after the read), which is the race a plain barrier before the call only
sometimes produces. The API test sends the two requests at once through the test client.
"""
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from queue_app.models import Approval, Event, User, WorkItem
from queue_app.services.approvals import decisions
from queue_app.services.errors import Conflict, DomainError
from queue_app.services.items import lifecycle
from tests.integration.test_approvals import API, World, refund
from tests.integration.test_assignment_concurrency import run_threads


@pytest.fixture
def world(session, make_team, make_user):
    return World(session, make_team, make_user)


@pytest.fixture
def waiting(session, world):
    """A refund above the limit, asked for by the maker: awaiting approval. Returns its id."""
    item = refund(session, world)
    lifecycle.change_status(session, item, "resolved", actor=world.maker)
    session.commit()
    assert item.status == "awaiting_approval"
    return item.id


@pytest.fixture
def both_read_first(monkeypatch):
    """Each decision waits, after reading the pending approval, until the other has read it too."""
    barrier = threading.Barrier(2)
    read = decisions.pending_approval

    def pending_then_wait(session, item):
        approval = read(session, item)
        barrier.wait(timeout=30)
        return approval

    monkeypatch.setattr(decisions, "pending_approval", pending_then_wait)


def decider(app, db, item_id, user_id, outcomes, *, approve, comment=None):
    """A thread's work: decide in a session of its own and commit; record what came of it."""
    def run():
        with Session(db.engine) as own:
            item, actor = own.get(WorkItem, item_id), own.get(User, user_id)
            try:
                decisions.decide(own, item, actor=actor, approve=approve, comment=comment)
                own.commit()
                outcomes.append(("decided", actor.email))
            except DomainError as exc:
                own.rollback()
                outcomes.append((exc, actor.email))
    return run


def decided_once(session, item_id):
    """The approval was decided once, with one event, and the item is where that decision put it."""
    session.expire_all()
    [approval] = session.scalars(sa.select(Approval).where(Approval.work_item_id == item_id)).all()
    events = session.scalars(sa.select(Event).where(Event.work_item_id == item_id,
                                                    Event.kind == "approval_decided")).all()
    assert len(events) == 1
    assert events[0].data["decision"] == approval.status
    item = session.get(WorkItem, item_id)
    assert (approval.status, item.status) in (("approved", "resolved"), ("rejected", "open"))
    return approval, events[0], item


def refused(outcomes):
    """Exactly one side decided; the other got a domain error saying someone else did."""
    done = [who for what, who in outcomes if what == "decided"]
    errors = [what for what, _ in outcomes if what != "decided"]
    assert len(done) == 1 and len(errors) == 1, outcomes
    [error] = errors
    assert isinstance(error, Conflict), repr(error)
    assert "decided by someone else" in error.message
    return done[0], error


def test_two_checkers_deciding_at_once_one_decision_is_recorded(app, db, session, world, waiting, both_read_first):
    outcomes = []
    run_threads(app, decider(app, db, waiting, world.checker.id, outcomes, approve=True),
                decider(app, db, waiting, world.sup.id, outcomes, approve=False, comment="No receipt"))

    winner, _ = refused(outcomes)
    approval, event, item = decided_once(session, waiting)
    assert approval.decided_by.email == event.actor_label == winner
    assert approval.status == ("approved" if winner == "checker@example.com" else "rejected")


def test_the_same_checker_approving_twice_at_once_is_recorded_once(app, db, session, world, waiting,
                                                                   both_read_first):
    outcomes = []
    run_threads(app, decider(app, db, waiting, world.checker.id, outcomes, approve=True),
                decider(app, db, waiting, world.checker.id, outcomes, approve=True))

    refused(outcomes)
    approval, _, item = decided_once(session, waiting)
    assert (approval.status, item.status, approval.decided_by_id) == ("approved", "resolved", world.checker.id)
    changes = session.scalars(sa.select(Event).where(Event.work_item_id == waiting, Event.kind == "status_changed"))
    assert [e.data["to"] for e in changes].count("resolved") == 1


def test_two_api_decisions_at_once_one_200_and_a_refusal_not_a_500(app, session, world, waiting):
    ref = session.get(WorkItem, waiting).ref
    start = threading.Barrier(2)
    responses = []

    def post(email, body):
        def run():
            client = app.test_client()
            start.wait(timeout=30)
            response = client.post(f"{API}/items/{ref}/approval", headers=world.headers(email), json=body)
            responses.append((response.status_code, response.get_json()))
        return run

    run_threads(app, post("checker@example.com", {"decision": "approve"}),
                post("sup@example.com", {"decision": "reject", "comment": "No receipt"}))

    codes = sorted(code for code, _ in responses)
    assert codes[0] == 200 and codes[1] in (409, 422), responses  # 422: it came after the decision
    [(_, refusal)] = [(c, body) for c, body in responses if c != 200]
    assert refusal["error"]["code"] in ("conflict", "invalid")
    assert "decided by someone else" in refusal["error"]["message"] or \
        "has no pending approval" in refusal["error"]["message"]
    decided_once(session, waiting)
