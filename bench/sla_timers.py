"""SLA timer benchmarks (not run by `make test`). Both print their figures.

  lateness  N open items whose next SLA step falls in a window starting shortly; one
            `flask worker sla --no-fork` (with RQ's scheduler) and one `flask scheduler`
            run against the database; every step fired in the window is measured as
            SlaEscalation.fired_at - the step's instant (count, p50, p95, p99, max).
            The issue's target: 100,000 open items with due times over the next hour
            (~28 steps/s), p99 <= 2 s with ONE worker. --window-seconds scales the run
            down at the same density; --full runs the whole hour.
  sweep     workers.sla_timers.sweep() with 0 and with 100 items due among 10k and 100k
            open items that are not due, plus the query plan of the due-items query
            (it must be a range scan on ix_work_items_sla_next_check_at).

The data is generated with bulk inserts: the due columns, stages, state and
sla_next_check_at are computed here exactly as services.sla.policies sets them for a
round-the-clock policy (checked against services.sla.policies on a sample), and each timer is
written as an outbox row already handed over and scheduled in RQ with enqueue_at,
as workers/relay.py does.

Defaults: a fresh SQLite database in a temporary directory (removed afterwards unless
--keep) and Redis database 11 of $REDIS_URL (or redis://127.0.0.1:6379), which is
FLUSHED before and after. With --database-url (e.g. PostgreSQL) every table of that
database is dropped and created again: pass --reset to allow it when it has data.

  .venv/bin/python bench/sla_timers.py lateness --window-seconds 300
  .venv/bin/python bench/sla_timers.py lateness --full
  .venv/bin/python bench/sla_timers.py sweep --sizes 10000,100000
"""
import argparse
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DENSITY = 100_000 / 3600  # the issue: 100k items over one hour
FIRST_RESPONSE_MINUTES = 240  # a round-the-clock policy with the default targets
RESOLUTION_MINUTES = 2880
WARN_AT_PERCENT = 75
WARNING_BEFORE_DUE = timedelta(minutes=FIRST_RESPONSE_MINUTES * (100 - WARN_AT_PERCENT) / 100)
CHUNK = 5000


def utcnow():
    return datetime.now(UTC)


def log(message):
    print(message, flush=True)


def percentile(sorted_values, p):
    """Nearest-rank percentile of a sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# --- environment ------------------------------------------------------------------------

class Bench:
    """Temp dir, environment, app and Redis for one run; call close() at the end."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="backdesk-bench-"))
        database_url = args.database_url or f"sqlite:///{self.tmp / 'bench.db'}"
        base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        self.redis_url = args.redis_url or urlsplit(base)._replace(path=f"/{args.redis_db}").geturl()
        self.env = dict(os.environ, BACKDESK_ENV="testing", DATABASE_URL=database_url, REDIS_URL=self.redis_url,
                        BACKDESK_INSTANCE_DIR=str(self.tmp / "instance"), PYTHONUNBUFFERED="1")
        os.environ.update(self.env)
        (self.tmp / "instance").mkdir()

        import redis

        from queue_app import create_app
        from queue_app.extensions import db

        self.app = create_app()
        self.app.config["OUTBOX_DELIVER_ON_COMMIT"] = True  # as in production: the sweep hands its jobs to RQ
        self.ctx = self.app.app_context()
        self.ctx.push()
        self.db = db
        self.redis = redis.Redis.from_url(self.redis_url)
        self.redis.ping()
        self.redis.flushdb()
        self.procs = []
        self.reset_ok = args.reset or not args.database_url
        self.db_label = self.describe_db()
        log(f"database: {self.db_label}   redis: {self.redis_url} (flushed)   dir: {self.tmp}")

    def describe_db(self):
        url = self.db.engine.url
        return f"{url.get_backend_name()} {url.database}"

    def reset_schema(self):
        import sqlalchemy as sa

        db = self.db
        db.session.remove()
        inspector = sa.inspect(db.engine)
        if "work_items" in inspector.get_table_names() and not self.reset_ok:
            with db.engine.connect() as conn:
                if conn.scalar(sa.text("SELECT count(*) FROM work_items")):
                    sys.exit("the database has work items; pass --reset to drop every table and start again")
        db.drop_all()
        db.create_all()
        self.reset_ok = True  # the tables are ours now

    def start(self, name, *args, **settings):
        env = dict(self.env, LOG_LEVEL="INFO", **{k: str(v) for k, v in settings.items()})
        with open(self.tmp / f"{name}.log", "wb") as logfile:
            proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                                    stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        proc.bench_name = name
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in reversed(self.procs):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    continue
            try:  # whatever is left of the group (RQ's forked scheduler)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs = []

    def close(self):
        self.stop_all()
        self.db.session.remove()
        self.db.engine.dispose()
        self.redis.flushdb()
        self.ctx.pop()
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_seconds(pid):
    """User + system CPU seconds of a process and its children that were waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


# --- data generation ----------------------------------------------------------------------

def setup_people(bench, executives=20):
    """A team with a supervisor and executives, and one round-the-clock policy with default targets."""
    from queue_app.models import SlaPolicy, Team
    from queue_app.services.people import users

    session = bench.db.session
    team = Team(name="Operations", work_types=["general"])
    session.add(team)
    session.flush()
    users.create_user(session, email="supervisor@example.com", password="bench-password", role="supervisor",
                      teams=[team.name])
    assignees = [users.create_user(session, email=f"exec{n}@example.com", password="bench-password",
                                   teams=[team.name]) for n in range(executives)]
    policy = SlaPolicy(name="Default", first_response_minutes=FIRST_RESPONSE_MINUTES,
                       resolution_minutes=RESOLUTION_MINUTES, warn_at_percent=WARN_AT_PERCENT)
    session.add(policy)
    session.commit()
    return team.id, [u.id for u in assignees], policy.id


def item_row(item_id, instant, step, team_id, assignee_id, policy_id):
    """A WorkItem row whose next ladder step (`warning` or `breach` of the first response) is at `instant`."""
    from queue_app.models.work_item import format_ref

    if step == "warning":
        first_response_due = instant + WARNING_BEFORE_DUE
        stage, state = 0, "on_track"
    else:  # breach: the warning was taken an hour earlier
        first_response_due = instant
        stage, state = 1, "at_risk"
    created = first_response_due - timedelta(minutes=FIRST_RESPONSE_MINUTES)
    return {
        "id": item_id, "ref": format_ref(item_id), "type": "general", "status": "open", "priority": "normal",
        "source": "api", "subject": f"Bench item {item_id}", "description": "", "team_id": team_id,
        "assignee_id": assignee_id, "requester_email": "customer@example.com", "sla_policy_id": policy_id,
        "first_response_due": first_response_due, "resolution_due": created + timedelta(minutes=RESOLUTION_MINUTES),
        "sla_next_due": first_response_due, "sla_state": state, "sla_version": 1, "sla_paused_minutes": 0.0,
        "first_response_stage": stage, "resolution_stage": 0, "sla_next_check_at": instant,
        "escalation_level": 0, "needs_attention": False, "created_at": created, "updated_at": created,
        "last_activity_at": created, "version": 1,
    }


def insert_items(bench, first_id, instants, step, team_id, assignee_ids, policy_id, timers=True):
    """Bulk-insert items (and, with timers, their outbox rows and RQ scheduled jobs); returns the last id."""
    import sqlalchemy as sa

    from queue_app.models import OutboxJob, WorkItem
    from queue_app.services.sla import policies
    from workers.queues import JOB_TIMEOUTS, retry_for

    session = bench.db.session
    now = utcnow()
    item_id = first_id - 1
    for start in range(0, len(instants), CHUNK):
        rows, outbox = [], []
        for instant in instants[start:start + CHUNK]:
            item_id += 1
            rows.append(item_row(item_id, instant, step, team_id, assignee_ids[item_id % len(assignee_ids)],
                                 policy_id))
            if timers:
                outbox.append({"id": item_id, "job_path": policies.TIMER_JOB, "args": [item_id, 1], "queue": "default",
                               "run_at": instant, "created_at": now, "enqueued_at": now, "attempts": 1})
        session.execute(sa.insert(WorkItem.__table__), rows)
        if outbox:
            session.execute(sa.insert(OutboxJob.__table__), outbox)
        session.commit()
        if timers:
            schedule_timers(bench, outbox, JOB_TIMEOUTS["sla"], retry_for("sla"))
    if bench.db.engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
        with bench.db.engine.begin() as conn:
            for table in ("work_items", "outbox_jobs"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")
    return item_id


def schedule_timers(bench, outbox_rows, timeout, retry):
    """What relay._enqueue does for a timer (enqueue_at with the unique outbox id), pipelined."""
    from rq import Queue

    queue = Queue("sla", connection=bench.redis, default_timeout=timeout)
    with bench.redis.pipeline() as pipe:
        for row in outbox_rows:
            queue.enqueue_at(row["run_at"], row["job_path"], *row["args"], job_id=f"outbox-{row['id']}",
                             failure_ttl=7 * 24 * 3600, retry=retry, pipeline=pipe)
        pipe.execute()


def check_sample(bench, ids, step):
    """The generated columns agree with services.sla.policies for a sample of items."""
    from queue_app.models import WorkItem
    from queue_app.services.sla import policies

    session = bench.db.session
    for item_id in ids:
        item = session.get(WorkItem, item_id)
        assert policies.next_check(item) == item.sla_next_check_at, item_id
        stage_instants = {kind: at for _, at, kind, _, _ in policies.steps(item, "first_response", item.first_response_due)}
        assert stage_instants[step] == item.sla_next_check_at, (item_id, stage_instants)
        assert policies.state_at(item, item.created_at) == "on_track"
    session.rollback()


# --- lateness -------------------------------------------------------------------------------

def run_lateness(args):
    window = 3600.0 if args.full else float(args.window_seconds)
    items = args.items or round(DENSITY * window)
    total_open = 100_000 if args.full else (args.total_open or 100_000)
    background = max(0, total_open - items)
    lead = args.lead_seconds or 20 + (items + background) / 1500
    bench = Bench(args)
    try:
        bench.reset_schema()
        team_id, assignee_ids, policy_id = setup_people(bench)
        anchor = utcnow() + timedelta(seconds=lead)
        log(f"lateness: {items} items with their {args.step} spread over {window:.0f} s "
            f"({items / window:.1f} steps/s) + {background} open items due later; window starts in {lead:.0f} s")
        started = time.monotonic()
        spacing = window / items
        instants = [anchor + timedelta(seconds=(i + 0.5) * spacing) for i in range(items)]
        last = insert_items(bench, 1, instants, args.step, team_id, assignee_ids, policy_id)
        if background:  # the rest of the 100k: next steps later in the hour (or the hour after it)
            after = anchor + timedelta(seconds=window)
            span = max(3600.0 - window, 600.0)
            later = [after + timedelta(seconds=5 + (i + 0.5) * span / background) for i in range(background)]
            insert_items(bench, last + 1, later, args.step, team_id, assignee_ids, policy_id)
        check_sample(bench, [1, items // 2, items], args.step)
        log(f"generated {items + background} items and their scheduled timers in {time.monotonic() - started:.1f} s")
        if utcnow() > anchor - timedelta(seconds=5):
            sys.exit("generation took longer than the lead time; pass a larger --lead-seconds")

        worker = bench.start("sla-worker", "worker", "sla", "--no-fork")
        scheduler = bench.start("scheduler", "scheduler", OUTBOX_RELAY_SECONDS=args.relay_seconds,
                                SLA_SWEEP_SECONDS=args.sweep_seconds)
        measure(bench, args, worker, scheduler, anchor, window, items)
    finally:
        bench.close()


def measure(bench, args, worker, scheduler, anchor, window, items):
    import sqlalchemy as sa

    from queue_app.models import OutboxJob, SlaEscalation
    from queue_app.services.sla import policies

    session = bench.db.session
    stage = 1 if args.step == "warning" else 2
    offset = WARNING_BEFORE_DUE if args.step == "warning" else timedelta(0)  # instant = due_at - offset
    end = anchor + timedelta(seconds=window)
    while utcnow() < anchor:
        for proc in (worker, scheduler):
            if proc.poll() is not None:
                sys.exit(f"{proc.bench_name} exited early; see {bench.tmp}/{proc.bench_name}.log")
        time.sleep(0.2)
    cpu_start = {p.bench_name: cpu_seconds(p.pid) for p in (worker, scheduler)}
    log(f"window open at {anchor:%H:%M:%S} UTC; ends at {end:%H:%M:%S}")

    def fired():
        session.rollback()
        return session.scalar(sa.select(sa.func.count()).select_from(SlaEscalation)
                              .where(SlaEscalation.stage == stage, SlaEscalation.work_item_id <= items))

    next_report = time.monotonic() + args.report_every
    deadline = end + timedelta(seconds=args.drain_seconds)
    while True:
        done = fired()
        if time.monotonic() >= next_report:
            due_so_far = max(0, min(items, int((utcnow() - anchor).total_seconds() / window * items)))
            log(f"  {utcnow():%H:%M:%S}  fired {done} / due so far ~{due_so_far}   "
                f"sla queue {bench.redis.llen('rq:queue:sla')}")
            next_report += args.report_every
        if (utcnow() > end and done >= items) or utcnow() > deadline:
            break
        for proc in (worker, scheduler):
            if proc.poll() is not None:
                sys.exit(f"{proc.bench_name} exited; see {bench.tmp}/{proc.bench_name}.log")
        time.sleep(0.5)
    cpu_end = {p.bench_name: cpu_seconds(p.pid) for p in (worker, scheduler)}
    elapsed = (utcnow() - anchor).total_seconds()

    session.rollback()
    rows = session.execute(sa.select(SlaEscalation.due_at, SlaEscalation.fired_at, SlaEscalation.fired_by)
                           .where(SlaEscalation.stage == stage, SlaEscalation.work_item_id <= items)).all()
    late = sorted((fired_at - (due_at - offset)).total_seconds() for due_at, fired_at, _ in rows)
    by = {}
    for *_, fired_by in rows:
        by[fired_by] = by.get(fired_by, 0) + 1
    early_rearmed = session.scalar(
        sa.select(sa.func.count()).select_from(OutboxJob)
        .where(OutboxJob.job_path == policies.TIMER_JOB, OutboxJob.created_at >= anchor,
               OutboxJob.run_at <= end + timedelta(seconds=5)))
    log("")
    log(f"RESULT lateness ({args.step}, {bench.db_label}, 1 worker --no-fork, {items} steps over {window:.0f} s, "
        f"{items / window:.1f}/s)")
    log(f"  fired {len(late)} of {items} ({', '.join(f'{k} {v}' for k, v in sorted(by.items()))}); "
        f"missing {items - len(late)}; timers that started early and re-armed {early_rearmed}")
    if late:
        log(f"  lateness s: min {late[0]:.3f}  p50 {percentile(late, 50):.3f}  p95 {percentile(late, 95):.3f}  "
            f"p99 {percentile(late, 99):.3f}  max {late[-1]:.3f}  mean {statistics.fmean(late):.3f}  "
            f"negative {sum(v < 0 for v in late)}  over 2 s {sum(v > 2 for v in late)}")
    for name in ("sla-worker", "scheduler"):
        if cpu_start.get(name) is not None and cpu_end.get(name) is not None:
            used = cpu_end[name] - cpu_start[name]
            log(f"  {name} CPU {used:.1f} s over {elapsed:.0f} s ({100 * used / elapsed:.0f} % of one core)")


# --- sweep ----------------------------------------------------------------------------------

def run_sweep(args):
    sizes = [int(s) for s in args.sizes.split(",")]
    bench = Bench(args)
    results = []
    try:
        for size in sizes:
            results.append(sweep_one(bench, args, size))
    finally:
        bench.close()
    log("")
    log(f"RESULT sweep ({bench.db_label}): median of {args.repeat} runs")
    log(f"  {'open items not due':>20} {'sweep, 0 due':>14} {'due_item_ids':>14} {'sweep, 100 due':>16} "
        f"{'per due item':>14}")
    for size, zero, query, hundred in results:
        log(f"  {size:>20,} {zero * 1000:>11.2f} ms {query * 1000:>11.2f} ms {hundred * 1000:>13.1f} ms "
            f"{hundred * 1000 / args.due:>11.2f} ms")


def timed(func, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sweep_one(bench, args, size):
    import sqlalchemy as sa

    from queue_app.services.sla import ladder as sla_ladder
    from workers.sla_timers import sweep

    bench.reset_schema()
    bench.redis.flushdb()
    team_id, assignee_ids, policy_id = setup_people(bench)
    now = utcnow()
    started = time.monotonic()
    # Not due: next steps spread over the next three hours (warnings, and breaches of warned items).
    span = 3 * 3600
    instants = [now + timedelta(seconds=60 + (i + 0.5) * span / size) for i in range(size)]
    half = size // 2
    last = insert_items(bench, 1, instants[:half], "warning", team_id, assignee_ids, policy_id, timers=False)
    last = insert_items(bench, last + 1, instants[half:], "breach", team_id, assignee_ids, policy_id, timers=False)
    if bench.db.engine.dialect.name == "postgresql":
        with bench.db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    log(f"sweep: {size:,} open items not due, generated in {time.monotonic() - started:.1f} s")

    captured = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "sla_next_check_at <=" in statement and not captured:
            captured.append((statement, parameters))

    sa.event.listen(bench.db.engine, "before_cursor_execute", capture)
    assert sweep() == 0
    sa.event.remove(bench.db.engine, "before_cursor_execute", capture)
    zero = timed(lambda: sweep(), args.repeat)
    query = timed(lambda: (sla_ladder.due_item_ids(bench.db.session, utcnow()), bench.db.session.rollback()), args.repeat)
    explain(bench, *captured[0])

    hundred_times = []
    for _ in range(args.repeat):
        due_now = utcnow()
        overdue = [due_now - timedelta(seconds=1 + i) for i in range(args.due)]  # warnings due in the last minutes
        last = insert_items(bench, last + 1, overdue, "warning", team_id, assignee_ids, policy_id, timers=False)
        started = time.perf_counter()
        taken = sweep()
        hundred_times.append(time.perf_counter() - started)
        assert taken == args.due, taken
    hundred = statistics.median(hundred_times)
    runs = ", ".join(f"{t * 1000:.0f}" for t in hundred_times)
    log(f"  sweep with 0 due: {zero * 1000:.2f} ms; due_item_ids alone: {query * 1000:.2f} ms; "
        f"sweep with {args.due} due: {hundred * 1000:.1f} ms (runs: {runs})")
    return size, zero, query, hundred


def explain(bench, statement, parameters):
    with bench.db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            lines = [row[-1] for row in plan]
        else:
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).all()
            lines = [row[0] for row in plan]
    log("  query: " + " ".join(statement.split()))
    for line in lines:
        log(f"    {line}")
    if not any("ix_work_items_sla_next_check_at" in line for line in lines):
        log("  WARNING: the plan does not use ix_work_items_sla_next_check_at")


# --- command line ---------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--reset", action="store_true", help="allow dropping the tables of a database with data")
    parser.add_argument("--redis-url", help="default: database --redis-db of $REDIS_URL; it is FLUSHED")
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, logs)")
    sub = parser.add_subparsers(dest="bench", required=True)

    lateness = sub.add_parser("lateness", help="timer lateness with one sla worker")
    lateness.add_argument("--window-seconds", type=float, default=300)
    lateness.add_argument("--items", type=int, help="steps in the window (default: 100k/hour density)")
    lateness.add_argument("--total-open", type=int, help="open items in all, the rest due after the window "
                                                         "(default 100000)")
    lateness.add_argument("--full", action="store_true", help="the issue's case: 100,000 items over 3600 s")
    lateness.add_argument("--step", choices=("breach", "warning"), default="breach",
                          help="the step measured (a breach notifies assignee and supervisor, raises the priority)")
    lateness.add_argument("--lead-seconds", type=float, help="time from generation to the window (default: sized)")
    lateness.add_argument("--drain-seconds", type=float, default=60, help="wait this long after the window at most")
    lateness.add_argument("--relay-seconds", type=int, default=2, help="OUTBOX_RELAY_SECONDS of the scheduler")
    lateness.add_argument("--sweep-seconds", type=int, default=30, help="SLA_SWEEP_SECONDS of the scheduler")
    lateness.add_argument("--report-every", type=float, default=30)

    sweep = sub.add_parser("sweep", help="sweep time against the number of open items not due")
    sweep.add_argument("--sizes", default="10000,100000")
    sweep.add_argument("--due", type=int, default=100)
    sweep.add_argument("--repeat", type=int, default=5)

    args = parser.parse_args(argv)
    if args.bench == "lateness":
        run_lateness(args)
    else:
        run_sweep(args)


if __name__ == "__main__":
    main()
