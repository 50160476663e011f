"""Resilience benchmarks (not run by `make test`): Redis losing everything, workers SIGKILLed in the
middle of a job, the leading scheduler SIGKILLed. Each prints its figures.

  flushall  Every job kind queued (checks of --items new items, --replies outgoing replies,
            --notifications notifications, SLA timers of --timers items due within a minute),
            the workers paused (SIGSTOP), FLUSHALL, the workers resumed (SIGCONT): the time until
            every job's effect happened exactly once, counted in the database and, for mail, at a
            local SMTP sink (no message may arrive twice), and the lateness of the SLA steps.
  sigkill   One job of each worker kind (checks, mail_out, sla, intake/default) held at its first
            write by a lock the bench takes, each worker SIGKILLed with its whole process tree, new
            workers started at once: the time until each job ran again and completed (target:
            2 minutes), for each --leases pair of OUTBOX_LEASE_SECONDS:OUTBOX_RECONCILE_SECONDS.
  failover  Two `flask scheduler` processes and one sla worker; the leader is SIGKILLed: the time
            until the other holds the lease (target: 15 s), and the lateness of the SLA steps due
            in the minute after the kill, with their timers and without (left to the sweep).

Every process is a real `flask --app wsgi ...` child, on a fresh SQLite database in a temporary
directory by default, or on --database-url (every table dropped and created again; pass --reset
when it has data), as in bench/sla_timers.py, whose Bench this uses. The Redis server of
--redis-url must be the bench's alone: its database is FLUSHED before and after, and `flushall`
runs FLUSHALL on the whole server. Mail goes to an SMTP sink in this process.

  redis-server --port 6423 --save '' --appendonly no --daemonize yes
  .venv/bin/python bench/resilience.py --redis-url redis://127.0.0.1:6423/0 flushall --items 500 --replies 50
  .venv/bin/python bench/resilience.py --redis-url redis://127.0.0.1:6423/0 sigkill --leases 60:30,10:5
  .venv/bin/python bench/resilience.py --redis-url redis://127.0.0.1:6423/0 failover --steps 300
"""
import argparse
import email
import email.policy
import hashlib
import os
import signal
import socket
import sqlite3
import statistics
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sla_timers as base  # noqa: E402  (bench/sla_timers.py: Bench, people, bulk items with timers)
from sla_timers import log, percentile, utcnow  # noqa: E402

# The worker kinds, as `flask worker` arguments. run-all runs mail_out, intake and default on one
# forking worker; here mail_out has its own, so that each kind is killed and measured on its own.
WORKERS = {
    "checks": ("checks", "--no-fork"),
    "sla": ("sla", "--no-fork"),
    "mail_out": ("mail_out",),
    "intake/default": ("intake", "default"),
}
MAILBOX = "returns@bench.example.com"


# --- processes ----------------------------------------------------------------------------

def process_tree(pid):
    """The pid and every descendant's (a forking worker's RQ scheduler and work horse have process
    groups of their own, so a group signal would miss them)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                pass
    return found


def signal_tree(proc, sig):
    for pid in process_tree(proc.pid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_tree(proc):
    signal_tree(proc, signal.SIGKILL)
    proc.wait(timeout=10)


def wait_until(predicate, timeout, what, procs=(), interval=0.05):
    """Poll until predicate() is truthy; exit if it takes too long or a child dies (the tests'
    wait_for does the same for pytest, failing the test instead)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for proc in procs:
            if proc.poll() is not None:
                sys.exit(f"{proc.bench_name} exited while waiting for {what}")
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def start_worker(bench, kind, settings, suffix=""):
    """`flask worker` for one kind; returns once it listens (its key is in rq:workers)."""
    before = set(bench.redis.smembers("rq:workers"))
    name = kind.replace("/", "-") + suffix
    proc = bench.start(f"worker-{name}", "worker", *WORKERS[kind], **settings)
    proc.kind = kind
    wait_until(lambda: set(bench.redis.smembers("rq:workers")) - before, 60, f"worker {name} to start", [proc])
    return proc


def lease_holder_pid(bench):
    from workers.leadership import SCHEDULER_LEASE_KEY

    token = bench.redis.get(SCHEDULER_LEASE_KEY)
    return int(token.decode().split(":")[1]) if token else None


def start_scheduler(bench, settings, name="scheduler"):
    proc = bench.start(name, "scheduler", **settings)
    wait_until(lambda: "scheduler running" in (bench.tmp / f"{name}.log").read_text(errors="replace"), 60,
               f"{name} to start", [proc])
    return proc


def load():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- the SMTP sink ----------------------------------------------------------------------------

class MailSink:
    """A local SMTP server that takes every message; `deliveries` counts each by its Message-ID
    (notifications have none: by recipient, subject and body), so a message sent twice shows."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.deliveries = Counter()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.deliveries[sink.key(envelope.content)] += 1
                return "250 OK"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @staticmethod
    def key(raw):
        message = email.message_from_bytes(raw, policy=email.policy.default)
        if message["Message-ID"]:
            return str(message["Message-ID"])
        body = message.get_body(("plain",)).get_content() if message.get_body(("plain",)) else ""
        return f"{message['To']}|{message['Subject']}|{hashlib.sha256(body.encode()).hexdigest()[:16]}"

    def settings(self):
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": self.port, "SMTP_TLS": "none"}

    def twice(self):
        return {key: n for key, n in self.deliveries.items() if n > 1}

    def close(self):
        self.controller.stop()


# --- shared set-up ----------------------------------------------------------------------------

def setup(bench):
    """Schema, a team (supervisor and 20 executives), the default policy and a one-minute policy
    for `high` items (warning at 45 s, breach at 60 s), and a mailbox."""
    from queue_app.models import SlaPolicy, Team, User
    from queue_app.services.intake import mailboxes

    bench.reset_schema()
    bench.redis.flushdb()
    team_id, executive_ids, _ = base.setup_people(bench)
    session = bench.db.session
    session.add(SlaPolicy(name="One minute", match_priority="high", first_response_minutes=1,
                          resolution_minutes=600, warn_at_percent=75))
    team = session.get(Team, team_id)
    mailboxes.create_mailbox(session, address=MAILBOX, type="general", team_name=team.name)
    session.commit()
    supervisor = session.scalar(sa.select(User).where(User.email == "supervisor@example.com"))
    return team_id, executive_ids, supervisor.id


def new_item(session, team, assignee, n, priority="normal", now=None):
    from queue_app.services.items import lifecycle

    return lifecycle.create_item(session, actor=None, source="api", type="general", subject=f"Bench item {n}",
                                 fields={}, require_fields=False, priority=priority, team=team,
                                 requester_email=f"customer{n}@example.com", assignee=assignee, now=now)


def raw_email(n):
    message = email.message.EmailMessage()
    message["From"] = f"Customer {n} <customer{n}@example.com>"
    message["To"] = MAILBOX
    message["Subject"] = f"Parcel {n} arrived damaged"
    message["Message-ID"] = f"<bench-{n}-{time.time_ns()}@mail.example.com>"
    message.set_content("Hello, the parcel arrived damaged. Please refund.\n")
    return message.as_bytes()


def make_jobs(bench, team_id, executive_ids, supervisor_id, *, items, replies, notifications, timers, inbound=0):
    """Commit the jobs through the services, as requests would: checks of `items` new items, replies,
    notifications, `timers` high-priority items whose warnings fall 15-45 s from now (their breaches
    15 s later), and `inbound` stored emails to process. Returns the timer items' ids."""
    from queue_app.db.outbox import enqueue_after_commit
    from queue_app.models import Mailbox, Team, User
    from queue_app.services.intake import filing
    from queue_app.services.items import lifecycle
    from queue_app.services.people import notifications as notices

    session = bench.db.session
    team = session.get(Team, team_id)
    people = [session.get(User, i) for i in executive_ids]
    supervisor = session.get(User, supervisor_id)
    made = []
    for n in range(items):
        made.append(new_item(session, team, people[n % len(people)], n))
        if n % 50 == 49:
            session.commit()
    session.commit()
    for n in range(replies):
        lifecycle.add_reply(session, made[n % len(made)], actor=supervisor, body=f"We are on it ({n}).")
    for n in range(notifications):
        item = made[n % len(made)]
        notices.notify(session, item, [people[n % len(people)]], f"Bench notice {n} on {item.ref}",
                       "Please look at this one.", utcnow())
    box = session.scalar(sa.select(Mailbox).where(Mailbox.address == MAILBOX))
    for n in range(inbound):
        stored = filing.receive(session, raw_email(n), source="smtp", envelope_to=[MAILBOX], mailbox=box)
        session.flush()
        enqueue_after_commit(session, "workers.intake_jobs.process_inbound", stored.id)
    session.commit()
    timer_ids = []
    for n in range(timers):
        warning_in = 15 + 30 * n / max(1, timers)
        created = utcnow() - timedelta(seconds=45 - warning_in)
        timer_ids.append(new_item(session, team, people[n % len(people)], items + n, priority="high",
                                  now=created).id)
    session.commit()
    return timer_ids


def expected_steps(session, item_ids, until):
    """{(item id, stage): instant} of the first-response steps of the items due by `until`."""
    from queue_app.models import WorkItem
    from queue_app.services.sla import policies

    out = {}
    for item_id in item_ids:
        item = session.get(WorkItem, item_id)
        for stage, at, *_ in policies.steps(item, "first_response", item.first_response_due):
            if at <= until:
                out[(item_id, stage)] = at
    session.rollback()
    return out


def fired_steps(session, item_ids):
    """{(item id, stage): (fired_at, fired_by)} of the first-response steps taken."""
    from queue_app.models import SlaEscalation

    session.rollback()
    rows = session.execute(sa.select(SlaEscalation.work_item_id, SlaEscalation.stage, SlaEscalation.fired_at,
                                     SlaEscalation.fired_by)
                           .where(SlaEscalation.target == "first_response",
                                  SlaEscalation.work_item_id.in_(item_ids))).all()
    return {(item_id, stage): (fired_at, by) for item_id, stage, fired_at, by in rows}


def lateness_line(expected, fired):
    late = sorted((fired[key][0] - at).total_seconds() for key, at in expected.items() if key in fired)
    by = Counter(fired[key][1] for key in expected if key in fired)
    if not late:
        return f"none of {len(expected)} fired"
    return (f"{len(late)} of {len(expected)} fired ({', '.join(f'{k} {v}' for k, v in sorted(by.items()))}); "
            f"lateness s: min {late[0]:.3f}  p50 {percentile(late, 50):.3f}  p95 {percentile(late, 95):.3f}  "
            f"max {late[-1]:.3f}  mean {statistics.fmean(late):.3f}")


# --- flushall ---------------------------------------------------------------------------------

def run_flushall(args):
    from queue_app.models import CheckResult, Event, Message, Notification, OutboxJob

    bench = base.Bench(args)
    sink = MailSink()
    try:
        team_id, executive_ids, supervisor_id = setup(bench)
        settings = dict(sink.settings(), OUTBOX_LEASE_SECONDS=args.lease_seconds,
                        OUTBOX_RECONCILE_SECONDS=args.reconcile_seconds)
        workers = [start_worker(bench, kind, settings) for kind in WORKERS]
        scheduler = start_scheduler(bench, settings)
        procs = workers + [scheduler]
        for worker in workers:
            signal_tree(worker, signal.SIGSTOP)
        log(f"workers paused (SIGSTOP); load {load()}")
        started = time.monotonic()
        timer_ids = make_jobs(bench, team_id, executive_ids, supervisor_id, items=args.items, replies=args.replies,
                              notifications=args.notifications, timers=args.timers)
        session = bench.db.session
        wait_until(lambda: session.rollback() or not session.scalar(
            sa.select(sa.func.count()).select_from(OutboxJob).where(OutboxJob.enqueued_at.is_(None))),
            60, "every job to be handed to RQ", procs)
        made = Counter(session.scalars(sa.select(OutboxJob.job_path).where(
            sa.or_(OutboxJob.run_at.is_(None), OutboxJob.run_at <= utcnow() + timedelta(minutes=5)))))
        keys = bench.redis.dbsize()
        log(f"committed in {time.monotonic() - started:.1f} s and handed to RQ: "
            + ", ".join(f"{n} {path.rsplit('.', 1)[1]}" for path, n in sorted(made.items()))
            + f" (due within 5 min; timers hours ahead not counted); Redis keys {keys}")
        until = utcnow() + timedelta(seconds=120)
        expected = expected_steps(session, timer_ids, until)
        last_before = session.scalar(sa.select(sa.func.max(OutboxJob.id)))
        session.rollback()

        bench.redis.flushall()
        lost_at = utcnow()
        assert bench.redis.dbsize() == 0
        for worker in workers:
            signal_tree(worker, signal.SIGCONT)
        resumed = time.monotonic()
        log(f"FLUSHALL at {lost_at:%H:%M:%S} UTC, workers resumed (SIGCONT); lease {args.lease_seconds} s, "
            f"reconciler every {args.reconcile_seconds} s")

        def state():
            session.rollback()
            count = lambda *where: session.scalar(sa.select(sa.func.count()).select_from(OutboxJob).where(*where))
            open_ = (OutboxJob.completed_at.is_(None), OutboxJob.failed_at.is_(None))
            lost = count(*open_, OutboxJob.id <= last_before,
                         sa.or_(OutboxJob.run_at.is_(None), OutboxJob.run_at <= lost_at))
            pending = count(*open_, sa.or_(OutboxJob.run_at.is_(None), OutboxJob.run_at <= utcnow()))
            failed = count(OutboxJob.failed_at.is_not(None))
            unsent = session.scalar(sa.select(sa.func.count()).select_from(Message).where(
                Message.kind == "outbound", Message.send_status != "sent")) + session.scalar(
                sa.select(sa.func.count()).select_from(Notification).where(Notification.send_status != "sent"))
            steps = len(set(fired_steps(session, timer_ids)) & set(expected))
            return lost, pending, failed, unsent, steps

        next_report = time.monotonic() + 10
        lost_done = None
        while True:
            lost, pending, failed, unsent, steps = state()
            if not lost and lost_done is None:
                lost_done = time.monotonic() - resumed
            if not pending and not unsent and steps == len(expected):
                break
            if time.monotonic() >= next_report:
                log(f"  +{time.monotonic() - resumed:5.1f} s: {lost} of the jobs queued at the flush not completed, "
                    f"{pending} due jobs in all, {failed} given up, {unsent} mails not sent, "
                    f"{steps} of {len(expected)} SLA steps")
                next_report += 10
            if time.monotonic() - resumed > args.timeout:
                log("TIMED OUT")
                break
            for proc in procs:
                if proc.poll() is not None:
                    sys.exit(f"{proc.bench_name} exited; see {bench.tmp}/{proc.bench_name}.log")
            time.sleep(0.2)
        recovered = time.monotonic() - resumed
        time.sleep(3)  # a late second delivery would show now
        session.rollback()

        results = session.execute(sa.select(CheckResult.work_item_id, CheckResult.name)).all()
        check_events = session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "check_result"))
        checked = len({item_id for item_id, _ in results})
        outbound = session.scalar(sa.select(sa.func.count()).select_from(Message).where(
            Message.kind == "outbound", Message.send_status == "sent"))
        notes = session.scalar(sa.select(sa.func.count()).select_from(Notification)
                               .where(Notification.send_status == "sent"))
        mail_sent = session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "mail_sent"))
        handed = session.execute(sa.select(OutboxJob.last_error, sa.func.count())
                                 .where(OutboxJob.last_error.like("handed over again%"))
                                 .group_by(OutboxJob.last_error)).all()
        failed = session.scalar(sa.select(sa.func.count()).select_from(OutboxJob).where(OutboxJob.failed_at.is_not(None)))
        fired = fired_steps(session, timer_ids)
        twice = sink.twice()
        log("")
        log(f"RESULT flushall ({bench.db_label}; lease {args.lease_seconds} s, reconciler every "
            f"{args.reconcile_seconds} s; load {load()})")
        log(f"  every job queued at the flush completed {lost_done:.1f} s after SIGCONT; every effect due, the "
            f"SLA steps' included, done {recovered:.1f} s after")
        log(f"  checks: {checked} of {args.items + args.timers} items checked; {len(results)} results, "
            f"{len(set(results))} distinct, {check_events} check_result events")
        log(f"  mail: {outbound} messages and {notes} notifications sent; {mail_sent} mail_sent events; "
            f"SMTP sink took {sum(sink.deliveries.values())} deliveries of {len(sink.deliveries)} distinct "
            f"messages; delivered twice: {len(twice)}")
        log(f"  SLA steps of the timer items: {lateness_line(expected, fired)}")
        log(f"  handed over again by the reconciler: " + (", ".join(f"{n} ({why})" for why, n in handed) or "none")
            + f"; given up {failed}")
        if twice:
            log(f"  TWICE: {sorted(twice.items())[:10]}")
    finally:
        bench.close()
        sink.close()


# --- sigkill ----------------------------------------------------------------------------------

class WriteLock:
    """Holds every job at its first write: SQLite's write lock (BEGIN IMMEDIATE), or on PostgreSQL
    an EXCLUSIVE lock on outbox_jobs (each job first marks its row started)."""

    def __init__(self, bench):
        url = bench.db.engine.url
        self.sqlite = url.get_backend_name() == "sqlite"
        if self.sqlite:
            self.conn = sqlite3.connect(url.database, isolation_level=None, timeout=30)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn = bench.db.engine.connect()
            self.conn.exec_driver_sql("LOCK TABLE outbox_jobs IN EXCLUSIVE MODE")

    def release(self):
        if self.sqlite:
            self.conn.execute("ROLLBACK")
        else:
            self.conn.rollback()
        self.conn.close()


def current_jobs(bench, workers):
    """{kind: RQ job id} of the job each worker runs now, from its key in Redis."""
    from rq.job import Job

    out = {}
    for worker in workers:
        for key in bench.redis.smembers("rq:workers"):
            fields = bench.redis.hgetall(key)
            if int(fields.get(b"pid", 0)) == worker.pid and fields.get(b"current_job"):
                job_id = fields[b"current_job"].decode()
                try:
                    if Job.fetch(job_id, connection=bench.redis).get_status() == "started":
                        out[worker.kind] = job_id
                except Exception:
                    pass
    return out


def run_sigkill(args):
    bench = base.Bench(args)
    sink = MailSink()
    results = []
    try:
        for pair in args.leases.split(","):
            lease, reconcile = (int(v) for v in pair.split(":"))
            results.append((lease, reconcile, sigkill_round(bench, sink, lease, reconcile, args)))
    finally:
        bench.close()
        sink.close()
    log("")
    log(f"RESULT sigkill ({bench.db_label}; each worker kind SIGKILLed in the middle of a job, new workers "
        f"started at once; times from each kill)")
    for lease, reconcile, rows in results:
        log(f"  lease {lease} s, reconciler every {reconcile} s (load at kill {rows['load']}):")
        for kind in WORKERS:
            row = rows.get(kind)
            if row is None:
                log(f"    {kind:<15} no job was running at the kill")
                continue
            log(f"    {kind:<15} {row['job']}: handed over again {row['handed']:.1f} s after the kill, "
                f"completed {row['completed']:.1f} s after ({row['why']}; attempts {row['attempts']})")
    if sink.twice():
        log(f"  MAIL DELIVERED TWICE: {sink.twice()}")
    else:
        log(f"  SMTP sink: {sum(sink.deliveries.values())} deliveries, none twice")


def sigkill_round(bench, sink, lease, reconcile, args):
    from queue_app.models import OutboxJob

    bench.stop_all()
    team_id, executive_ids, supervisor_id = setup(bench)
    settings = dict(sink.settings(), OUTBOX_LEASE_SECONDS=lease, OUTBOX_RECONCILE_SECONDS=reconcile,
                    SLA_SWEEP_SECONDS=3600)  # the timer, not the sweep, is to take the SLA step
    scheduler = start_scheduler(bench, settings)
    workers = [start_worker(bench, kind, settings) for kind in WORKERS]
    for worker in workers:
        signal_tree(worker, signal.SIGSTOP)
    # One item (checks; its SLA warning already due, so its timer has a step to take), a reply,
    # a stored email to process.
    make_jobs(bench, team_id, executive_ids, supervisor_id, items=1, replies=1, notifications=0, timers=0,
              inbound=1)
    from queue_app.db.outbox import enqueue_after_commit
    from queue_app.models import Team, User
    from queue_app.services.sla import policies

    session = bench.db.session
    item = new_item(session, session.get(Team, team_id), session.get(User, executive_ids[0]), 9999,
                    priority="high", now=utcnow() - timedelta(seconds=50))
    session.flush()
    enqueue_after_commit(session, policies.TIMER_JOB, item.id, item.sla_version)
    session.commit()
    session.remove()
    lock = WriteLock(bench)
    running, killed_at = {}, {}
    try:
        for worker in workers:
            signal_tree(worker, signal.SIGCONT)
        # Each worker is killed as soon as its job is seen started (and blocked at its first write),
        # well within SQLite's busy timeout (15 s), after which the job would fail and be retried.
        deadline = time.monotonic() + 30
        left = list(workers)
        while left and time.monotonic() < deadline:
            for kind, job_id in current_jobs(bench, left).items():
                [worker] = [w for w in left if w.kind == kind]
                kill_tree(worker)
                killed_at[kind], running[kind] = utcnow(), job_id
                left.remove(worker)
            time.sleep(0.05)
        load_at_kill = load()
        for worker in left:
            log(f"  {worker.kind}: no job started within 30 s; killed anyway, not measured")
            kill_tree(worker)
        bench.procs = [p for p in bench.procs if p not in workers]
    finally:
        lock.release()
    log(f"lease {lease} s: SIGKILLed the workers of {', '.join(f'{k} ({j})' for k, j in running.items())} "
        f"mid-job at {min(killed_at.values()):%H:%M:%S} UTC; starting new workers")
    workers = [start_worker(bench, kind, settings, suffix="-2") for kind in WORKERS]
    ids = {kind: int(job.split("-", 1)[1]) for kind, job in running.items()}

    def done():
        session.rollback()
        rows = session.scalars(sa.select(OutboxJob).where(OutboxJob.id.in_(ids.values()))).all()
        return len(rows) == len(ids) and all(r.completed_at or r.failed_at for r in rows) and rows

    rows = wait_until(done, args.timeout, "the killed jobs to run again and complete", [scheduler, *workers],
                      interval=0.1)
    out = {"load": load_at_kill}
    by_id = {r.id: r for r in rows}
    for kind, outbox_id in ids.items():
        row = by_id[outbox_id]
        out[kind] = {"job": f"{row.job_path.rsplit('.', 1)[1]} outbox-{row.id}",
                     "handed": (row.enqueued_at - killed_at[kind]).total_seconds(),
                     "completed": ((row.completed_at or row.failed_at) - killed_at[kind]).total_seconds(),
                     "why": row.last_error if row.completed_at else f"GIVEN UP: {row.last_error}",
                     "attempts": row.attempts}
        log(f"  {kind}: completed {out[kind]['completed']:.1f} s after the kill")
    session.rollback()
    return out


# --- failover ---------------------------------------------------------------------------------

def run_failover(args):
    bench = base.Bench(args)
    try:
        bench.reset_schema()
        team_id, executive_ids, policy_id = base.setup_people(bench)
        worker = bench.start("worker-sla", "worker", "sla", "--no-fork")
        schedulers = [start_scheduler(bench, {}, name) for name in ("scheduler-a", "scheduler-b")]
        leader_pid = wait_until(lambda: lease_holder_pid(bench), 30, "a scheduler to lead", schedulers)
        [leader] = [s for s in schedulers if s.pid == leader_pid]
        [standby] = [s for s in schedulers if s is not leader]
        log(f"{leader.bench_name} (pid {leader.pid}) leads, {standby.bench_name} (pid {standby.pid}) stands by")

        # Steps spread over the minute after the kill: most with their timers in RQ, some without
        # (as if Redis had lost them): those only the sweep takes.
        kill_at = utcnow() + timedelta(seconds=args.lead_seconds)
        instants = [kill_at + timedelta(seconds=60 * (i + 0.5) / args.steps) for i in range(args.steps)]
        without = set(range(0, args.steps, args.every_without_timer)) if args.every_without_timer else set()
        with_timers = [at for i, at in enumerate(instants) if i not in without]
        last = base.insert_items(bench, 1, with_timers, "breach", team_id, executive_ids, policy_id)
        base.insert_items(bench, last + 1, [instants[i] for i in sorted(without)], "breach", team_id, executive_ids,
                          policy_id, timers=False)
        timer_ids = range(1, last + 1)
        sweep_ids = range(last + 1, args.steps + 1)
        if utcnow() > kill_at - timedelta(seconds=2):
            sys.exit("generation took longer than the lead time; pass a larger --lead-seconds")
        wait_until(lambda: utcnow() >= kill_at, args.lead_seconds + 5, "the kill", [worker, *schedulers],
                   interval=0.01)
        load_at_kill = load()
        from workers.leadership import SCHEDULER_LEASE_KEY

        left = bench.redis.pttl(SCHEDULER_LEASE_KEY) / 1000
        kill_tree(leader)
        killed = time.monotonic()
        bench.procs.remove(leader)
        wait_until(lambda: lease_holder_pid(bench) == standby.pid, 60, "the standby to lead", [standby], interval=0.02)
        takeover = time.monotonic() - killed
        log(f"SIGKILLed {leader.bench_name} at {kill_at:%H:%M:%S} UTC; {standby.bench_name} led {takeover:.2f} s later")

        from queue_app.models import SlaEscalation, WorkItem

        session = bench.db.session
        until = kill_at + timedelta(seconds=60 + args.drain_seconds)
        breach = 2

        def all_taken():
            session.rollback()
            return session.scalar(sa.select(sa.func.count()).select_from(SlaEscalation)
                                  .where(SlaEscalation.stage == breach)) >= args.steps or utcnow() > until

        wait_until(all_taken, 60 + args.lead_seconds + args.drain_seconds, "the steps", [worker, standby],
                   interval=0.5)
        fired = fired_steps(session, list(range(1, args.steps + 1)))
        due = dict(session.execute(sa.select(WorkItem.id, WorkItem.first_response_due)
                                   .where(WorkItem.id <= args.steps)).all())
        session.rollback()
        with_timer = {(i, breach): due[i] for i in timer_ids}
        sweep_only = {(i, breach): due[i] for i in sweep_ids}
        log("")
        log(f"RESULT failover ({bench.db_label}; two schedulers, production timings; load at kill {load_at_kill})")
        log(f"  the standby held the lease {takeover:.2f} s after the leader's SIGKILL (target 15 s); the lease had "
            f"{left:.2f} s left at the kill")
        log(f"  breaches due in the minute after the kill, with their timers: {lateness_line(with_timer, fired)}")
        if sweep_only:
            log(f"  ... and without timers (the sweep's): {lateness_line(sweep_only, fired)}")
    finally:
        bench.close()


# --- command line ---------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--reset", action="store_true", help="allow dropping the tables of a database with data")
    parser.add_argument("--redis-url", help="default: database --redis-db of $REDIS_URL; it is FLUSHED "
                                            "(flushall: the whole server)")
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, logs)")
    sub = parser.add_subparsers(dest="bench", required=True)

    flushall = sub.add_parser("flushall", help="Redis loses everything while the workers are paused")
    flushall.add_argument("--items", type=int, default=500, help="new items, each with its checks job")
    flushall.add_argument("--replies", type=int, default=50)
    flushall.add_argument("--notifications", type=int, default=50)
    flushall.add_argument("--timers", type=int, default=50, help="items whose SLA warning and breach fall "
                                                                 "within a minute")
    flushall.add_argument("--lease-seconds", type=int, default=60, help="OUTBOX_LEASE_SECONDS (production: 60)")
    flushall.add_argument("--reconcile-seconds", type=int, default=30,
                          help="OUTBOX_RECONCILE_SECONDS (production: 30)")
    flushall.add_argument("--timeout", type=float, default=600)

    sigkill = sub.add_parser("sigkill", help="each worker kind SIGKILLed in the middle of a job")
    sigkill.add_argument("--leases", default="60:30,10:5",
                         help="OUTBOX_LEASE_SECONDS:OUTBOX_RECONCILE_SECONDS pairs, one round each")
    sigkill.add_argument("--timeout", type=float, default=300)

    failover = sub.add_parser("failover", help="two schedulers, the leader SIGKILLed")
    failover.add_argument("--steps", type=int, default=300, help="SLA breaches due in the minute after the kill")
    failover.add_argument("--every-without-timer", type=int, default=10,
                          help="every Nth step has no timer, so only the sweep takes it (0: none)")
    failover.add_argument("--lead-seconds", type=float, default=20)
    failover.add_argument("--drain-seconds", type=float, default=45)

    args = parser.parse_args(argv)
    {"flushall": run_flushall, "sigkill": run_sigkill, "failover": run_failover}[args.bench](args)


if __name__ == "__main__":
    main()
