"""Four eyes on money on every path: the sequences a maker would use to get a refund over the
team's limit resolved without a checker all end in `awaiting_approval` or a refusal."""
from decimal import Decimal

import pytest
import sqlalchemy as sa

from queue_app.models import Approval, Event, SlaPolicy, WorkItem
from queue_app.services.approvals import decisions, stake
from queue_app.services.errors import Invalid
from queue_app.services.items import lifecycle, state
from tests.conftest import Auth, csrf_token_from
from tests.integration.test_approvals import (
    API,
    decide_by_api,
    refund,
    reload,
    resolve_by_api,
    world,  # noqa: F401  (the fixture)
)


def patch_fields(client, world, item, fields, email="maker@example.com"):
    return client.patch(f"{API}/items/{item.ref}/fields", headers=world.headers(email), json={"fields": fields})


def events(session, item, kind):
    return session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == kind)
                           .order_by(Event.id)).all()


@pytest.mark.parametrize("fields", [
    {"amount": None},  # cleared
    {"amount": "10.00"},  # lowered below the limit
    {"currency": "JPY"},  # the same figure in a currency worth far less (and no rate to convert it)
])
def test_lowering_clearing_or_recurrencing_the_amount_by_api_still_needs_a_checker(client, session, world, fields):
    item = refund(session, world, amount="5000.00")

    assert patch_fields(client, world, item, fields).status_code == 200
    response = resolve_by_api(client, world, item)

    assert response.status_code == 200 and response.get_json()["status"] == "awaiting_approval"
    approval = decisions.pending_approval(session, reload(session, item))
    assert approval.data["carried"][0][:2] == ["5000.00", "EUR"]  # the checker sees what it carried


@pytest.mark.parametrize("amount, message", [("-5000.00", "must be more than 0"), ("0", "must be more than 0")])
def test_a_negative_or_zero_refund_is_refused_with_a_field_error(client, session, world, amount, message):
    item = refund(session, world, amount="5000.00")

    response = patch_fields(client, world, item, {"amount": amount})

    assert response.status_code == 422
    assert message in response.get_json()["error"]["fields"]["fields.amount"]
    assert reload(session, item).amount == Decimal("5000.00")


def test_changing_type_or_team_does_not_lower_the_stake(client, session, world, make_team):
    item = refund(session, world, amount="5000.00")
    lenient = make_team(name="Lenient", work_types=["general"])  # no approval limit at all
    world.sup.teams.append(lenient)
    world.maker.teams.append(lenient)
    session.flush()

    lifecycle.reclassify(session, item, actor=world.sup, type="general", team=lenient)
    session.commit()

    assert (item.type, item.team_id) == ("general", lenient.id)
    assert stake.needs_approval(session, item)
    with pytest.raises(Invalid, match="approval"):  # the gate refuses, whichever path asks
        state.change_status(session, item, "resolved", actor=world.maker, check_access=False)
    lifecycle.change_status(session, item, "resolved", actor=world.maker)
    assert item.status == "awaiting_approval"


def test_editing_details_on_the_item_page_then_resolving_waits_for_a_checker(app, session, world):
    item = refund(session, world, amount="5000.00")
    web = app.test_client()
    Auth(web).login("maker@example.com")
    page = web.get(f"/items/{item.ref}").get_data(as_text=True)
    version = reload(session, item).version
    web.post(f"/items/{item.ref}/fields", data={"csrf_token": csrf_token_from(page), "version": version,
                                                 "seen_event": 0, "field-amount": "1.00", "field-currency": "EUR",
                                                 "field-order_number": "ORD-100234",
                                                 "field-purchase_date": "2026-11-01"})
    assert reload(session, item).amount == Decimal("1.00")
    page = web.get(f"/items/{item.ref}").get_data(as_text=True)

    web.post(f"/items/{item.ref}/status", data={"csrf_token": csrf_token_from(page),
                                                "version": reload(session, item).version, "seen_event": 0,
                                                "status": "resolved"})

    assert reload(session, item).status == "awaiting_approval"


def test_an_approval_is_void_when_what_it_approved_changes(client, session, world, make_team):
    item = refund(session, world, amount="750.00")
    assert resolve_by_api(client, world, item).get_json()["status"] == "awaiting_approval"
    other = make_team(name="Refunds B", work_types=["return"], approval_threshold=Decimal("500.00"))
    world.sup.teams.append(other)
    world.maker.teams.append(other)
    session.flush()

    # The team changes while the checker looks (a supervisor, or an SLA escalation, moves it).
    lifecycle.reclassify(session, reload(session, item), actor=world.sup, team=other)
    session.commit()

    item = reload(session, item)
    approval = session.scalars(sa.select(Approval).where(Approval.work_item_id == item.id)).one()
    assert (approval.status, item.status) == ("void", "open")
    assert events(session, item, "approval_voided")[0].data["changed"] == ["team_id"]
    assert decide_by_api(client, world, item, "checker@example.com").status_code in (404, 422)  # nothing to decide
    assert resolve_by_api(client, world, item).get_json()["status"] == "awaiting_approval"  # asked anew


def test_approving_checks_the_snapshot_even_when_a_change_slipped_past(client, session, world):
    item = refund(session, world, amount="750.00")
    resolve_by_api(client, world, item)
    # A write that no service made (a script, a future path): the amount under the approval changes.
    session.execute(sa.update(WorkItem).where(WorkItem.id == item.id).values(amount=Decimal("9000.00")))
    session.commit()

    response = decide_by_api(client, world, item, "checker@example.com")

    item = reload(session, item)
    assert response.status_code == 200 and item.status == "open"
    assert session.scalars(sa.select(Approval.status).where(Approval.work_item_id == item.id)).one() == "void"
    assert events(session, item, "approval_voided")[0].data["changed"] == ["amount"]


def test_an_approved_amount_is_the_new_start_and_raising_it_needs_a_new_approval(client, session, world):
    item = refund(session, world, amount="750.00")
    resolve_by_api(client, world, item)
    assert decide_by_api(client, world, item, "checker@example.com").get_json()["status"] == "resolved"
    item = reload(session, item)
    lifecycle.change_status(session, item, "open", actor=world.maker)
    lifecycle.update_fields(session, item, actor=world.maker, fields={"amount": "400.00"})
    session.commit()

    # 750 was approved: still the largest amount since the last approval, so still over 500.
    assert resolve_by_api(client, world, item).get_json()["status"] == "awaiting_approval"


def test_the_maker_cannot_be_made_a_checker_while_their_request_waits(client, session, world):
    item = refund(session, world, amount="750.00")
    resolve_by_api(client, world, item)

    with pytest.raises(Invalid, match="waiting for approvals"):
        decisions.set_checker(session, world.refunds, world.maker, actor=world.sup, enabled=True)


def test_the_clock_waits_with_the_item_unless_the_policy_lets_it_run(client, session, world):
    paused = refund(session, world, amount="750.00")
    resolve_by_api(client, world, paused)
    assert reload(session, paused).sla_state == "paused"

    session.add(SlaPolicy(name="Refunds run", match_team_id=world.refunds.id, first_response_minutes=60,
                          resolution_minutes=600, approval_wait="running"))
    session.commit()
    running = refund(session, world, amount="750.00")
    resolve_by_api(client, world, running)
    running = reload(session, running)
    assert running.status == "awaiting_approval" and running.sla_state in ("on_track", "at_risk")
    assert running.sla_next_due is not None


def test_the_checker_sees_what_is_approved_and_the_amounts_it_carried(app, client, session, world):
    item = refund(session, world, amount="5000.00")
    patch_fields(client, world, item, {"amount": "10.00"})
    resolve_by_api(client, world, item)
    web = app.test_client()
    Auth(web).login("checker@example.com")

    page = web.get(f"/items/{item.ref}").get_data(as_text=True)

    snapshot = page[page.index('id="approval-snapshot"'):]
    assert "10.00" in snapshot[:snapshot.index("</dl>")]
    carried = page[page.index('id="approval-carried"'):]
    carried = carried[:carried.index("</ul>")]
    assert "5000.00 EUR" in carried and "10.00 EUR" in carried


def test_a_pending_approval_warns_then_tells_its_checkers_it_is_overdue_once_each(client, session, world):
    from datetime import timedelta

    from queue_app.models import Notification, OutboxJob
    from queue_app.services.approvals import reminders

    world.refunds.approval_due_minutes = 60  # no calendar: round the clock
    session.commit()
    item = refund(session, world, amount="750.00")
    resolve_by_api(client, world, item)
    approval = decisions.pending_approval(session, reload(session, item))
    asked = approval.requested_at
    assert approval.due_at == asked + timedelta(minutes=60)
    timers = session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == reminders.REMIND_JOB)).all()
    assert sorted(t.run_at for t in timers) == [asked + timedelta(minutes=45), asked + timedelta(minutes=60)]

    assert reminders.remind(session, approval.id, asked + timedelta(minutes=44)) == []
    assert reminders.remind(session, approval.id, asked + timedelta(minutes=45)) == ["warning"]
    assert reminders.remind(session, approval.id, asked + timedelta(minutes=50)) == []  # a timer delivered twice
    assert reminders.remind(session, approval.id, asked + timedelta(minutes=61)) == ["overdue"]
    assert reminders.remind(session, approval.id, asked + timedelta(minutes=90)) == []
    session.commit()

    told = session.scalars(sa.select(Notification.to_address).where(Notification.work_item_id == item.id,
                                                                    Notification.subject.like("%approval%"))).all()
    # The supervisors and the designated checker, twice each; never the maker.
    assert sorted(told) == sorted(["sup@example.com", "sup2@example.com", "checker@example.com"] * 2)
    assert [e.kind for e in events(session, item, "approval_due_soon") + events(session, item, "approval_overdue")] \
        == ["approval_due_soon", "approval_overdue"]


def test_a_decided_approval_sends_no_reminder_and_the_sweep_finds_what_timers_missed(app, client, session, world):
    from datetime import timedelta

    from queue_app.services.approvals import reminders
    from workers import approvals as approval_jobs

    world.refunds.approval_due_minutes = 30
    session.commit()
    decided, waiting = refund(session, world, amount="750.00"), refund(session, world, amount="800.00")
    resolve_by_api(client, world, decided)
    resolve_by_api(client, world, waiting)
    decide_by_api(client, world, decided, "checker@example.com")
    later = decisions.pending_approval(session, reload(session, waiting)).requested_at + timedelta(hours=1)

    assert reminders.overdue_ids(session, later) == [decisions.pending_approval(session, waiting).id]
    assert approval_jobs.sweep(later) == 1
    assert approval_jobs.sweep(later) == 0  # nothing twice
    assert [e.kind for e in events(session, reload(session, decided), "approval_overdue")] == []
