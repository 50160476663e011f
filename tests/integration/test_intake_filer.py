"""The single filer: stored mail is filed in arrival order, once, whatever runs at the same time.

Mail goes in through real SMTP sessions (the intake server in this process) or is stored
directly (`filing.receive`); filing runs in real `flask worker intake` processes, in a child
process that is killed halfway, or in this process (`filer.drain`).
"""
import smtplib
import socket
import threading
import time
from collections import Counter
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from queue_app.extensions import db
from queue_app.models import InboundEmail, Message, OutboxJob, WorkItem
from queue_app.services.intake import filer, filing, mailboxes
from tests.integration.conftest import use_redis, wait_for
from workers.smtp_server import make_controller

MAILBOX = "returns@backdesk.example.com"


@pytest.fixture
def mailbox(session, make_team):
    team = make_team(name="Returns")
    box = mailboxes.create_mailbox(session, address=MAILBOX, type="general", team_name=team.name)
    session.commit()
    return box


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_email(n, parent=None, sender=None):
    """Email n of a conversation; a reply names its parent's Message-ID."""
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender or f"customer{n % 17}@example.com"
    msg["To"] = MAILBOX
    msg["Subject"] = f"Re: request {parent}" if parent is not None else f"Request {n}"
    msg["Message-ID"] = mid(n)
    if parent is not None:
        msg["In-Reply-To"] = mid(parent)
        msg["References"] = mid(parent)
    msg.set_content(f"Message {n}.\n")
    return msg.as_bytes()


def mid(n):
    return f"<m{n}@mail.example.com>"


def conversation(parents, replies_each):
    """(n, parent or None): each parent, then replies to it or to an earlier reply, interleaved."""
    messages, n = [], 0
    for p in range(parents):
        messages.append((n, None))
        thread, n = [n], n + 1
        for _ in range(replies_each):
            messages.append((n, thread[-1] if n % 2 else thread[0]))
            thread.append(n)
            n += 1
    # Interleave conversations: replies follow their parent in the list, not right after it.
    return sorted(messages, key=lambda m: (m[0] % (replies_each + 1), m[0]))


def committed_outcomes(app):
    """Message-ID -> (status, item id) of the first stored copy of each email, as committed."""
    with Session(db.engine) as other:
        rows = other.scalars(sa.select(InboundEmail).where(InboundEmail.duplicate_of_id.is_(None))
                             .order_by(InboundEmail.id)).all()
    outcomes = {}
    for row in rows:
        outcomes.setdefault(row.message_id, (row.status, row.work_item_id))
    return outcomes


def store(session, raw):
    inbound = filing.receive(session, raw, source="smtp", envelope_to=[MAILBOX],
                             mailbox=mailboxes.mailbox_for(session, [MAILBOX]))
    session.commit()
    return inbound.id


def assert_threaded(outcomes, messages):
    """Every email filed once; each reply on its parent's item; one item per conversation."""
    item_of = {}
    for n, parent in messages:
        status, item_id = outcomes[mid(n)]
        assert status == ("created" if parent is None else "followup"), (n, parent, status)
        item_of[n] = item_id
        if parent is not None:
            assert item_id == item_of[parent], f"reply {n} is not on its parent {parent}'s item"


def test_replies_interleaved_across_connections_and_workers_land_on_their_parents_item(
        app, session, mailbox, rconn, procs, deliver_on_commit):
    for name in ("worker-a", "worker-b"):
        procs.flask(name, "worker", "intake", "--no-fork")
    scheduler = procs.flask("scheduler", "scheduler", SLA_SWEEP_SECONDS=1)  # its intake sweep kicks too
    port = free_port()
    controller = make_controller(app, "127.0.0.1", port)
    controller.start()
    messages = conversation(parents=30, replies_each=5)
    accepted = {n: threading.Event() for n, _ in messages}
    lanes = [messages[i::8] for i in range(8)]
    errors = []

    def deliver(lane):
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                for n, parent in lane:
                    if parent is not None:
                        assert accepted[parent].wait(30)  # a reply is only sent once its parent was taken
                    smtp.sendmail(f"customer{n % 17}@example.com", [MAILBOX], make_email(n, parent))
                    accepted[n].set()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(lane,)) for lane in lanes]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        wait_for(lambda: all(s != "received" for s, _ in committed_outcomes(app).values())
                 and len(committed_outcomes(app)) == len(messages), 60, "every email filed", procs,
                 watch=[scheduler])
    finally:
        controller.stop()
    assert_threaded(committed_outcomes(app), messages)
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 30


def test_a_reply_that_arrived_before_its_parent_is_joined_by_the_parent(app, session, mailbox):
    # Across batches: the reply is filed (as a new item) before its parent arrives.
    store(session, make_email(2, parent=1))
    assert filer.drain(session) == Counter(created=1)
    store(session, make_email(1))
    assert filer.drain(session) == Counter(followup=1)
    # In one batch: the reply was stored first.
    store(session, make_email(12, parent=11))
    store(session, make_email(11))
    assert filer.drain(session) == Counter(created=1, followup=1)

    outcomes = committed_outcomes(app)
    assert outcomes[mid(1)][1] == outcomes[mid(2)][1]
    assert outcomes[mid(11)][1] == outcomes[mid(12)][1]
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 2


def test_a_filer_killed_in_the_middle_of_a_batch_leaves_it_for_the_next(app, session, mailbox, procs):
    messages = conversation(parents=20, replies_each=4)
    for n, parent in messages:
        store(session, make_email(n, parent, sender=f"c{n}@example.com"))
    # A filer that stops for good halfway through its one batch of 100, holding the filing lock.
    script = (
        "import sys, time\n"
        "from queue_app import create_app\n"
        "from queue_app.extensions import db\n"
        "from queue_app.services.intake import filer, filing\n"
        "app = create_app()\n"
        "app.config['INTAKE_FILER_HOLD_SECONDS'] = None  # one batch of 100, not sized by the lock's time\n"
        "real, seen = filing.process, []\n"
        "def slow(*a, **k):\n"
        "    seen.append(1)\n"
        "    if len(seen) == 50:\n"
        "        print('halfway', flush=True); time.sleep(600)\n"
        "    return real(*a, **k)\n"
        "filing.process = slow\n"
        "with app.app_context():\n"
        "    filer.drain(db.session, batch_size=100)\n"
    )
    child = procs.python("filer", script)
    wait_for(lambda: "halfway" in child.output(), 60, "the filer to reach the middle of its batch", procs,
             watch=[child])
    child.kill()

    session.expire_all()
    assert {s for s, _ in committed_outcomes(app).values()} == {"received"}
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxJob)) == 0

    assert filer.drain(session) == Counter(created=20, followup=80)
    assert_threaded(committed_outcomes(app), messages)
    acks = session.scalars(sa.select(Message.to_addresses).where(Message.is_automatic.is_(True))).all()
    assert sorted(acks) == sorted(f"c{n}@example.com" for n, parent in messages if parent is None)  # once each
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxJob)
                          .where(OutboxJob.job_path == "workers.mail_out.send_message")) == 20


def test_mail_that_arrives_while_redis_is_unreachable_is_filed_once_when_it_is_back(
        app, session, mailbox, rconn, procs, deliver_on_commit, worker_redis_url):
    from workers.intake_jobs import sweep

    use_redis(app, "redis://127.0.0.1:9/0")  # nothing listens there
    port = free_port()
    controller = make_controller(app, "127.0.0.1", port)
    controller.start()
    messages = conversation(parents=10, replies_each=3)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            for n, parent in messages:
                smtp.sendmail("x@example.com", [MAILBOX], make_email(n, parent))
    finally:
        controller.stop()
        use_redis(app, worker_redis_url)
    assert {s for s, _ in committed_outcomes(app).values()} == {"received"}

    procs.flask("worker", "worker", "intake", "--no-fork")
    assert sweep(older_than_seconds=0) == len(messages)  # the scheduler's sweep, once Redis is back
    wait_for(lambda: all(s != "received" for s, _ in committed_outcomes(app).values()), 60, "the backlog filed",
             procs)
    assert_threaded(committed_outcomes(app), messages)
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxJob)
                          .where(OutboxJob.job_path == "workers.mail_out.send_message")) == 10


def test_an_smtp_server_restarted_during_a_delivery_loses_and_doubles_nothing(app, session, mailbox):
    """The relay re-sends what got no 250; a message stored just before the stop is a duplicate."""
    port = free_port()
    controller = make_controller(app, "127.0.0.1", port)
    controller.start()
    messages = conversation(parents=15, replies_each=3)
    accepted, refused = [], 0

    def restart():
        nonlocal controller
        controller.stop()
        controller = make_controller(app, "127.0.0.1", port)
        controller.start()

    restarter = threading.Timer(0.3, restart)
    restarter.start()
    pending = list(messages)
    deadline = time.monotonic() + 60
    while pending:
        assert time.monotonic() < deadline
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                while pending:
                    n, parent = pending[0]
                    smtp.sendmail("x@example.com", [MAILBOX], make_email(n, parent))
                    accepted.append(n)
                    pending.pop(0)
                    time.sleep(0.01)
        except (smtplib.SMTPException, OSError):
            refused += 1  # the relay keeps the message and tries again
            time.sleep(0.1)
    restarter.join()
    controller.stop()
    assert refused >= 1  # the restart really cut a delivery

    counts = filer.drain(session)
    outcomes = committed_outcomes(app)
    assert set(outcomes) == {mid(n) for n, _ in messages}  # every message stored (Message-ID kept once)
    assert counts["created"] == 15 and counts["followup"] == len(messages) - 15
    with Session(db.engine) as other:
        rows = other.scalars(sa.select(InboundEmail)).all()
    assert all(r.status in ("created", "followup", "duplicate") for r in rows)
    assert sum(r.status == "duplicate" for r in rows) == len(rows) - len(messages)
    assert_threaded(outcomes, messages)


def test_the_filer_reads_each_item_afresh_though_it_keeps_what_it_loaded(app, session, mailbox, monkeypatch):
    """The filer's session keeps its objects across its commits (for speed); an item changed by
    someone else between two batches is still read as it is now."""
    monkeypatch.setitem(app.config, "INTAKE_FILER_HOLD_SECONDS", None)
    store(session, make_email(1))
    store(session, make_email(2, parent=1))
    real, kept = filer._file_batch, []

    def then_close(*args):
        done = real(*args)
        if not kept:
            kept.extend(session.scalars(sa.select(WorkItem)).all())  # held, as loaded by the first batch
            with Session(db.engine) as other:  # a person closes the item before the next batch
                other.execute(sa.update(WorkItem).values(status="closed"))
                other.commit()
        return done

    monkeypatch.setattr(filer, "_file_batch", then_close)
    assert filer.drain(session, batch_size=1) == Counter(created=2)  # a closed item is not reopened
    outcomes = committed_outcomes(app)
    assert outcomes[mid(2)][1] != outcomes[mid(1)][1] and kept[0].status == "closed"
