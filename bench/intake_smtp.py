"""Live SMTP intake benchmark: a relay's SMTP sessions into `flask intake smtp`, with the production processes.

    .venv/bin/python bench/intake_smtp.py [--count 1000] [--seed 1] [--connections 8] [--per-session 20]
                                          [--database-url URL [--reset]] [--redis-url URL] [--timeout 600] [--keep]

What a back office really runs (the README's production processes): `flask --app wsgi intake smtp`,
one `worker intake --no-fork` (the filer), one `worker mail_out default --no-fork`, one `worker checks --no-fork`,
one `worker sla --no-fork` and `flask scheduler`, on a fresh database
(SQLite in a temporary directory, or --database-url, which is emptied) built by the migrations and set
up as bench/intake_file.py sets it up (teams, calendars, policies, routing rules, mailboxes). The
acknowledgements go to a local SMTP sink (aiosmtpd's Sink, which drops them), never to the internet.
Redis database --redis-db of $REDIS_URL (or --redis-url) is FLUSHED before and after.

The corpus is bench/make_corpus.py's. A relay of --connections threads delivers it, --per-session
messages per SMTP session (then QUIT and a new connection). Messages are dealt to the connections in
corpus order, except those that must wait:
- a reply by In-Reply-To (and an exact re-send) is sent only after its parent's DATA got its 250;
- a reply found only by its [BO-...] tag is sent only once its thread's first message is filed, with
  the ref that message's item really got (looked up read-only by Message-ID, the subject rewritten if
  the generator predicted another): a customer answers the acknowledgement after receiving it.
Mail to an address that is none of ours is refused at RCPT (550), as the server is meant to; the
generator counts it as quarantined (or duplicate, for a re-send), so the expected counts are adjusted.

Printed: accepted msg/s (first DATA to last 250), DATA->250 latency p50/p95/p99, end-to-end msg/s
(first DATA to the last InboundEmail leaving `received`, read from processed_at), the outcomes against
the generator's, and the replies not filed on their parent's item (by Message-ID), with PASS/FAIL
against the targets. Then the ceiling: the same corpus through `flask intake file`
(bench/intake_file.import_once) on another fresh database.
"""
import argparse
import email.policy
import os
import re
import secrets
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header
from email.parser import BytesHeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import intake_file  # noqa: E402
import make_corpus  # noqa: E402
from checks import wait_until_ready  # noqa: E402
from sla_timers import Bench, cpu_seconds, log, percentile  # noqa: E402

MAIL_FROM = "backdesk@backdesk.example.com"  # the generator's auto-replies are addressed here
TARGETS = {"accepted msg/s": 300, "DATA->250 p99 ms": 100, "end-to-end msg/s": 200, "mis-threaded": 0}
TAG = re.compile(r"\[(BO-\d+)\]")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=60):
    """Until something accepts connections on the port (the server is up), or the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{proc.bench_name} exited early; see its log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on port {port} after {timeout} s")


# --- the corpus and what waits for what ------------------------------------------------------

@dataclass
class Planned:
    index: int
    raw: bytes
    mail_from: str
    rcpt: str
    message_id: str
    kind: str  # new, reply (In-Reply-To), tag (only the [BO-...] tag), resend, other (not ours)
    parent: int = None  # reply, tag: the message whose item it belongs on; resend: the original
    tag: str = None
    waited: float = None  # tag replies: seconds from the parent's 250 to its filing being seen
    unverified: bool = False  # a tag reply sent with the predicted ref (its parent was not filed in time)


def plan(messages):
    """What each message is and what it must wait for, from its headers (a fresh database numbers
    items in corpus order, which is how the generator predicts the tags)."""
    from queue_app.services.intake.filing import normalise_message_id, peek_message_id

    parser = BytesHeaderParser(policy=email.policy.default)
    first_raw, by_message_id, creator, planned = {}, {}, {}, []
    for index, raw in enumerate(messages):
        head = parser.parsebytes(raw)
        message_id = peek_message_id(raw)
        rcpt = head["To"].addresses[0].addr_spec.lower()
        entry = Planned(index, raw, str(head["Return-Path"]).strip(" <>"), rcpt, message_id, "new")
        tag = TAG.search(str(head["Subject"]))
        if raw in first_raw:
            entry.kind, entry.parent = "resend", first_raw[raw]
        elif head["In-Reply-To"]:
            entry.kind, entry.parent = "reply", by_message_id[normalise_message_id(str(head["In-Reply-To"]))]
        elif tag:
            entry.kind, entry.tag, entry.parent = "tag", tag.group(1), creator[tag.group(1)]
        elif rcpt in make_corpus.MAILBOXES:
            creator[f"BO-{len(creator) + 1:06d}"] = index
        else:
            entry.kind = "other"
        first_raw.setdefault(raw, index)
        by_message_id.setdefault(message_id, index)
        planned.append(entry)
    return planned


def expected_over_smtp(planned, expected):
    """The generator's counts with mail for other addresses moved to `refused` (550 at RCPT)."""
    counts = Counter(expected)
    for entry in planned:
        if entry.rcpt not in make_corpus.MAILBOXES and entry.rcpt != MAIL_FROM:
            counts["duplicate" if entry.kind == "resend" else "quarantined"] -= 1
            counts["refused"] += 1
    return counts


def with_ref(raw, predicted, actual):
    """The message with [actual] instead of [predicted] in its Subject (re-encoded if it was encoded)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if f"[{predicted}]".encode() in head:
        return head.replace(f"[{predicted}]".encode(), f"[{actual}]".encode(), 1) + sep + body
    lines, out, skipping = head.split(b"\r\n"), [], False
    for line in lines:
        if line[:8].lower() == b"subject:":
            subject = str(BytesHeaderParser(policy=email.policy.default).parsebytes(raw)["Subject"])
            subject = subject.replace(f"[{predicted}]", f"[{actual}]", 1)
            out.append(b"Subject: " + Header(subject, "utf-8", maxlinelen=76).encode(linesep="\r\n").encode())
            skipping = True
        elif skipping and line[:1] in (b" ", b"\t"):
            continue
        else:
            skipping = False
            out.append(line)
    return b"\r\n".join(out) + sep + body


# --- the relay --------------------------------------------------------------------------------

@dataclass
class Relay:
    """Connections that deliver the plan, each its own dealt share plus whatever waiting became ready."""

    planned: list
    port: int
    connections: int
    per_session: int
    lock: threading.Condition = field(default_factory=threading.Condition)
    ready: deque = field(default_factory=deque)
    waiting_250: dict = field(default_factory=dict)  # parent index -> messages to send after its 250
    waiting_filed: dict = field(default_factory=dict)  # parent index -> tag replies to send once it is filed
    watch: dict = field(default_factory=dict)  # Message-ID -> (parent index, wall time of its 250)
    results: dict = field(default_factory=dict)  # index -> (code, DATA seconds, DATA start, 250 at)
    errors: list = field(default_factory=list)
    stopped: bool = False

    def __post_init__(self):
        self.own = [deque() for _ in range(self.connections)]
        dealt = 0
        for entry in self.planned:
            if entry.kind in ("reply", "resend"):
                self.waiting_250.setdefault(entry.parent, []).append(entry)
            elif entry.kind == "tag":
                self.waiting_filed.setdefault(entry.parent, []).append(entry)
            else:
                self.own[dealt % self.connections].append(entry)
                dealt += 1
        self.outstanding = len(self.planned)

    def run(self):
        self.threads = [threading.Thread(target=self.connection, args=(n,), daemon=True)
                        for n in range(self.connections)]
        for thread in self.threads:
            thread.start()

    def next_for(self, n, in_session):
        with self.lock:
            while True:
                if self.ready:
                    return self.ready.popleft()
                if self.own[n]:
                    return self.own[n].popleft()
                if self.outstanding == 0 or self.stopped:
                    return None
                if in_session:
                    return "idle"
                self.lock.wait(0.5)

    def connection(self, n):
        smtp, sent = None, 0
        while True:
            entry = self.next_for(n, smtp is not None)
            if entry is None or entry == "idle" or (smtp is not None and sent >= self.per_session):
                if smtp is not None:
                    try:
                        smtp.quit()
                    except smtplib.SMTPException:
                        smtp.close()
                    smtp, sent = None, 0
                if entry is None:
                    return
                if entry == "idle":
                    continue
            try:
                if smtp is None:
                    smtp = smtplib.SMTP("127.0.0.1", self.port, local_hostname="relay.bench.example", timeout=300)
                    smtp.ehlo()
                self.deliver(smtp, entry)
                sent += 1
            except (smtplib.SMTPException, OSError) as exc:
                self.errors.append(f"message {entry.index}: {exc!r}")
                self.done(entry, None, None, None)
                smtp, sent = None, 0

    def deliver(self, smtp, entry):
        smtp.mail(entry.mail_from)
        code, _ = smtp.rcpt(entry.rcpt)
        if code != 250:
            smtp.rset()
            self.done(entry, code, None, None)
            return
        started, wall = time.perf_counter(), time.time()
        code, _ = smtp.data(entry.raw)
        seconds = time.perf_counter() - started
        self.done(entry, code, seconds, wall)

    def done(self, entry, code, seconds, wall):
        """Record the answer, and release what waited for this message's 250 (or start watching its filing)."""
        with self.lock:
            self.results[entry.index] = (code, seconds, wall, wall + seconds if wall else None)
            self.outstanding -= 1
            self.ready.extend(self.waiting_250.pop(entry.index, []))
            if entry.index in self.waiting_filed:
                if code == 250:
                    self.watch[entry.message_id] = (entry.index, time.time())
                else:
                    self.ready.extend(self.waiting_filed.pop(entry.index))
            self.lock.notify_all()

    def filed(self, message_id, ref):
        """The parent with this Message-ID is filed on item `ref`: its tag replies may go, with that ref."""
        with self.lock:
            index, accepted_at = self.watch.pop(message_id)
            for entry in self.waiting_filed.pop(index, []):
                entry.waited = time.time() - accepted_at
                if ref and ref != entry.tag:
                    entry.raw = with_ref(entry.raw, entry.tag, ref)
                self.ready.append(entry)
            self.lock.notify_all()

    def give_up_waiting(self):
        """Past the deadline: send the tag replies still waiting with the ref the generator predicted."""
        with self.lock:
            for entries in self.waiting_filed.values():
                for entry in entries:
                    entry.unverified = True
                    self.ready.append(entry)
            self.waiting_filed.clear()
            self.watch.clear()
            self.lock.notify_all()


# --- the database, read only ------------------------------------------------------------------

def filed_parents(db, message_ids):
    """{Message-ID: ref of its item (or None)} for those of `message_ids` already filed."""
    import sqlalchemy as sa

    from queue_app.models import InboundEmail, WorkItem

    rows = db.session.execute(
        sa.select(InboundEmail.message_id, WorkItem.ref)
        .outerjoin(WorkItem, WorkItem.id == InboundEmail.work_item_id)
        .where(InboundEmail.message_id.in_(message_ids), InboundEmail.status.notin_(("received", "duplicate")))
    ).all()
    db.session.rollback()
    return dict(rows)


def filing_progress(db):
    """(stored emails, of them still `received`)."""
    import sqlalchemy as sa

    from queue_app.models import InboundEmail

    total, received = db.session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(InboundEmail.status == "received"))).one()
    db.session.rollback()
    return total, received


def as_utc(value):
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def reset_database(bench):
    """An empty database for the migrations: PostgreSQL's public schema dropped, a SQLite file removed."""
    import sqlalchemy as sa

    db = bench.db
    engine = db.engine
    if "work_items" in sa.inspect(engine).get_table_names() and not bench.reset_ok:
        with engine.connect() as conn:
            if conn.scalar(sa.text("SELECT count(*) FROM work_items")):
                sys.exit("the database has work items; pass --reset to drop every table and start again")
    db.session.remove()
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    else:
        engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(engine.url.database + suffix).unlink(missing_ok=True)
    engine.dispose()


def sibling_database(url, name):
    """A fresh PostgreSQL database `name` on the server of `url` (for the ceiling run); its URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return engine.url.set(database=name).render_as_string(hide_password=False)


def drop_database(url):
    import sqlalchemy as sa

    target = sa.make_url(url)
    engine = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    engine.dispose()


# --- the run ----------------------------------------------------------------------------------

def start_processes(bench, args, smtp_port, sink_port):
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{sink_port}",
                             "-c", "aiosmtpd.handlers.Sink"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    sink.bench_name = "ack-sink"
    bench.procs.append(sink)
    bench.env.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(sink_port))  # the acknowledgements go to the sink
    for n in range(args.workers):
        bench.start(f"intake-worker-{n}", "worker", "intake", "--no-fork")
    bench.start("worker", "worker", "mail_out", "default", "--no-fork")
    bench.start("checks-worker", "worker", "checks", "--no-fork")
    bench.start("sla-worker", "worker", "sla", "--no-fork")
    bench.start("scheduler", "scheduler")
    smtp = bench.start("intake-smtp", "intake", "smtp", "--host", "127.0.0.1", "--port", str(smtp_port))
    wait_until_ready(bench, args.workers + 3)
    wait_for_port(sink_port, sink)
    wait_for_port(smtp_port, smtp)


def run_smtp(bench, args, planned):
    from flask_migrate import upgrade

    reset_database(bench)
    upgrade()
    intake_file.seed(bench.db)
    smtp_port, sink_port = free_port(), free_port()
    start_processes(bench, args, smtp_port, sink_port)
    log(f"intake smtp on port {smtp_port}; acknowledgements to the sink on port {sink_port}; "
        f"processes: {', '.join(p.bench_name for p in bench.procs)}")

    relay = Relay(planned, smtp_port, args.connections, args.per_session)
    cpu_before = {p.bench_name: cpu_seconds(p.pid) for p in bench.procs}
    load_before = os.getloadavg()[0]
    started = time.time()
    deadline = started + args.timeout
    relay.run()
    next_report = started + 10
    while True:
        if relay.watch:
            for message_id, ref in filed_parents(bench.db, list(relay.watch)).items():
                relay.filed(message_id, ref)
        sending = any(t.is_alive() for t in relay.threads)
        total, received = filing_progress(bench.db)
        now = time.time()
        if now >= next_report:
            log(f"  {now - started:5.0f} s: answered {len(relay.results)} / {len(planned)}, "
                f"stored {total}, not yet filed {received}, tag replies waiting "
                f"{sum(map(len, relay.waiting_filed.values()))}")
            next_report += 10
        if not sending and received == 0:
            break
        if now > deadline:
            if relay.waiting_filed:
                relay.give_up_waiting()
            elif not sending:
                break
        for proc in bench.procs:
            if proc.poll() is not None:
                sys.exit(f"{proc.bench_name} exited; see {bench.tmp / (proc.bench_name + '.log')}")
        time.sleep(0.2)
    cpu_after = {p.bench_name: cpu_seconds(p.pid) for p in bench.procs}
    load_after = os.getloadavg()[0]
    bench.stop_all()
    return relay, cpu_before, cpu_after, (load_before, load_after)


def report_smtp(bench, args, planned, expected, relay, cpu_before, cpu_after, loads):
    import sqlalchemy as sa

    from queue_app.models import InboundEmail

    db = bench.db
    results = relay.results
    accepted = [r for r in results.values() if r[0] == 250]
    latencies = sorted(r[1] * 1000 for r in accepted)
    first_data = min(r[2] for r in accepted)
    last_250 = max(r[3] for r in accepted)
    accepted_rate = len(accepted) / (last_250 - first_data)
    ungated = [r for index, r in results.items() if r[0] == 250 and planned[index].kind != "tag"]
    ungated_rate = len(ungated) / (max(r[3] for r in ungated) - first_data)

    rows = db.session.execute(sa.select(InboundEmail.id, InboundEmail.message_id, InboundEmail.status,
                                        InboundEmail.work_item_id, InboundEmail.processed_at)
                              .order_by(InboundEmail.id)).all()
    db.session.rollback()
    outcomes = Counter(row.status for row in rows)
    outcomes["refused"] = sum(1 for r in results.values() if r[0] not in (250, None) and r[1] is None)
    filed_at = [as_utc(row.processed_at).timestamp() for row in rows if row.processed_at is not None]
    unfiled = outcomes["received"]
    end_to_end = len(accepted) / (max(filed_at) - first_data) if filed_at and not unfiled else None

    first_row = {}
    for row in rows:  # the message's own row, not a later duplicate's
        if row.status != "duplicate":
            first_row.setdefault(row.message_id, row)
    misthreaded, as_new, not_filed, replies = 0, 0, 0, 0
    for entry in planned:
        if entry.kind not in ("reply", "tag"):
            continue
        replies += 1
        mine, parent = first_row.get(entry.message_id), first_row.get(planned[entry.parent].message_id)
        if mine is None or mine.status == "received" or parent is None:
            not_filed += 1
        elif mine.work_item_id != parent.work_item_id:
            misthreaded += 1
            as_new += mine.status == "created"

    wanted = expected_over_smtp(planned, expected)
    waited = sorted(e.waited for e in planned if e.waited is not None)
    log("")
    log(f"RESULT live SMTP intake ({bench.db_label}; {len(planned)} messages, {args.connections} connections, "
        f"{args.per_session} per session; {args.workers} x worker intake --no-fork, worker mail_out default --no-fork, "
        f"worker checks --no-fork, worker sla --no-fork, scheduler)")
    log(f"  accepted:     {len(accepted)} messages at {accepted_rate:.0f} msg/s (first DATA to last 250, "
        f"{last_250 - first_data:.1f} s)")
    log(f"                {len(ungated)} of them not tag replies (which wait for filing) at {ungated_rate:.0f} msg/s "
        f"(first DATA to the last 250 of those)")
    log(f"  DATA->250:    p50 {percentile(latencies, 50):.1f} ms  p95 {percentile(latencies, 95):.1f} ms  "
        f"p99 {percentile(latencies, 99):.1f} ms  max {latencies[-1]:.1f} ms")
    if end_to_end is not None:
        log(f"  end to end:   {end_to_end:.1f} msg/s (first DATA to the last filed, {max(filed_at) - first_data:.1f} s)")
    else:
        log(f"  end to end:   not measured: {unfiled} of {len(rows)} stored messages still unfiled after "
            f"--timeout {args.timeout} s")
    log("  outcomes:     " + ", ".join(f"{outcomes[k]} {k}" for k in
                                       ("created", "followup", "duplicate", "quarantined", "refused", "received")))
    matches = all(outcomes[k] == wanted[k] for k in ("created", "followup", "duplicate", "quarantined", "refused"))
    log("  expected:     " + ", ".join(f"{wanted[k]} {k}" for k in
                                       ("created", "followup", "duplicate", "quarantined", "refused"))
        + ("  OK" if matches else "  MISMATCH"))
    log(f"  mis-threaded: {misthreaded} of {replies} replies not on their parent's item ({as_new} filed as new "
        f"items); {not_filed} not filed")
    if waited:
        log(f"  tag replies:  {len(waited)} waited for their parent's filing: p50 {percentile(waited, 50):.1f} s, "
            f"max {waited[-1]:.1f} s; {sum(e.unverified for e in planned)} sent unverified after the timeout")
    failed = sum(1 for r in results.values() if r[0] != 250 and r[1] is not None)
    if failed:
        log(f"  DATA refused: {failed} messages got no 250 after DATA")
    if relay.errors:
        log(f"  relay errors: {len(relay.errors)}, first: {relay.errors[0]}")
    elapsed = (max(filed_at) if filed_at else last_250) - first_data
    cpu = ", ".join(f"{name} {cpu_after[name] - cpu_before[name]:.1f} s" for name in cpu_before
                    if cpu_before[name] is not None and cpu_after.get(name) is not None)
    log(f"  CPU:          {cpu} (over {elapsed:.0f} s)")
    log(f"  load average: {loads[0]:.1f} before / {loads[1]:.1f} after (1 min, {os.cpu_count()} CPUs)")
    figures = {"accepted msg/s": accepted_rate, "DATA->250 p99 ms": percentile(latencies, 99),
               "end-to-end msg/s": end_to_end or 0.0, "mis-threaded": misthreaded + not_filed}
    passed = {
        "accepted msg/s": figures["accepted msg/s"] >= TARGETS["accepted msg/s"],
        "DATA->250 p99 ms": figures["DATA->250 p99 ms"] <= TARGETS["DATA->250 p99 ms"],
        "end-to-end msg/s": figures["end-to-end msg/s"] >= TARGETS["end-to-end msg/s"],
        "mis-threaded": figures["mis-threaded"] == 0,
    }
    for name, ok in passed.items():
        sign = ">=" if "msg/s" in name else ("<=" if "ms" in name else "==")
        log(f"  {'PASS' if ok else 'FAIL'}  {name} {figures[name]:.1f} (target {sign} {TARGETS[name]})")
    return all(passed.values()) and matches


def run_ceiling(bench, args, messages):
    """The same corpus through `flask intake file` on another fresh database: msg/s."""
    mbox = make_corpus.write_mbox(bench.tmp / "corpus.mbox", messages)
    url = None
    if bench.db.engine.dialect.name == "postgresql":
        url = sibling_database(bench.db.engine.url.render_as_string(hide_password=False),
                               f"{bench.db.engine.url.database}_file")
    bench.db.session.remove()
    bench.ctx.pop()  # else the command would run in this app's context, on the SMTP run's database
    try:
        app, result, wall, cpu, child_cpu = intake_file.import_once(bench.tmp, [mbox], "file.db", database_url=url)
        with app.app_context():
            bench.db.engine.dispose()  # its connections would keep the database from being dropped
    finally:
        bench.ctx.push()
    if url and not args.keep:
        drop_database(url)
    log(f"  ceiling:      intake file {len(messages) / wall:.0f} msg/s ({wall:.1f} s wall, CPU {cpu:.1f} s + "
        f"{child_cpu:.1f} s read-ahead; {result.output.strip().splitlines()[-1]})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--per-session", type=int, default=20, help="messages per SMTP session, then QUIT")
    parser.add_argument("--workers", type=int, default=1, help="`worker intake --no-fork` processes (filers)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--reset", action="store_true", help="allow emptying a database that has work items")
    parser.add_argument("--redis-url", help="default: database --redis-db of $REDIS_URL; it is FLUSHED")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--timeout", type=float, default=600, help="give up waiting for filing after N s")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, logs)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the `intake file` run")
    args = parser.parse_args(argv)

    messages, expected = make_corpus.generate(args.count, args.seed)
    os.environ.update(MAIL_FROM=f"Backdesk <{MAIL_FROM}>", MAIL_DOMAIN="backdesk.example.com",
                      SMTP_TLS="none", SECRET_KEY=secrets.token_hex(32))
    os.environ.pop("SMTP_USER", None)
    os.environ.pop("SMTP_PASSWORD", None)
    bench = Bench(args)
    try:
        planned = plan(messages)
        log(f"corpus: {len(messages)} messages ({sum(map(len, messages)) / 1e6:.1f} MB), seed {args.seed}: "
            + ", ".join(f"{v} {k}" for k, v in sorted(Counter(p.kind for p in planned).items()))
            + f"; started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        ok = report_smtp(bench, args, planned, expected, *run_smtp(bench, args, planned))
        if not args.no_ceiling:
            run_ceiling(bench, args, messages)
    finally:
        bench.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
