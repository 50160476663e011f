"""Checks run by real RQ workers on the real Redis: after commit, retried with backoff on a
transient failure, within the queue's time limit, and by a forked `flask worker` process.

Redis database 15 of REDIS_URL, flushed around each test (fixtures of test_workers.py).
"""
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.scheduler import RQScheduler

from queue_app.models import CheckResult, Event, OutboxJob, User, WorkItem
from queue_app.services.checks import runner
from queue_app.services.checks.rules import (
    CHECKS,
    CHECKS_BY_TYPE,
    CheckDefinition,
    CheckOutcome,
    TransientCheckError,
)
from queue_app.services.items import attachments, lifecycle
from tests.check_files import TINY_JPEG, attach, encrypted_pdf, pdf
from tests.integration.test_workers import ROOT, run_burst
from workers.queues import JOB_TIMEOUTS, RETRY_INTERVALS


def results(session, item_id):
    session.expire_all()
    rows = session.scalars(sa.select(CheckResult).where(CheckResult.work_item_id == item_id)
                           .order_by(CheckResult.id)).all()
    return rows


def statuses(session, item_id):
    return {r.name: r.status for r in results(session, item_id)}


def check_jobs(session):
    session.expire_all()
    return [f"outbox-{row.id}" for row in session.scalars(
        sa.select(OutboxJob).where(OutboxJob.job_path == runner.RUN_JOB).order_by(OutboxJob.id))]


@pytest.fixture
def doc_team(make_team):
    return make_team(name="Documents", work_types=["document_verification"])


@pytest.fixture
def supervisor(make_user, doc_team):
    return make_user(email="sup@example.com", role="supervisor", teams=[doc_team])


def new_document_item(session, team, number="X1234567"):
    return lifecycle.create_item(session, actor=None, source="api", type="document_verification",
                                  subject="Passport check", team=team, requester_email="ann@example.com",
                                  fields={"document_type": "passport", "document_number": number,
                                          "expires_on": "2031-05-01"})


def test_checks_run_on_a_worker_after_commit_and_again_when_a_file_arrives(session, rconn, deliver_on_commit,
                                                                            doc_team, supervisor):
    item = new_document_item(session, doc_team)
    session.commit()
    item_id, supervisor_id = item.id, supervisor.id
    assert Queue("checks", connection=rconn).count == 1

    run_burst(rconn, "checks")

    assert statuses(session, item_id)["document_attached"] == "failed"
    assert session.get(WorkItem, item_id).needs_attention is True

    item = session.get(WorkItem, item_id)  # the job's context ended the test's session: load again
    attachments.attach_file(session, item, actor=session.get(User, supervisor_id), filename="passport.pdf",
                            data=pdf())
    session.commit()
    run_burst(rconn, "checks")

    latest = {r.name: r for r in runner.latest_results(session, session.get(WorkItem, item_id))}
    assert {name: r.status for name, r in latest.items()} == {
        "required_fields": "passed", "document_attached": "passed", "document_file_type": "passed",
        "document_pdf": "passed", "document_image": "passed", "document_size": "passed",
        "document_expiry": "passed", "document_number": "passed", "duplicate_document": "passed"}
    assert len({r.run_key for r in latest.values()}) == 1
    assert session.get(WorkItem, item_id).needs_attention is False
    kinds = [e.kind for e in session.scalars(sa.select(Event).where(Event.work_item_id == item_id)
                                             .order_by(Event.id))]
    assert kinds.count("check_result") == 18 and "attention_needed" in kinds and "attention_cleared" in kinds


def test_an_encrypted_pdf_and_a_jpeg_named_pdf_on_the_worker(session, rconn, deliver_on_commit, doc_team):
    locked = new_document_item(session, doc_team)
    attach(session, locked, "passport.pdf", encrypted_pdf())
    renamed = new_document_item(session, doc_team, number="Y7654321")
    attach(session, renamed, "passport.pdf", TINY_JPEG)
    session.commit()
    locked_id, renamed_id = locked.id, renamed.id

    run_burst(rconn, "checks")

    assert statuses(session, locked_id)["document_pdf"] == "failed"
    assert session.get(WorkItem, locked_id).needs_attention is True
    assert statuses(session, renamed_id)["document_file_type"] == "warning"
    assert session.get(WorkItem, renamed_id).needs_attention is False


def test_jobs_carry_the_queue_time_limit_and_retry_policy(session, rconn, deliver_on_commit, doc_team):
    new_document_item(session, doc_team)
    session.commit()

    [job_id] = check_jobs(session)
    job = Job.fetch(job_id, connection=rconn)

    assert job.timeout == JOB_TIMEOUTS["checks"]
    assert job.retries_left == len(RETRY_INTERVALS["checks"])
    assert job.retry_intervals == RETRY_INTERVALS["checks"]


@pytest.fixture
def flaky_check(monkeypatch):
    """A check of general items that raises TransientCheckError while `failures` is above 0."""
    state = {"failures": 1, "calls": 0}

    def flaky(ctx):
        state["calls"] += 1
        if state["failures"] > 0:
            state["failures"] -= 1
            raise TransientCheckError("the registry did not answer")
        return CheckOutcome("passed", "answered")

    monkeypatch.setitem(CHECKS, "flaky", CheckDefinition(name="flaky", func=flaky))
    monkeypatch.setitem(CHECKS_BY_TYPE, "general", ["required_fields", "flaky"])
    return state


def test_a_transient_failure_is_retried_with_backoff_and_then_passes(session, rconn, deliver_on_commit, make_item,
                                                                    flaky_check):
    item = make_item(type="general")
    session.commit()
    item_id = item.id
    [job_id] = check_jobs(session)
    started = datetime.now(timezone.utc)

    run_burst(rconn, "checks")

    # The first attempt failed: nothing stored, the job waits in the scheduled registry for its retry.
    assert flaky_check["calls"] == 1 and results(session, item_id) == []
    queue = Queue("checks", connection=rconn)
    registry = ScheduledJobRegistry(queue=queue)
    assert registry.get_job_ids() == [job_id]
    retry_at = registry.get_scheduled_time(job_id)
    first_interval = RETRY_INTERVALS["checks"][0]
    assert started + timedelta(seconds=first_interval - 1) <= retry_at <= \
        datetime.now(timezone.utc) + timedelta(seconds=first_interval + 1)
    job = Job.fetch(job_id, connection=rconn)
    assert job.get_status() == "scheduled" and job.retries_left == len(RETRY_INTERVALS["checks"]) - 1

    # Move time on for the scheduler: the job is due now, RQ's scheduler puts it back on the queue.
    registry.schedule(job, datetime.now(timezone.utc) - timedelta(seconds=1))
    scheduler = RQScheduler([queue], connection=rconn)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()
    assert queue.get_job_ids() == [job_id]

    run_burst(rconn, "checks")

    assert flaky_check["calls"] == 2
    assert Job.fetch(job_id, connection=rconn).get_status() == "finished"
    assert statuses(session, item_id) == {"required_fields": "passed", "flaky": "passed"}
    assert session.scalar(sa.select(sa.func.count()).select_from(Event).where(
        Event.work_item_id == item_id, Event.kind == "check_result")) == 2


def test_a_failure_that_outlasts_the_retries_is_stored_as_an_error(session, rconn, deliver_on_commit, make_item,
                                                                   flaky_check, monkeypatch):
    monkeypatch.setitem(RETRY_INTERVALS, "checks", [0, 0])  # retry at once, so one burst sees every attempt
    flaky_check["failures"] = 99
    item = make_item(type="general")
    session.commit()
    item_id = item.id
    [job_id] = check_jobs(session)

    run_burst(rconn, "checks")

    assert flaky_check["calls"] == 3  # the first attempt and two retries
    assert Job.fetch(job_id, connection=rconn).get_status() == "finished"
    assert FailedJobRegistry(queue=Queue("checks", connection=rconn)).get_job_ids() == []
    [flaky] = [r for r in results(session, item_id) if r.name == "flaky"]
    assert flaky.status == "error" and "even after retries: the registry did not answer" in flaky.message


def test_the_rerun_endpoint_runs_every_check_again_on_the_worker(client, session, rconn, deliver_on_commit,
                                                                 doc_team, supervisor):
    from queue_app.services.people.users import issue_api_token

    token = issue_api_token(session, supervisor)
    item = new_document_item(session, doc_team)
    session.commit()
    ref, item_id = item.ref, item.id
    run_burst(rconn, "checks")
    before = len(results(session, item_id))

    response = client.post(f"/api/v1/items/{ref}/checks/run", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 202
    run = response.get_json()["run"]
    run_burst(rconn, "checks")
    rows = results(session, item_id)
    assert len(rows) == before * 2
    assert {r.run_key for r in rows[before:]} == {run}
    listed = client.get(f"/api/v1/items/{ref}/checks", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert {c["run"] for c in listed["checks"]} == {run}
    assert [c["name"] for c in listed["checks"]] == CHECKS_BY_TYPE["document_verification"]


def test_two_forked_worker_processes_share_the_checks(app, session, rconn, worker_redis_url, deliver_on_commit,
                                                      doc_team, tmp_path):
    ids = []
    for n in range(6):
        item = new_document_item(session, doc_team, number=f"P{n:07d}")
        attach(session, item, f"scan{n}.pdf", pdf(pages=1 + n % 3, padding=n + 1))  # distinct files
        ids.append(item.id)
    session.commit()
    env = dict(os.environ, BACKDESK_ENV="testing", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
               REDIS_URL=worker_redis_url, BACKDESK_INSTANCE_DIR=str(tmp_path), LOG_LEVEL="INFO")
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "checks", "--burst"]

    procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert Queue("checks", connection=rconn).count == 0
    for item_id in ids:
        assert set(statuses(session, item_id).values()) == {"passed"}, statuses(session, item_id)
        assert len(results(session, item_id)) == len(CHECKS_BY_TYPE["document_verification"])
