"""Benchmark `flask intake file` end to end on a generated corpus, against the `email` package alone.

    .venv/bin/python bench/intake_file.py [--count 5000] [--format mbox|eml] [--seed 1]
                                          [--corpus PATH] [--profile [N]] [--keep]

Each run uses a fresh SQLite database in a temporary instance directory, built by the
migrations (`flask db upgrade`), then adds what a real installation has: teams with
business calendars (Europe/Berlin office hours with German holidays), SLA policies,
routing rules and the four mailboxes bench/make_corpus.py writes to. No Redis is needed:
jobs stay in the outbox table (OUTBOX_DELIVER_ON_COMMIT=false), as they do when Redis is down.

Measured:
- end to end: the `intake file` command (read the mbox or .eml files, store raw bytes,
  parse, detect duplicates, thread, route, start the SLA clock, acknowledge, write the
  outbox jobs, commit), invoked in-process through Flask's CLI runner, with its own defaults
  (batches of 200 messages per transaction; with 2+ CPUs a second process reads and parses
  ahead of the writer) unless --no-read-ahead / --batch-size say otherwise; the CPU time
  of the importing process and of the read-ahead process is printed too;
- the `email` package alone on the same bytes: email.message_from_bytes(raw,
  policy=email.policy.default) and get_content() of every leaf part from walk();
- the ratio between the two.

It checks that the command's summary matches what the corpus generator expects, and
prints a fingerprint of the resulting database (items, messages, attachments, events,
inbound emails, outbox jobs; everything except clock-dependent values and random
Message-IDs), so that an optimisation can be shown to change no behaviour: the same
corpus must give the same fingerprint before and after.

--profile runs the command under cProfile (the first run) and prints the top N functions
(default 30). --repeat N runs the import N times, each on a fresh database, and reports the
fastest: on a shared machine single runs vary by ±25%. The wall-clock rate is the figure;
the rate per CPU second of the process is printed beside it.
"""
import argparse
import cProfile
import email
import email.policy
import hashlib
import io
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import make_corpus  # noqa: E402

TARGET = 500  # messages per second, end to end


def make_app(work, database="bench.db", database_url=None):
    os.environ.update(
        BACKDESK_ENV="development", BACKDESK_INSTANCE_DIR=str(work / "instance"),
        DATABASE_URL=database_url or f"sqlite:///{work / database}", OUTBOX_DELIVER_ON_COMMIT="false",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("SMTP_HOST", None)
    from queue_app import create_app

    return create_app()


def seed(db):
    """Teams, calendars, SLA policies, routing rules and mailboxes, as an admin would set them up."""
    from queue_app.models import Calendar, Mailbox, RoutingRule, SlaPolicy, Team
    from queue_app.models.calendar import round_the_clock_hours

    office = Calendar(name="Berlin office", timezone="Europe/Berlin", holiday_country="DE", holiday_subdivision="BE",
                      hours={d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
                      closed_dates=["2026-12-24", "2026-12-31"])
    always = Calendar(name="Round the clock", timezone="UTC", hours=round_the_clock_hours())
    db.session.add_all([office, always])
    teams = {}
    for name, types, calendar in [("Returns", ["return"], office), ("Documents", ["document_verification"], office),
                                  ("Reconciliation", ["discrepancy_fix"], office),
                                  ("Escalations", ["escalation", "general"], always)]:
        teams[name] = Team(name=name, work_types=types, calendar=calendar)
        db.session.add(teams[name])
    db.session.flush()
    for work_type, first, resolution in [("return", 240, 1440), ("document_verification", 120, 960),
                                         ("discrepancy_fix", 240, 2880), ("escalation", 60, 480),
                                         ("general", 480, 4320)]:
        db.session.add(SlaPolicy(name=f"{work_type} standard", match_type=work_type, first_response_minutes=first,
                                 resolution_minutes=resolution))
    db.session.add(SlaPolicy(name="Urgent anything", match_priority="urgent", calendar=always,
                             first_response_minutes=30, resolution_minutes=240,
                             escalation=[{"after_breach_minutes": 0, "notify": ["assignee", "supervisors"]},
                                         {"after_breach_minutes": 60, "notify": ["supervisors"],
                                          "raise_priority": True}]))
    db.session.add(SlaPolicy(name="High returns", match_type="return", match_priority="high",
                             match_team_id=teams["Returns"].id, first_response_minutes=120, resolution_minutes=720))
    db.session.add(SlaPolicy(name="Old policy", match_type="general", first_response_minutes=1, resolution_minutes=1,
                             active=False))
    for address, work_type, team in zip(make_corpus.MAILBOXES,
                                        ["return", "document_verification", "discrepancy_fix", "general"],
                                        ["Returns", "Documents", "Reconciliation", "Escalations"]):
        db.session.add(Mailbox(address=address, type=work_type, team=teams[team]))
    rules = [
        dict(name="Urgent anywhere", keywords=["urgent", "至急", "dringend"], set_priority="urgent"),
        dict(name="Refunds to Returns", keywords=["refund", "rückerstattung", "remboursement", "返金", "退款"],
             set_type="return", set_team_id=teams["Returns"].id),
        dict(name="Passports to Documents", keywords=["passport", "kyc", "書類"], set_type="document_verification",
             set_team_id=teams["Documents"].id),
        dict(name="Ledger mismatches", subject_contains="mismatch", set_type="discrepancy_fix",
             set_team_id=teams["Reconciliation"].id, set_priority="high"),
        dict(name="Invoices to Reconciliation", recipient="recon@backdesk.example.com", keywords=["invoice", "inv-"],
             set_type="discrepancy_fix"),
        dict(name="Japanese partners", sender="@example.jp", set_team_id=teams["Escalations"].id),
        dict(name="Irish customers high", sender="@example.ie", set_priority="high"),
        dict(name="Returns mailbox damaged", recipient="returns@backdesk.example.com", keywords=["damaged"],
             set_priority="high"),
        dict(name="Disabled rule", keywords=["the"], set_priority="low", active=False),
        dict(name="Forms only", source="form", set_priority="low"),
        dict(name="API only", source="api", set_priority="low"),
    ]
    for position, rule in enumerate(rules, 1):
        db.session.add(RoutingRule(position=position * 10, **{"source": "email", **rule}))
    db.session.commit()


def email_only_rate(raws):
    """Messages per second for the stdlib parser: parse, then walk and decode every leaf part."""
    start = time.perf_counter()
    for raw in raws:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        for part in msg.walk():
            if not part.is_multipart():
                try:
                    part.get_content()
                except Exception:  # noqa: S110 - broken parts count as parsed
                    pass
    return len(raws) / (time.perf_counter() - start)


def fingerprint(db, dump=None):
    """A digest of everything intake wrote that does not depend on the clock or on random Message-IDs.

    WorkItem.version (and the copy of it in the run_checks job) is left out: it is the
    optimistic-lock counter, bumped by every UPDATE the ORM emits, so its value for a new
    item counts intermediate flushes rather than recording anything that happened.

    With `dump` (an open text file) every row that goes into it is written there too, for diff.
    """
    import sqlalchemy as sa

    from queue_app.models import Attachment, Blob, Event, InboundEmail, Message, OutboxJob, SlaPolicy, Team, WorkItem

    digest = hashlib.sha256()
    volatile = {"first_response_due", "resolution_due"}

    def feed(rows):
        for row in rows:
            text = repr(tuple(row))
            digest.update(text.encode())
            if dump is not None:
                dump.write(text + "\n")

    feed(db.session.execute(
        sa.select(WorkItem.id, WorkItem.ref, WorkItem.type, WorkItem.status, WorkItem.priority, Team.name,
                  WorkItem.requester_email, WorkItem.requester_name, WorkItem.subject, WorkItem.description,
                  SlaPolicy.name, WorkItem.sla_state, WorkItem.sla_version)
        .join(Team, WorkItem.team_id == Team.id).outerjoin(SlaPolicy, WorkItem.sla_policy_id == SlaPolicy.id)
        .order_by(WorkItem.id)))
    feed(db.session.execute(
        sa.select(Message.id, Message.work_item_id, Message.kind,
                  sa.case((Message.kind == "inbound", Message.message_id), else_=None), Message.in_reply_to,
                  Message.references, Message.from_address, Message.to_addresses, Message.cc_addresses,
                  Message.subject, Message.body_text, Message.body_html, Message.is_automatic,
                  Message.flagged_for_review, Message.send_status, Message.inbound_email_id)
        .order_by(Message.id)))
    feed(db.session.execute(
        sa.select(Attachment.id, Attachment.message_id, Attachment.filename, Attachment.content_type,
                  Attachment.declared_content_type, Attachment.size, Attachment.sha256, Attachment.content_id,
                  Attachment.is_inline).order_by(Attachment.id)))
    feed(db.session.execute(sa.select(Blob.sha256, Blob.size).order_by(Blob.sha256)))
    for event in db.session.scalars(sa.select(Event).order_by(Event.id)):
        data = {k: v for k, v in (event.data or {}).items() if k not in volatile}
        feed([(event.id, event.work_item_id, event.kind, event.actor_label, sorted(data.items()))])
    feed(db.session.execute(
        sa.select(InboundEmail.id, InboundEmail.status, InboundEmail.reason, InboundEmail.detail,
                  InboundEmail.work_item_id, InboundEmail.duplicate_of_id, InboundEmail.message_id,
                  InboundEmail.sha256, InboundEmail.mailbox_id, InboundEmail.raw.is_(None), InboundEmail.attempts)
        .order_by(InboundEmail.id)))
    for job in db.session.execute(sa.select(OutboxJob.id, OutboxJob.job_path, OutboxJob.args,
                                            OutboxJob.run_at.is_(None)).order_by(OutboxJob.id)):
        # run_checks(item_id, item_version): the version is left out, like WorkItem.version above.
        args = job.args[:1] if job.job_path == "workers.checks.run_checks" else job.args
        feed([(job.id, job.job_path, args, job[3])])
    return digest.hexdigest()[:16]


def import_once(work, paths, database="bench.db", database_url=None, options=(), profiler=None):
    """One `intake file` run on a fresh, seeded database: (app, result, wall s, CPU s, read-ahead CPU s).

    Other benches call it too, so the figure they print as a ceiling is this bench's figure.
    """
    from flask_migrate import upgrade

    from queue_app.extensions import db

    app = make_app(work, database, database_url)
    with app.app_context():
        upgrade()
        seed(db)
    runner = app.test_cli_runner()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    result = runner.invoke(args=["intake", "file", *options, *map(str, paths)])
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the read-ahead process, reaped at the end
    child_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    if result.exit_code != 0:
        raise SystemExit(f"intake file failed:\n{result.output}\n{result.exception!r}")
    return app, result, wall, cpu, child_cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=["mbox", "eml"], default="mbox")
    parser.add_argument("--corpus", help="an existing mbox/Maildir/.eml to import instead of a generated corpus")
    parser.add_argument("--profile", type=int, nargs="?", const=30, default=0, metavar="N")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, corpus)")
    parser.add_argument("--dump", help="write the fingerprinted rows to this file (to diff two runs)")
    parser.add_argument("--repeat", type=int, default=1, help="runs on fresh databases; the fastest is reported")
    parser.add_argument("--read-ahead", action=argparse.BooleanOptionalAction, default=None,
                        help="passed to `intake file` (default: its own, on with 2+ CPUs)")
    parser.add_argument("--batch-size", type=int, default=None, help="passed to `intake file` (default: its own)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="backdesk-bench-"))
    try:
        expected = None
        if args.corpus:
            paths = [Path(args.corpus)]
        else:
            messages, expected = make_corpus.generate(args.count, args.seed)
            if args.format == "mbox":
                paths = [make_corpus.write_mbox(work / "corpus.mbox", messages)]
            else:
                paths = make_corpus.write_eml_folder(work / "corpus", messages)
            del messages

        from queue_app.cli.intake import read_messages
        from queue_app.extensions import db

        start = time.perf_counter()
        raws = [raw for path in paths for raw in read_messages(path)]
        read_seconds = time.perf_counter() - start
        size = sum(len(r) for r in raws)
        count = len(raws)
        baseline = max(email_only_rate(raws) for _ in range(args.repeat))
        del raws

        runs, loads = [], []
        for attempt in range(args.repeat):  # each on a fresh database; the best run is reported
            profiler = cProfile.Profile() if args.profile and attempt == 0 else None
            options = []
            if args.read_ahead is not None:
                options += ["--read-ahead" if args.read_ahead else "--no-read-ahead"]
            if args.batch_size is not None:
                options += ["--batch-size", str(args.batch_size)]
            load_before = os.getloadavg()[0]
            app, result, wall, cpu, child_cpu = import_once(work, paths, f"bench{attempt}.db", options=options,
                                                            profiler=profiler)
            loads.append((load_before, os.getloadavg()[0]))
            with app.app_context(), open(args.dump or os.devnull, "w") as dump:
                digest = fingerprint(db, dump if args.dump else None)
                db.engine.dispose()
            runs.append((wall, cpu, digest, result.output.strip().splitlines()[-1], profiler, child_cpu))
        seconds, cpu_seconds, digest, summary, profiler, child_seconds = min(runs, key=lambda r: r[0])
        rate = count / seconds
        db_size = sum(p.stat().st_size for p in work.glob("bench0.db*"))

        source = args.corpus or args.format
        print(f"corpus:        {count} messages, {size / 1e6:.1f} MB ({source})")
        print(f"summary:       {summary}")
        if expected is not None:
            wanted = (f"{count} messages: {expected['created']} new items, {expected['followup']} follow-ups, "
                      f"{expected['duplicate']} duplicates, {expected['quarantined']} quarantined")
            print(f"expected:      {wanted}{'  OK' if wanted == summary else '  MISMATCH'}")
        print(f"read only:     {count / read_seconds:8.0f} messages/s")
        print(f"email only:    {baseline:8.0f} messages/s (message_from_bytes + walk + get_content)")
        print(f"intake file:   {rate:8.0f} messages/s end to end ({seconds:.1f} s wall, {count / cpu_seconds:.0f}/s "
              f"of CPU time{', under cProfile' if profiler else ''}; best of {args.repeat}), target {TARGET}: "
              f"{'met' if rate >= TARGET else 'NOT met'}")
        print(f"CPU:           {cpu_seconds:.1f} s in the importing process, {child_seconds:.1f} s in read-ahead process "
              f"({count / (cpu_seconds + child_seconds):.0f} messages per CPU second in all)")
        print(f"ratio:         {rate / baseline:.2f} of the email package alone ({baseline / rate:.1f}x slower)")
        print(f"load average:  {', '.join(f'{a:.1f} before / {b:.1f} after' for a, b in loads)} "
              f"(1 min, {os.cpu_count()} CPUs; other work on the machine slows every figure)")
        fingerprints = sorted({r[2] for r in runs})
        print(f"database:      {db_size / 1e6:.1f} MB; fingerprint {', '.join(fingerprints)}"
              f"{'  (runs DIFFER)' if len(fingerprints) > 1 else ''}")
        if profiler:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs()
            stats.sort_stats("tottime").print_stats(args.profile)
            stats.sort_stats("cumulative").print_stats(args.profile)
            if os.environ.get("BENCH_CALLEES"):
                stats.print_callees(os.environ["BENCH_CALLEES"])
            print(out.getvalue())
        if expected is not None and wanted != summary:
            return 1
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
