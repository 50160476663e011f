"""IMAP intake benchmark: one poll of N unseen messages on a throwaway Dovecot.

    .venv/bin/python bench/intake_imap.py [--count 1000] [--seed 1] [--database-url URL]

The corpus is bench/make_corpus.py's, appended to a Dovecot mailbox (tests/integration/dovecot.py,
Debian's dovecot-imapd) before the clock starts. The database is fresh and seeded as
bench/intake_file.py seeds it; the `help@` mailbox polls the account. One `poll` (the job's work,
in this process) is timed: fetching and storing the unseen messages in chunks, marking them
\\Seen after each chunk's commit, then filing them all with the single filer. Printed: the poll's
msg/s, and how the time splits between storing + marking and filing; the outcomes; the messages
still unseen afterwards (0 expected). No Redis is needed.
"""
import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import intake_file  # noqa: E402
import make_corpus  # noqa: E402
from tests.integration.dovecot import Dovecot, dovecot_binary  # noqa: E402

MAILBOX = "help@backdesk.example.com"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file (this one is emptied)")
    args = parser.parse_args(argv)
    if dovecot_binary() is None:
        sys.exit("dovecot is not installed (apt-get install -y dovecot-imapd)")
    messages, _expected = make_corpus.generate(args.count, args.seed)
    work = Path(tempfile.mkdtemp(prefix="backdesk-imap-bench-"))
    (work / "instance").mkdir()
    server = Dovecot().start()
    try:
        user, password = server.add_user()
        server.append_many(user, password, messages)
        run(work, args, server, user, password, len(messages))
    finally:
        server.stop()


def run(work, args, server, user, password, count):
    import sqlalchemy as sa
    from flask_migrate import upgrade

    from queue_app.extensions import db
    from queue_app.models import Mailbox
    from queue_app.services.intake import filer
    from workers import intake_poll

    app = intake_file.make_app(work, database_url=args.database_url)
    with app.app_context():
        if args.database_url:
            db.drop_all()
            with db.engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        upgrade()
        intake_file.seed(db)
        box = db.session.scalar(sa.select(Mailbox).where(Mailbox.address == MAILBOX))
        box.imap_host, box.imap_port, box.imap_tls = server.host, server.port, "none"
        box.imap_user, box.imap_password = user, password
        db.session.commit()

        real_drain, filing = filer.drain, {}

        def timed_drain(session, **options):
            started = time.perf_counter()
            try:
                return real_drain(session, **options)
            finally:
                filing["seconds"] = time.perf_counter() - started

        intake_poll.filer.drain = timed_drain
        started = time.perf_counter()
        counts = intake_poll.poll(db.session, box)
        wall = time.perf_counter() - started
    unseen = sum(1 for _, flags, _ in server.messages(user, password) if "\\Seen" not in flags)
    outcomes = Counter({k: v for k, v in counts.items() if k in ("created", "followup", "duplicate", "quarantined")})
    print(f"IMAP poll of {count} unseen messages ({'PostgreSQL' if args.database_url else 'SQLite'}):")
    print(f"  poll:      {count / wall:.0f} msg/s ({wall:.1f} s)")
    print(f"  storing + marking: {wall - filing['seconds']:.1f} s; filing: {filing['seconds']:.1f} s "
          f"({count / filing['seconds']:.0f} msg/s)")
    print(f"  outcomes:  {dict(outcomes)}; still unseen: {unseen}")


if __name__ == "__main__":
    main()
