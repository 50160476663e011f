#!/usr/bin/env python
"""Automated checks benchmark (not run by `make test`): document verification at volume.

N document-verification items (default 1,000), each with its own ~200 KB PDF (one page
showing a 260x260 RGB scan image, so the bytes are as incompressible as a real scan), are
created through services.items.lifecycle.create_item with the file attached in the same
transaction, as email intake does; each item's check job waits in the outbox. Then TWO
worker processes (`flask --app wsgi worker checks --no-fork`, as `run-all` runs them: jobs
in the worker process; --fork for RQ's default forking Worker, a work horse per job) are
started and left to become ready, the outbox is relayed to Redis, and the clock runs from
the first enqueue until the last item's last result is committed. It prints items/s (the target: at least 50), the
per-worker split and the result statuses (every check should pass).

Defaults: a fresh SQLite database in a temporary directory (removed afterwards unless
--keep) and Redis database 12 of $REDIS_URL (or redis://127.0.0.1:6379), which is FLUSHED
before and after. With --database-url (e.g. PostgreSQL) every table of that database is
dropped and created again: pass --reset to allow it when it has data.

  .venv/bin/python bench/checks.py
  .venv/bin/python bench/checks.py --items 2000 --fork
  .venv/bin/python bench/checks.py --database-url postgresql+psycopg://user@127.0.0.1:5432/bench --reset
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_PER_SECOND = 50
IMAGE_SIDE = 260  # 260 x 260 x 3 bytes = 202,800 bytes of image: a ~200 KB PDF
SERIAL = b"BENCH0000000"


def log(message):
    print(message, flush=True)


def template_pdf():
    """A one-page PDF showing a random 260x260 RGB image, with a fixed-width serial in its metadata.

    Every item gets a copy with its own serial (same length, so the xref offsets stay right):
    distinct SHA-256s, as distinct scans would have.
    """
    from pypdf import PdfWriter
    from pypdf.generic import (
        ArrayObject,
        DictionaryObject,
        NameObject,
        NumberObject,
        StreamObject,
    )

    rng = random.Random(7)
    writer = PdfWriter()
    page = writer.add_blank_page(width=595, height=842)
    image = StreamObject()
    image.set_data(rng.randbytes(IMAGE_SIDE * IMAGE_SIDE * 3))
    image.update({NameObject("/Type"): NameObject("/XObject"), NameObject("/Subtype"): NameObject("/Image"),
                  NameObject("/Width"): NumberObject(IMAGE_SIDE), NameObject("/Height"): NumberObject(IMAGE_SIDE),
                  NameObject("/ColorSpace"): NameObject("/DeviceRGB"),
                  NameObject("/BitsPerComponent"): NumberObject(8)})
    image_ref = writer._add_object(image)
    page[NameObject("/Resources")] = DictionaryObject({
        NameObject("/XObject"): DictionaryObject({NameObject("/Im0"): image_ref}),
        NameObject("/ProcSet"): ArrayObject([NameObject("/PDF"), NameObject("/ImageC")])})
    content = StreamObject()
    content.set_data(b"q 595 0 0 842 0 0 cm /Im0 Do Q")
    page[NameObject("/Contents")] = writer._add_object(content)
    writer.add_metadata({"/Title": SERIAL.decode()})
    out = BytesIO()
    writer.write(out)
    data = out.getvalue()
    assert data.count(SERIAL) == 1
    return data


class Bench:
    """Temp dir, environment, app and Redis for one run; close() stops the workers and cleans up."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="backdesk-bench-checks-"))
        database_url = args.database_url or f"sqlite:///{self.tmp / 'bench.db'}"
        base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        self.redis_url = urlsplit(base)._replace(path=f"/{args.redis_db}").geturl()
        self.env = dict(os.environ, BACKDESK_ENV="testing", DATABASE_URL=database_url, REDIS_URL=self.redis_url,
                        BACKDESK_INSTANCE_DIR=str(self.tmp / "instance"), PYTHONUNBUFFERED="1")
        os.environ.update(self.env)
        (self.tmp / "instance").mkdir()

        import redis

        from queue_app import create_app
        from queue_app.extensions import db

        self.app = create_app()
        self.app.config["OUTBOX_DELIVER_ON_COMMIT"] = False  # the jobs wait in the outbox until the relay
        self.ctx = self.app.app_context()
        self.ctx.push()
        self.db = db
        self.redis = redis.Redis.from_url(self.redis_url)
        self.redis.ping()
        self.redis.flushdb()
        self.procs = []
        url = db.engine.url
        log(f"database: {url.get_backend_name()} {url.database}   redis: {self.redis_url} (flushed)   dir: {self.tmp}")

    def reset_schema(self):
        import sqlalchemy as sa

        db = self.db
        inspector = sa.inspect(db.engine)
        if "work_items" in inspector.get_table_names() and not self.args.reset:
            with db.engine.connect() as conn:
                if conn.scalar(sa.text("SELECT count(*) FROM work_items")):
                    sys.exit("the database has work items; pass --reset to drop every table and start again")
        db.drop_all()
        db.create_all()

    def start_worker(self, name):
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "checks"]
        if not self.args.fork:
            command.append("--no-fork")
        logfile = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen(command, cwd=ROOT, env=dict(self.env, LOG_LEVEL="WARNING"), stdout=logfile,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.bench_name = name
        self.procs.append(proc)
        return proc

    def stop_workers(self):
        for proc in self.procs:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.procs = []

    def close(self):
        self.stop_workers()
        self.db.session.remove()
        self.db.engine.dispose()
        self.redis.flushdb()
        self.ctx.pop()
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def create_items(bench, count, pdf):
    """Items created by the real service, each with its PDF attached in the same transaction."""
    from queue_app.db.blobs import store_blob
    from queue_app.models import Attachment, Message, Team
    from queue_app.services.items import lifecycle

    session = bench.db.session
    team = Team(name="Documents", work_types=["document_verification"])
    session.add(team)
    session.flush()
    started = time.perf_counter()
    for n in range(count):
        data = pdf.replace(SERIAL, f"BENCH{n:07d}".encode())
        item = lifecycle.create_item(
            session, actor=None, source="email", type="document_verification", subject=f"Passport {n}",
            team=team, requester_email=f"customer{n}@example.com",
            fields={"document_type": "passport", "document_number": f"P{n:07d}", "expires_on": "2031-06-30"})
        message = Message(work_item_id=item.id, kind="inbound", from_address=item.requester_email,
                          body_text="My passport, attached.")
        session.add(message)
        session.flush()
        session.add(Attachment(message_id=message.id, filename=f"passport-{n}.pdf", content_type="application/pdf",
                               size=len(data), sha256=store_blob(session, data)))
        if n % 100 == 99:
            session.commit()
    session.commit()
    log(f"created {count} items with a {len(pdf) // 1024} KB PDF each in {time.perf_counter() - started:.1f} s")


def wait_until_ready(bench, workers, timeout=30):
    """Both workers registered with RQ and listening."""
    from rq import Worker

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(Worker.all(connection=bench.redis)) >= workers:
            return
        for proc in bench.procs:
            if proc.poll() is not None:
                sys.exit(f"{proc.bench_name} exited early; see {bench.tmp / (proc.bench_name + '.log')}")
        time.sleep(0.1)
    sys.exit("the workers did not start in time")


def run(args):
    import sqlalchemy as sa

    from queue_app.models import CheckResult, WorkItem
    from queue_app.services.checks.rules import CHECKS_BY_TYPE
    from workers.relay import relay_pending

    bench = Bench(args)
    try:
        bench.reset_schema()
        pdf = template_pdf()
        create_items(bench, args.items, pdf)
        per_item = len(CHECKS_BY_TYPE["document_verification"])
        expected = args.items * per_item
        for n in range(args.workers):
            bench.start_worker(f"worker{n + 1}")
        wait_until_ready(bench, args.workers)
        mode = "forking Worker (--fork)" if args.fork else "SimpleWorker (--no-fork)"
        log(f"{args.workers} workers ready ({mode}); relaying {args.items} check jobs")

        session = bench.db.session
        started = time.time()
        relayed = 0
        while True:
            sent = relay_pending(session, limit=500)
            relayed += sent
            if not sent:
                break
        enqueued = time.time()
        deadline = started + args.timeout
        done = 0
        while time.time() < deadline:
            session.rollback()
            done = session.scalar(sa.select(sa.func.count()).select_from(CheckResult))
            if done >= expected:
                break
            time.sleep(0.2)
        session.rollback()
        if done < expected:
            sys.exit(f"timed out: {done} of {expected} results after {args.timeout} s; logs in {bench.tmp}")
        last = session.scalar(sa.select(sa.func.max(CheckResult.created_at)))
        first = session.scalar(sa.select(sa.func.min(CheckResult.created_at)))
        elapsed = last.timestamp() - started
        rate = args.items / elapsed
        statuses = dict(session.execute(sa.select(CheckResult.status, sa.func.count())
                                        .group_by(CheckResult.status)).all())
        flagged = session.scalar(sa.select(sa.func.count()).select_from(WorkItem)
                                 .where(WorkItem.needs_attention.is_(True)))
        url = bench.db.engine.url
        log(f"relayed {relayed} jobs in {enqueued - started:.2f} s; first result after "
            f"{first.timestamp() - started:.2f} s")
        log(f"results: {done} ({per_item} checks x {args.items} items): "
            + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) + f"; items needing attention: {flagged}")
        verdict = "OK" if rate >= TARGET_PER_SECOND else "BELOW TARGET"
        log(f"{url.get_backend_name()}, {args.workers} workers ({mode}): {args.items} items in {elapsed:.2f} s = "
            f"{rate:.1f} items/s ({rate * per_item:.0f} checks/s)  [target >= {TARGET_PER_SECOND} items/s: {verdict}]")
        return rate
    finally:
        bench.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fork", action="store_true", help="RQ's forking Worker: a work horse per job")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--reset", action="store_true", help="allow dropping the tables of --database-url")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    args = parser.parse_args()
    run(args)


if __name__ == "__main__":
    main()
