"""The checks framework: the registry per work type, one result per run, events, errors and
transient failures, needs_attention from mandatory checks only, and what enqueues a run."""
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from queue_app.models import CheckResult, Event, OutboxJob, WorkItem
from queue_app.models.work_item import TYPES
from queue_app.services.checks import runner
from queue_app.services.checks.rules import (
    CHECKS,
    CHECKS_BY_TYPE,
    CheckDefinition,
    CheckOutcome,
    TransientCheckError,
)
from queue_app.services.errors import Invalid, PermissionDenied
from queue_app.services.items import attachments, lifecycle
from tests.check_files import EXE_LIKE, pdf

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def events(session, item, kind):
    return session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == kind)
                           .order_by(Event.id)).all()


def outbox(session, job_path=runner.RUN_JOB):
    return session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == job_path).order_by(OutboxJob.id)).all()


def reload(session, item):
    session.expire_all()
    return session.get(WorkItem, item.id)


@pytest.fixture
def register(monkeypatch):
    """Add a check to the registry and to a type's list for one test."""
    def add(name, func, work_type="general", mandatory=True):
        monkeypatch.setitem(CHECKS, name, CheckDefinition(name=name, func=func, mandatory=mandatory))
        monkeypatch.setitem(CHECKS_BY_TYPE, work_type, [*CHECKS_BY_TYPE[work_type], name])
    return add


def test_every_work_type_has_registered_checks_starting_with_required_fields():
    assert set(CHECKS_BY_TYPE) == set(TYPES)
    for work_type, names in CHECKS_BY_TYPE.items():
        assert names[0] == "required_fields"
        assert len(set(names)) == len(names)
        assert all(name in CHECKS for name in names), work_type
    assert CHECKS["duplicate_document"].mandatory is False and CHECKS["document_pdf"].mandatory is True


def test_an_outcome_has_one_of_four_statuses():
    with pytest.raises(ValueError):
        CheckOutcome("pending", "not a result")


def test_each_result_is_stored_once_per_run_and_written_as_an_event(session, make_item):
    item = make_item(type="general", now=NOW)

    first = runner.run_checks(session, item.id, now=NOW)
    again = runner.run_checks(session, item.id, now=NOW)  # a re-delivered job

    assert [r.id for r in first] == [r.id for r in again]
    assert [(r.name, r.status, r.run_key, r.item_version) for r in first] == [
        ("required_fields", "passed", f"v{item.version}", item.version)]
    [event] = events(session, item, "check_result")
    assert event.actor_label == "worker"
    assert event.data == {"check": "required_fields", "status": "passed",
                          "message": "All required fields are present and well-formed", "run": f"v{item.version}"}

    rerun = runner.run_checks(session, item.id, run_key="rerun-abc", now=NOW)  # a re-run runs afresh
    assert rerun[0].id != first[0].id
    assert session.scalar(sa.select(sa.func.count()).select_from(CheckResult)) == 2


def test_a_crashing_check_is_stored_as_an_error_and_the_others_still_run(session, make_item, register):
    def broken(ctx):
        raise KeyError("boom")

    register("broken", broken)
    register("fine", lambda ctx: CheckOutcome("passed", "fine"))
    item = make_item(type="general")

    results = {r.name: r for r in runner.run_checks(session, item.id)}

    assert results["broken"].status == "error" and results["broken"].message == "The check crashed: KeyError: 'boom'"
    assert results["fine"].status == "passed"
    assert reload(session, item).needs_attention is False  # an error is not a failed check


def test_a_transient_failure_goes_up_for_a_retry_and_is_an_error_only_on_the_last_attempt(session, make_item,
                                                                                          register):
    def flaky(ctx):
        raise TransientCheckError("the rates service timed out")

    register("flaky", flaky)
    item = make_item(type="general")
    session.commit()

    with pytest.raises(TransientCheckError):
        runner.run_checks(session, item.id, final_attempt=False)
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(CheckResult)) == 0

    results = {r.name: r for r in runner.run_checks(session, item.id, final_attempt=True)}
    assert results["flaky"].status == "error"
    assert results["flaky"].message == "The check could not run, even after retries: the rates service timed out"
    assert results["flaky"].data == {"transient": True}


def test_only_a_failed_mandatory_check_marks_the_item_and_a_pass_clears_it(session, make_team, make_user):
    team = make_team(work_types=["return"])
    user = make_user(role="supervisor", teams=[team])
    item = lifecycle.create_item(
        session, actor=user, source="api", type="return", subject="Return", team=team, now=NOW,
        fields={"order_number": "ORD/77", "purchase_date": "2026-11-20", "amount": "10.00", "currency": "EUR"})

    results = {r.name: r for r in runner.run_checks(session, item.id, now=NOW)}

    assert results["order_number_format"].status == "failed"
    assert reload(session, item).needs_attention is True
    [raised] = events(session, item, "attention_needed")
    assert raised.data == {"failed_checks": ["order_number_format"]}

    item = reload(session, item)
    lifecycle.update_fields(session, item, actor=user, fields={"order_number": "ORD-7700"}, now=NOW)
    runner.run_checks(session, item.id, now=NOW)

    assert reload(session, item).needs_attention is False
    [cleared] = events(session, item, "attention_cleared")
    assert cleared.data == {"failed_checks": []}


def test_a_failed_check_that_is_not_mandatory_does_not_mark_the_item(session, make_item, register):
    register("advice", lambda ctx: CheckOutcome("failed", "just advice"), mandatory=False)
    item = make_item(type="general")

    runner.run_checks(session, item.id)

    assert reload(session, item).needs_attention is False


def test_marking_attention_does_not_change_the_items_version(session, make_item):
    item = lifecycle.create_item(session, actor=None, source="api", type="return", subject="x", fields={},
                                  team=make_item().team, require_fields=False)
    version = item.version

    runner.run_checks(session, item.id)

    item = reload(session, item)
    assert item.needs_attention is True and item.version == version


def test_creation_a_field_change_and_a_new_file_each_enqueue_the_checks(session, make_item, make_user):
    item = make_item(type="document_verification")
    user = make_user(role="supervisor", teams=[item.team])
    assert len(outbox(session)) == 1

    lifecycle.update_fields(session, item, actor=user, fields={"document_number": "Y7654321"})
    assert len(outbox(session)) == 2
    [changed] = events(session, item, "fields_changed")
    assert changed.data == {"document_number": ["X1234567", "Y7654321"]}

    lifecycle.update_fields(session, item, actor=user, fields={"document_number": "Y7654321"})
    assert len(outbox(session)) == 2  # nothing changed, nothing to check

    attachment = attachments.attach_file(session, item, actor=user, filename="../scan.pdf", data=pdf())
    assert len(outbox(session)) == 3
    assert (attachment.filename, attachment.content_type) == ("scan.pdf", "application/pdf")
    [added] = events(session, item, "attachment_added")
    assert added.data["filename"] == "scan.pdf" and added.data["sha256"] == attachment.sha256
    assert all(row.args[0] == item.id for row in outbox(session))


def test_field_changes_are_validated_and_need_the_right_to_work(session, make_item, make_user):
    item = make_item(type="return")
    stranger = make_user(teams=[item.team])  # a team member, but not the assignee

    with pytest.raises(PermissionDenied):
        lifecycle.update_fields(session, item, actor=stranger, fields={"amount": "1.00"})
    supervisor = make_user(role="supervisor", teams=[item.team])
    with pytest.raises(Invalid) as refused:
        lifecycle.update_fields(session, item, actor=supervisor, fields={"amount": "1.005", "colour": "red"})
    assert set(refused.value.fields) == {"fields.amount", "fields.colour"}


def test_executables_are_not_accepted_as_files(session, make_item, make_user):
    item = make_item(type="document_verification")
    user = make_user(role="supervisor", teams=[item.team])

    with pytest.raises(Invalid):
        attachments.attach_file(session, item, actor=user, filename="passport.pdf", data=EXE_LIKE)


def test_a_rerun_is_recorded_and_enqueued_with_its_own_key(session, make_item, make_user):
    item = make_item(type="general")
    user = make_user(teams=[item.team])

    key, names = runner.request_rerun(session, item, actor=user)

    assert key.startswith("rerun-") and names == ["required_fields"]
    assert outbox(session)[-1].args == [item.id, item.version, key]
    [event] = events(session, item, "checks_requested")
    assert event.actor_label == user.email and event.data == {"run": key, "checks": ["required_fields"]}
    results = runner.run_checks(session, item.id, run_key=key)
    assert results[0].run_key == key


def test_the_panel_lists_every_check_of_the_type_with_the_latest_result(session, make_item):
    item = make_item(type="return", now=NOW)
    runner.run_check(session, item.id, "required_fields", now=NOW)

    rows = runner.results_for_display(session, item)

    assert [r.name for r in rows] == CHECKS_BY_TYPE["return"]
    assert [r.status for r in rows] == ["passed", "pending", "pending", "pending", "pending"]
    assert [r.mandatory for r in rows] == [True, True, True, False, False]
    assert [r.name for r in runner.latest_results(session, item)] == ["required_fields"]
