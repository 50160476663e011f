"""Nothing that must happen is lost, even when Redis is: completion, the reconciler, mail at most once.

These tests use the Redis database REDIS_URL names (not database 15 or 14 of the other worker
tests), emptied before and after each test. "Redis loses everything" is a FLUSHDB of that
database: for Backdesk, which uses one database, that is what FLUSHALL, a restart without the
append-only file or a failover to an empty replica does, and it leaves the other databases of a
shared server alone. Worker and scheduler processes are real `flask --app wsgi ...` children
(tests.integration.test_sla_timers.Procs), each in a process group of its own so a SIGKILL takes
the worker, its RQ scheduler and any work horse at once.
"""
import email
import email.policy
import os
import signal
import socket
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.utils import utcformat

from queue_app.db.outbox import enqueue_after_commit
from queue_app.extensions import db
from queue_app.models import (
    CheckResult,
    Event,
    InboundEmail,
    Message,
    Notification,
    OutboxJob,
    SlaEscalation,
    WorkItem,
)
from queue_app.models.base import utcnow
from queue_app.services.checks import runner as checks_runner
from queue_app.services.intake import filing, mailboxes
from queue_app.services.items import lifecycle
from queue_app.services.people import notifications
from queue_app.services.sla import policies
from tests.factories import make_policy
from tests.integration import outbox_jobs
from tests.integration.conftest import app_on_redis
from tests.integration.test_smtp_intake import make_email
from tests.integration.conftest import Procs, wait_for
from tests.integration.test_workers import run_burst
from workers import reconciler
from workers.mail_out import DeliveryFailed, SendInProgress, send_message
from workers.queues import get_queue

MAILBOX = "returns@backdesk.example.com"
LEASE = 3  # seconds: OUTBOX_LEASE_SECONDS of the child processes (their workers beat every second, so a
# beat may come up to 2 s late on a loaded machine before a live worker is taken for a dead one)
FAST = dict(OUTBOX_LEASE_SECONDS=LEASE, OUTBOX_RECONCILE_SECONDS=1, OUTBOX_RELAY_SECONDS=1,
            SLA_SWEEP_SECONDS=3600, INTAKE_POLL_SECONDS=3600, SMTP_HOST="")


# --- fixtures and helpers ----------------------------------------------------------------

@pytest.fixture
def own_redis(app, redis_url):
    """The Redis database of REDIS_URL, empty, used by the app (hand-over on commit) too."""
    with app_on_redis(app, redis_url) as conn:
        yield conn


@pytest.fixture
def procs(app, own_redis, redis_url, tmp_path):
    (tmp_path / "instance").mkdir()
    started = Procs(app, redis_url, tmp_path)
    yield started
    started.stop_all()


def lose_everything(conn):
    conn.flushdb()
    assert conn.dbsize() == 0


def rows(session, job_path=None):
    session.expire_all()
    query = sa.select(OutboxJob).order_by(OutboxJob.id)
    if job_path:
        query = query.where(OutboxJob.job_path == job_path)
    return session.scalars(query).all()


def near_timers(session):
    return [row for row in rows(session, policies.TIMER_JOB) if row.run_at < utcnow() + timedelta(minutes=5)]


def rq_status(conn, row):
    try:
        return Job.fetch(row.rq_job_id, connection=conn).get_status()
    except Exception:
        return None


def start_scheduler(procs):
    scheduler = procs.flask("scheduler", "scheduler", **FAST)
    wait_for(lambda: "scheduler running" in scheduler.output(), 30, "the scheduler to start", procs, [scheduler])
    return scheduler


def start_worker(procs, conn, *args, name="worker"):
    """`flask worker ARGS` (with RQ's scheduler); returns once it listens."""
    before = set(conn.smembers("rq:workers"))
    worker = procs.flask(name, "worker", *args, **FAST)
    wait_for(lambda: set(conn.smembers("rq:workers")) - before, 30, f"{name} to start", procs, [worker])
    return worker


class Transactions:
    """The SQL statements of each database transaction, as ("commit" | "rollback", [statements])."""

    def __init__(self, engine):
        self.engine, self.open, self.done = engine, {}, []

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self._statement)
        sa.event.listen(self.engine, "commit", self._commit)
        sa.event.listen(self.engine, "rollback", self._rollback)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._statement)
        sa.event.remove(self.engine, "commit", self._commit)
        sa.event.remove(self.engine, "rollback", self._rollback)

    def _statement(self, conn, cursor, statement, *args):
        self.open.setdefault(id(conn), []).append(" ".join(statement.split()))

    def _commit(self, conn):
        self.done.append(("commit", self.open.pop(id(conn), [])))

    def _rollback(self, conn):
        self.done.append(("rollback", self.open.pop(id(conn), [])))

    def containing(self, *kinds):
        """The transactions with a statement of each kind (a tuple of fragments one statement contains)."""
        return [(end, statements) for end, statements in self.done
                if all(any(all(f in s for f in kind) for s in statements) for kind in kinds)]


RESULT_WRITTEN = ("INSERT INTO check_results",)
EVENT_WRITTEN = ("INSERT INTO events",)
COMPLETION_WRITTEN = ("UPDATE outbox_jobs SET", "completed_at=")


# --- 1. Redis loses everything: each job runs once, mail goes out once, the timer on time --

def test_after_redis_loses_everything_every_job_runs_once_and_the_timer_fires_on_time(
        app, session, own_redis, deliver_on_commit, procs, make_team, make_user, make_item):
    team = make_team(name="Returns", work_types=["general", "return"])
    supervisor = make_user(role="supervisor", teams=[team], email="sup@example.com")
    executive = make_user(teams=[team], email="exec@example.com")
    make_policy(session, name="One minute", first_response_minutes=1, resolution_minutes=600, warn_at_percent=75,
                match_type="general")
    box = mailboxes.create_mailbox(session, address=MAILBOX, type="return", team_name=team.name)
    session.commit()

    # Every job kind, committed and handed to Redis: a check run, an SLA timer ~12 s ahead (the
    # warning at 45 s of a one-minute target), a reply (on another item: a reply is a first
    # response), a notification, an intake processing job and a recalculation.
    item = make_item(team=team, type="general", assignee=executive, now=utcnow() - timedelta(seconds=33))
    answered = make_item(team=team, type="return")
    reply = lifecycle.add_reply(session, answered, actor=supervisor, body="We are on it.")
    notifications.notify(session, item, [executive], "Heads up", "Please look at this one.", utcnow(), kind="sla")
    inbound = filing.receive(session, make_email(subject="Kettle broken", message_id="<kettle@mail.example.com>"),
                             source="smtp", envelope_to=[MAILBOX], mailbox=box)
    enqueue_after_commit(session, "workers.intake_jobs.process_inbound", inbound.id)
    enqueue_after_commit(session, "workers.sla_timers.recalculate_open_items")
    session.commit()
    item_id, reply_id, inbound_id = item.id, reply.id, inbound.id
    warning_at = {kind: at for _, at, kind, _, _ in policies.steps(item, "first_response", item.first_response_due)
                  }["warning"]
    before = rows(session)
    kinds = {row.job_path for row in before}
    assert {"workers.checks.run_checks", "workers.sla_timers.fire_sla_timer", "workers.mail_out.send_message",
            "workers.mail_out.send_notification", "workers.intake_jobs.process_inbound",
            "workers.sla_timers.recalculate_open_items"} <= kinds
    [timer] = [row for row in before if row.job_path == policies.TIMER_JOB and row.args[0] == item_id]
    assert timer.run_at == warning_at and timer.run_at > utcnow() + timedelta(seconds=8)
    assert all(row.enqueued_at is not None and row.completed_at is None for row in before)
    assert {rq_status(own_redis, row) for row in before} == {"queued", "scheduled"}

    lose_everything(own_redis)
    lost_at = time.monotonic()
    worker = start_worker(procs, own_redis)
    scheduler = start_scheduler(procs)

    outbox_dir = procs.tmp_path / "instance" / "outbox"
    first_seen = {}  # file name -> (mtime_ns, size) when first seen: a second write would change it

    def watch_files():
        for path in outbox_dir.glob("*.eml") if outbox_dir.exists() else []:
            stat = path.stat()
            first_seen.setdefault(path.name, (stat.st_mtime_ns, stat.st_size))

    def all_done():
        watch_files()
        now = utcnow()
        pending = [row for row in rows(session) if row.completed_at is None
                   and (row.run_at is None or row.run_at <= now)]
        assert not [row for row in pending if row.failed_at is not None], [r.last_error for r in pending]
        return not pending and session.get(InboundEmail, inbound_id).status != "received"

    wait_for(all_done, 60, "every job that is due to complete", procs, [worker, scheduler], interval=0.02)
    jobs_done = time.monotonic() - lost_at
    wait_for(lambda: watch_files() or session.scalar(
        sa.select(sa.func.count()).select_from(SlaEscalation).where(SlaEscalation.work_item_id == item_id)),
        (warning_at - utcnow()).total_seconds() + 10, "the SLA warning", procs, [worker, scheduler])
    wait_for(all_done, 30, "the jobs of the warning", procs, [worker, scheduler])
    time.sleep(1.5)  # a late duplicate would show up now
    watch_files()
    print(f"after losing Redis: every due job completed {jobs_done:.1f}s later (worker and scheduler start "
          f"included)")

    session.expire_all()
    # Each effect once.
    results = session.scalars(sa.select(CheckResult).where(CheckResult.work_item_id == item_id)).all()
    assert [(r.name, r.status) for r in results] == [("required_fields", "passed")]
    stored = session.execute(sa.select(CheckResult.work_item_id, CheckResult.name)).all()
    assert len(stored) == len(set(stored))  # no check of any item stored twice
    assert session.scalar(sa.select(sa.func.count()).select_from(Event).where(
        Event.work_item_id == item_id, Event.kind == "check_result")) == 1
    filed = session.get(InboundEmail, inbound_id)
    assert filed.status == "created" and filed.work_item_id is not None
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)
                          .where(WorkItem.subject.like("%Kettle broken%"))) == 1
    [warning] = session.scalars(sa.select(SlaEscalation).where(SlaEscalation.work_item_id == item_id)).all()
    late = warning.fired_at - warning_at
    print(f"the SLA warning, scheduled again for its instant, fired {late.total_seconds():.3f}s after it")
    assert (warning.kind, warning.fired_by) == ("warning", "timer")
    assert timedelta(0) <= late <= timedelta(seconds=2), late

    # Mail: every outbound message and notification sent, each written once, none twice.
    outbound = session.scalars(sa.select(Message).where(Message.kind == "outbound")).all()
    notes = session.scalars(sa.select(Notification)).all()
    assert reply_id in {m.id for m in outbound} and len(outbound) >= 2  # the reply and the acknowledgement
    assert {m.send_status for m in outbound} | {n.send_status for n in notes} == {"sent"}
    expected = {f"message-{m.id}.eml" for m in outbound} | {f"notification-{n.id}.eml" for n in notes}
    assert sorted(p.name for p in outbox_dir.glob("*.eml")) == sorted(expected)
    for path in outbox_dir.glob("*.eml"):
        stat = path.stat()
        assert (stat.st_mtime_ns, stat.st_size) == first_seen[path.name], f"{path.name} was written twice"
    sent_events = session.scalars(sa.select(Event).where(Event.kind == "mail_sent")).all()
    assert sorted(e.data["message_id"] for e in sent_events) == sorted(m.id for m in outbound)
    assert email.message_from_bytes((outbox_dir / f"message-{reply_id}.eml").read_bytes(),
                                    policy=email.policy.default).get_content().strip() == "We are on it."

    # The reconciler did it: every job Redis lost was handed over again, once, under its own id; timers
    # hours ahead wait until they are near.
    for row in rows(session):
        if row.id > before[-1].id:
            continue
        if row.run_at is not None and row.run_at > utcnow() + timedelta(minutes=5):
            assert (row.attempts, row.completed_at) == (0, None)
            continue
        assert row.completed_at is not None and row.failed_at is None
        assert (row.attempts, row.last_error) == (1, "handed over again: no record in Redis"), row.job_path
    assert "handed over again" in scheduler.output()


# --- 2. completion is committed with the job's effect, and rolled back with it ----------

def test_completion_is_committed_with_the_effect_and_a_failing_job_leaves_neither(
        session, own_redis, deliver_on_commit, make_item, monkeypatch):
    item = make_item(type="general")  # one check: required_fields
    session.commit()
    item_id = item.id
    [row] = rows(session, checks_runner.RUN_JOB)
    assert row.enqueued_at is not None and row.completed_at is None

    with Transactions(db.engine) as transactions:
        run_burst(own_redis, "checks")

    [row] = rows(session, checks_runner.RUN_JOB)
    assert row.completed_at is not None and rq_status(own_redis, row) == "finished"
    assert len(session.scalars(sa.select(CheckResult).where(CheckResult.work_item_id == item_id)).all()) == 1
    # One transaction wrote the result, its event and the completion, and committed them together.
    [(end, statements)] = transactions.containing(RESULT_WRITTEN, EVENT_WRITTEN, COMPLETION_WRITTEN)
    assert end == "commit"
    assert transactions.containing(RESULT_WRITTEN) == transactions.containing(COMPLETION_WRITTEN) == [(end, statements)]

    failing = make_item(type="general")
    session.commit()
    failing_id = failing.id

    def broken(*args, **kwargs):
        raise sa.exc.OperationalError("UPDATE work_items", {}, Exception("database is locked"))

    monkeypatch.setattr(checks_runner, "refresh_needs_attention", broken)  # after the result is written
    with Transactions(db.engine) as transactions:
        run_burst(own_redis, "checks")

    [_, row] = rows(session, checks_runner.RUN_JOB)
    assert row.completed_at is None
    assert session.scalars(sa.select(CheckResult).where(CheckResult.work_item_id == failing_id)).all() == []
    [(end, _)] = transactions.containing(RESULT_WRITTEN)
    assert end == "rollback"
    assert not transactions.containing(COMPLETION_WRITTEN)
    # RQ retries it after its back-off: Redis knows it, so the reconciler leaves it alone.
    assert rq_status(own_redis, row) == "scheduled"
    session.execute(sa.update(OutboxJob).values(enqueued_at=utcnow() - timedelta(hours=1)))
    session.commit()
    assert reconciler.reconcile()[reconciler.WAITING] == 1
    assert rows(session, checks_runner.RUN_JOB)[1].attempts == 0


# --- 3. a worker SIGKILLed in the middle of a job --------------------------------------

@pytest.mark.parametrize("fork", [True, False], ids=["forking-worker", "no-fork-worker"])
def test_a_job_whose_worker_is_killed_runs_again_and_completes_within_two_minutes(
        session, own_redis, deliver_on_commit, procs, make_item, tmp_path, fork):
    markers = tmp_path / "markers"
    markers.mkdir()
    options = () if fork else ("--no-fork",)
    scheduler = start_scheduler(procs)
    worker = start_worker(procs, own_redis, "default", *options, name="worker-1")
    item = make_item(type="general")
    enqueue_after_commit(session, outbox_jobs.JOB, str(markers), item.id)
    session.commit()
    item_id = item.id
    [row] = rows(session, outbox_jobs.JOB)
    wait_for(lambda: list(markers.glob("start-1-*")), 30, "the job to start", procs, [worker, scheduler])

    # Started by a live worker, long past the lease: Redis knows it, the reconciler leaves it alone.
    time.sleep(3 * LEASE)
    assert [p.name.split("-")[1] for p in markers.glob("start-*")] == ["1"]
    [row] = rows(session, outbox_jobs.JOB)
    assert (row.attempts, row.completed_at, rq_status(own_redis, row)) == (0, None, "started")

    # SIGKILL the worker's process group and the process running the job (a forking worker's horse
    # has a process group of its own): the job dies with them, before its commit.
    [started] = markers.glob("start-1-*")
    worker.kill()
    try:
        os.kill(int(started.name.split("-")[2]), signal.SIGKILL)
    except ProcessLookupError:
        pass  # --no-fork: the job ran in the worker itself
    killed_at = time.monotonic()
    (markers / "release").touch()  # the next run finishes at once
    worker = start_worker(procs, own_redis, "default", *options, name="worker-2")
    wait_for(lambda: rows(session, outbox_jobs.JOB)[0].completed_at, 120, "the job to run again and complete",
             procs, [worker, scheduler], interval=0.05)
    again = time.monotonic() - killed_at
    print(f"{'forking' if fork else 'no-fork'} worker SIGKILLed mid-job: the job ran again and completed "
          f"{again:.1f}s later (lease {LEASE}s, a new worker's start included)")
    assert again < 120

    [row] = rows(session, outbox_jobs.JOB)
    assert row.attempts == 1 and row.last_error.startswith("handed over again: started by worker")
    assert sorted(p.name.split("-")[1] for p in markers.glob("start-*")) == ["1", "2"]
    [done] = session.scalars(sa.select(Event).where(Event.work_item_id == item_id,
                                                    Event.kind == outbox_jobs.EVENT)).all()
    assert done.data == {"run": 2}
    # RQ marks the job finished just after its function returns (after the commit and the audit seal).
    wait_for(lambda: rq_status(own_redis, row) == "finished", 15, "RQ to mark the job finished", procs,
             [worker, scheduler])
    assert not StartedJobRegistry("default", connection=own_redis).get_job_ids()


# --- 4. what the reconciler leaves alone, hands over again and gives up ---------------

def test_the_reconciler_leaves_known_and_completed_jobs_alone_and_hands_over_the_lost_once(
        runner, session, own_redis, deliver_on_commit, make_item):
    items = [make_item(type="general") for _ in range(7)]  # a checks job each, queued
    session.commit()
    enqueue_after_commit(session, policies.TIMER_JOB, items[0].id, 1, run_at=utcnow() + timedelta(seconds=50))
    session.commit()
    checks = rows(session, checks_runner.RUN_JOB)
    [timer] = near_timers(session)  # (each item also has a timer hours ahead, which the reconciler ignores)
    queued, completed, lost, stranded, ghost, failed, live = checks
    conn, queue = own_redis, get_queue("checks", connection=own_redis)
    assert queue.count == 7 and rq_status(conn, timer) == "scheduled"

    # Completed: its job ran; its Redis record has expired since.
    session.execute(sa.update(OutboxJob).where(OutboxJob.id == completed.id).values(completed_at=utcnow()))
    conn.delete(Job.key_for(completed.rq_job_id))
    conn.lrem(queue.key, 0, completed.rq_job_id)
    # Lost: no record at all. Stranded: "queued", in no queue.
    conn.delete(Job.key_for(lost.rq_job_id))
    conn.lrem(queue.key, 0, lost.rq_job_id)
    conn.lrem(queue.key, 0, stranded.rq_job_id)
    # Taken by a worker that is gone (no worker key, an old started-registry entry), and by a live one.
    for row, worker_name in ((ghost, "ghost"), (live, "alive")):
        conn.lrem(queue.key, 0, row.rq_job_id)
        conn.hset(Job.key_for(row.rq_job_id), mapping={"status": "started", "worker_name": worker_name,
                                                       "started_at": utcformat(utcnow())})
        conn.zadd(StartedJobRegistry(queue=queue).key, {f"{row.rq_job_id}:execution-1": time.time() + 600})
    conn.hset("rq:worker:alive", mapping={"last_heartbeat": utcformat(utcnow()), "current_job": live.rq_job_id})
    # Failed after its last retry.
    conn.lrem(queue.key, 0, failed.rq_job_id)
    conn.hset(Job.key_for(failed.rq_job_id), "status", "failed")
    conn.zadd(FailedJobRegistry(queue=queue).key, {failed.rq_job_id: time.time() + 600})
    # All handed over long ago (the lease has passed).
    session.execute(sa.update(OutboxJob).values(enqueued_at=utcnow() - timedelta(minutes=10)))
    session.commit()

    counts = reconciler.reconcile()

    assert counts == {reconciler.WAITING: 2, reconciler.RUNNING: 1, reconciler.GIVEN_UP: 1,
                      reconciler.HANDED_OVER: 3}
    by_id = {row.id: row for row in rows(session)}
    assert [by_id[r.id].attempts for r in (queued, completed, failed, live, timer)] == [0, 0, 0, 0, 0]
    assert [by_id[r.id].attempts for r in (lost, stranded, ghost)] == [1, 1, 1]
    assert by_id[ghost.id].last_error == "handed over again: started by worker ghost, which is gone or silent"
    assert by_id[stranded.id].last_error == "handed over again: queued in no queue"
    assert by_id[failed.id].failed_at is not None and by_id[failed.id].last_error.startswith("failed in RQ")
    assert by_id[completed.id].failed_at is None and not conn.exists(Job.key_for(completed.rq_job_id))
    # Each lost job is queued exactly once again; the others are where they were.
    assert sorted(queue.get_job_ids()) == sorted(r.rq_job_id for r in (queued, lost, stranded, ghost))
    assert rq_status(conn, live) == "started" and rq_status(conn, failed) == "failed"
    assert timer.rq_job_id in ScheduledJobRegistry(queue=get_queue("sla", connection=conn)).get_job_ids()
    assert conn.zrange(StartedJobRegistry(queue=queue).key, 0, -1) == [f"{live.rq_job_id}:execution-1".encode()]

    # Again, long after: nothing is queued twice, the given-up job stays given up.
    session.execute(sa.update(OutboxJob).values(enqueued_at=utcnow() - timedelta(minutes=10)))
    session.commit()
    assert reconciler.reconcile() == {reconciler.WAITING: 5, reconciler.RUNNING: 1}
    assert sorted(queue.get_job_ids()) == sorted(r.rq_job_id for r in (queued, lost, stranded, ghost))
    result = runner.invoke(args=["outbox", "reconcile"])
    assert result.exit_code == 0 and result.output.strip() == "1 running, 5 waiting"


def test_a_job_a_worker_has_just_popped_is_not_handed_over_again(session, own_redis, deliver_on_commit, make_item):
    """A worker on several queues pops with BLPOP and marks the job started a moment later; in between
    the job is "queued" in no queue, as a lost one is. The reconciler looks again before it decides."""
    item = make_item(type="general")
    session.commit()
    [row] = rows(session, checks_runner.RUN_JOB)
    conn, queue = own_redis, get_queue("checks", connection=own_redis)
    conn.lrem(queue.key, 0, row.rq_job_id)  # popped: still "queued", in no list
    session.execute(sa.update(OutboxJob).values(enqueued_at=utcnow() - timedelta(minutes=10)))
    session.commit()
    job_id = row.rq_job_id

    def marked_started():
        conn.hset(Job.key_for(job_id), mapping={"status": "started", "worker_name": "busy",
                                                "started_at": utcformat(utcnow())})
        conn.hset("rq:worker:busy", mapping={"last_heartbeat": utcformat(utcnow()), "current_job": job_id})

    timer = threading.Timer(reconciler.DEQUEUE_SETTLE_SECONDS / 4, marked_started)
    timer.start()
    try:
        counts = reconciler.reconcile()
    finally:
        timer.join()
    assert counts == {reconciler.RUNNING: 1}
    [row] = rows(session, checks_runner.RUN_JOB)
    assert (row.attempts, row.last_error) == (0, None)
    assert queue.count == 0 and rq_status(conn, row) == "started"


def test_a_lost_timer_is_scheduled_again_for_its_instant_not_run_now(session, own_redis, deliver_on_commit,
                                                                    make_item):
    item = make_item(type="general")
    run_at = utcnow() + timedelta(seconds=40)
    enqueue_after_commit(session, policies.TIMER_JOB, item.id, 1, run_at=run_at)
    session.commit()
    [timer] = near_timers(session)
    lose_everything(own_redis)
    session.execute(sa.update(OutboxJob).values(enqueued_at=utcnow() - timedelta(minutes=10)))
    session.commit()
    assert reconciler.reconcile()[reconciler.HANDED_OVER] == 2  # the near timer and the item's checks
    registry = ScheduledJobRegistry(queue=get_queue("sla", connection=own_redis))
    assert registry.get_job_ids() == [timer.rq_job_id]
    assert registry.get_scheduled_time(timer.rq_job_id).timestamp() == int(run_at.timestamp())
    assert Queue("sla", connection=own_redis).count == 0


# --- 5. mail goes out at most once ---------------------------------------------------------

class FakeSMTP:
    """An SMTP server in a thread that takes every message it is given (`received`), and then, by
    `mode`: answers 250 ("ok"), closes the connection without answering ("drop"), answers QUIT
    with an error ("bad-quit"), or refuses every recipient ("refuse")."""

    def __init__(self, mode="ok"):
        self.mode, self.received = mode, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self):
        self.sock.close()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as stream:
                try:
                    self._session(stream)
                except OSError:
                    pass

    def _session(self, stream):
        def reply(text):
            stream.write(text.encode() + b"\r\n")
            stream.flush()

        reply("220 fake ESMTP")
        while line := stream.readline():
            command = line.strip().upper()
            if command.startswith((b"EHLO", b"HELO")):
                reply("250 fake")
            elif command.startswith(b"MAIL"):
                reply("250 ok")
            elif command.startswith(b"RCPT"):
                reply("550 no such user" if self.mode == "refuse" else "250 ok")
            elif command == b"DATA":
                reply("354 go ahead")
                lines = []
                while (data := stream.readline()) not in (b".\r\n", b""):
                    lines.append(data)
                self.received.append(b"".join(lines))
                if self.mode == "drop":
                    return  # the message is here, the client never hears so
                reply("250 queued")
            elif command == b"QUIT":
                reply("500 what?" if self.mode == "bad-quit" else "221 bye")
                return
            else:
                reply("250 ok")


@pytest.fixture
def smtp(app, monkeypatch):
    servers = []

    def start(mode):
        server = FakeSMTP(mode)
        servers.append(server)
        monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
        monkeypatch.setitem(app.config, "SMTP_PORT", server.port)
        monkeypatch.setitem(app.config, "SMTP_TLS", "none")
        monkeypatch.setitem(app.config, "SMTP_USER", None)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def reply_id(session, make_team, make_user, make_item):
    team = make_team()
    supervisor = make_user(role="supervisor", teams=[team])
    item = make_item(team=team)
    reply = lifecycle.add_reply(session, item, actor=supervisor, body="We are on it.")
    session.commit()
    return reply.id


def mail_events(session, kind):
    session.expire_all()
    return session.scalars(sa.select(Event).where(Event.kind == kind)).all()


def set_status(session, message_id, status, sent_at=None):
    session.execute(sa.update(Message).where(Message.id == message_id).values(send_status=status, sent_at=sent_at))
    session.commit()


def test_a_reply_being_sent_or_whose_sender_died_is_not_sent_again(session, smtp, reply_id):
    server = smtp("ok")
    set_status(session, reply_id, "sending", utcnow())  # another attempt claimed it a moment ago
    with pytest.raises(SendInProgress):
        send_message(reply_id)  # RQ retries it later
    set_status(session, reply_id, "sending", utcnow() - timedelta(minutes=5))  # that attempt died mid-send
    assert send_message(reply_id) == "unconfirmed"
    assert send_message(reply_id) == "skipped"
    set_status(session, reply_id, "bounced")
    assert send_message(reply_id) == "skipped"
    assert server.received == []
    [event] = mail_events(session, "mail_unconfirmed")
    assert event.data["message_id"] == reply_id


def test_a_connection_lost_during_data_marks_the_reply_unconfirmed_and_it_is_not_sent_again(
        session, smtp, reply_id):
    server = smtp("drop")
    assert send_message(reply_id) == "unconfirmed"
    assert send_message(reply_id) == "skipped"  # a re-run, or RQ's retry: nothing more goes out
    assert len(server.received) == 1
    assert session.get(Message, reply_id).send_status == "unconfirmed"
    [event] = mail_events(session, "mail_unconfirmed")
    assert "during DATA" in event.data["error"]
    assert mail_events(session, "mail_sent") == []


def test_a_failing_quit_after_the_message_was_taken_still_counts_as_sent(session, smtp, reply_id):
    server = smtp("bad-quit")
    assert send_message(reply_id) == "smtp"
    assert send_message(reply_id) == "skipped"
    assert len(server.received) == 1 and session.get(Message, reply_id).send_status == "sent"


def test_a_refused_reply_is_retried_and_sent_once(session, smtp, reply_id):
    smtp("refuse")
    with pytest.raises(DeliveryFailed):
        send_message(reply_id)
    session.expire_all()
    assert session.get(Message, reply_id).send_status == "failed"
    assert len(mail_events(session, "mail_failed")) == 1
    server = smtp("ok")
    assert send_message(reply_id) == "smtp"  # the retry claims `failed` again
    assert send_message(reply_id) == "skipped"
    assert len(server.received) == 1 and len(mail_events(session, "mail_sent")) == 1
