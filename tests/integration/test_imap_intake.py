"""The IMAP poller against a real Dovecot (tests/integration/dovecot.py).

One Dovecot serves the whole module; each test gets an account of its own. Messages are
delivered with IMAP APPEND, and their flags and folders are read back over IMAP.
"""
import itertools
import logging
import signal
import socket
from collections import Counter
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy as sa
from imapclient import SEEN
from rq import Queue, SimpleWorker
from sqlalchemy.orm import Session

from queue_app.models import InboundEmail, Mailbox, Message, WorkItem
from queue_app.services.intake import mailboxes
from tests.integration.dovecot import Dovecot, dovecot_binary
from workers import intake_poll

_seq = itertools.count(1)


@pytest.fixture(scope="module")
def dovecot():
    if dovecot_binary() is None:
        pytest.skip("dovecot is not installed (apt-get install -y dovecot-imapd; `make test` does it as root)")
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def account(dovecot):
    return dovecot.add_user()


@pytest.fixture
def make_mailbox(session, make_team, dovecot):
    """make_mailbox(user, password, **imap) → (id, address) of a committed Mailbox polling that account.

    Plain values, not the ORM object: each poll ends its own session (as a job would).
    """
    team = make_team(name="Returns")

    def make(user, password, port=None, active=True, **imap):
        box = mailboxes.create_mailbox(
            session, address=f"returns{next(_seq)}@backdesk.example.com", type="general", team_name=team.name,
            imap_host=dovecot.host, imap_port=port or dovecot.port, imap_tls="none", imap_user=user,
            imap_password=password, **imap)
        box.active = active
        session.commit()
        return SimpleNamespace(id=box.id, address=box.address, team=team.name)

    return make


def make_email(subject="Refund for order ORD-1001", sender="anna@example.com", message_id=None, in_reply_to=None):
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = f"Anna K <{sender}>"
    msg["To"] = "returns@backdesk.example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or f"<imap-{next(_seq)}-{id(msg)}@mail.example.com>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg["Date"] = "Mon, 23 Nov 2026 09:00:00 +0000"
    msg.set_content("Hello, the kettle arrived broken. Please refund.\n")
    return msg.as_bytes()


def committed_rows(app, model=InboundEmail):
    from queue_app.extensions import db

    with Session(db.engine) as other:
        rows = other.scalars(sa.select(model).order_by(model.id)).all()
        other.expunge_all()
        return rows


def seen(flags):
    return "\\Seen" in flags


def test_intake_imap_once_stores_processes_and_marks_after_commit(app, runner, session, dovecot, account,
                                                                   make_mailbox, monkeypatch):
    user, password = account
    box = make_mailbox(user, password)
    first = make_email(subject="Broken kettle", message_id="<kettle@mail.example.com>")
    dovecot.append(user, password, first)
    dovecot.append(user, password, make_email(subject="Re: Broken kettle", in_reply_to="<kettle@mail.example.com>"))
    dovecot.append(user, password, make_email(subject="Already read by someone"), flags=[SEEN])
    dovecot.append(user, password, make_email(subject="Another order"))

    marked = []
    real_mark_done = intake_poll.mark_done

    def checking_mark_done(client, uids, folder, capabilities):
        # At marking time the chunk is committed (another connection sees it) but not filed yet,
        # and its messages are still unseen on the server: fetching did not set \Seen.
        stored = {r.imap_uid: r.status for r in committed_rows(app)}
        assert all(stored.get(uid) == "received" for uid in uids)
        assert not any(seen(flags) for uid, flags, _ in dovecot.messages(user, password) if uid in uids)
        marked.append(list(uids))
        return real_mark_done(client, uids, folder, capabilities)

    monkeypatch.setattr(intake_poll, "mark_done", checking_mark_done)
    monkeypatch.setattr(intake_poll, "CHUNK", 2)

    result = runner.invoke(args=["intake", "imap", "--once"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{box.address}: 2 created, 1 followup"
    assert marked == [[1, 2], [4]]  # the unseen ones, two to a chunk
    assert all(seen(flags) for _, flags, _ in dovecot.messages(user, password))
    rows = committed_rows(app)
    assert [(r.source, r.imap_uid, r.mailbox_id, r.status) for r in rows] == \
        [("imap", 1, box.id, "created"), ("imap", 2, box.id, "followup"), ("imap", 4, box.id, "created")]
    assert rows[0].raw == first
    assert rows[1].work_item_id == rows[0].work_item_id
    items = committed_rows(app, WorkItem)
    assert sorted(i.subject for i in items) == ["Another order", "Broken kettle"]
    session.expire_all()
    assert session.get(Mailbox, box.id).imap_uidvalidity is not None


def test_polling_again_creates_nothing_and_survives_a_crash_before_marking(app, session, dovecot, account,
                                                                          make_mailbox, caplog):
    user, password = account
    box = make_mailbox(user, password)
    for n in range(3):
        dovecot.append(user, password, make_email(subject=f"Order {n}"))

    assert intake_poll.poll_all() == {box.address: Counter(created=3)}
    assert intake_poll.poll_all() == {box.address: Counter()}

    # As if the poller died after committing but before marking, and the server then
    # renumbered the folder (UIDVALIDITY changed): the messages are recognised, not filed twice.
    client = dovecot.connect(user, password)
    client.select_folder("INBOX")
    client.remove_flags(client.search("ALL"), [SEEN])
    client.logout()
    session.execute(sa.update(Mailbox).where(Mailbox.id == box.id).values(imap_uidvalidity=1))
    session.commit()

    with caplog.at_level(logging.WARNING, logger="workers.intake_poll"):
        assert intake_poll.poll_all() == {box.address: Counter(duplicate=3)}

    assert "UIDVALIDITY" in caplog.text
    assert len(committed_rows(app)) == 3 and len(committed_rows(app, WorkItem)) == 3
    assert all(seen(flags) for _, flags, _ in dovecot.messages(user, password))
    session.expire_all()
    assert session.get(Mailbox, box.id).imap_uidvalidity not in (None, 1)
    assert intake_poll.poll_all() == {box.address: Counter()}


def test_a_message_that_fails_processing_is_kept_and_still_marked(app, session, dovecot, account, make_mailbox,
                                                                   monkeypatch):
    from queue_app.services.intake import filing as intake_filing
    from queue_app.services.intake import quarantine

    user, password = account
    box = make_mailbox(user, password)
    garbage = b"\xff\xfe garbage without headers \x80\x81\r\n" * 10  # (Dovecot would change NUL bytes)
    dovecot.append(user, password, garbage)
    dovecot.append(user, password, make_email(subject="Crashes the processing"))

    real_process = intake_filing.process

    def crash_on_second(session, inbound, **kw):
        if inbound.imap_uid == 2:
            raise RuntimeError("a bug in processing")
        return real_process(session, inbound, **kw)

    monkeypatch.setattr(intake_filing, "process", crash_on_second)

    counts = intake_poll.poll_all()[box.address]
    assert counts["quarantined"] == 2 and counts["created"] == 0

    garbled, crashed = committed_rows(app)
    assert garbled.status == "quarantined" and garbled.reason and garbled.raw == garbage
    # Kept, raw bytes and all, with the error, for a person to retry once the bug is fixed.
    assert (crashed.status, crashed.reason) == ("quarantined", "rejected") and "a bug in processing" in crashed.detail
    assert crashed.raw
    assert all(seen(flags) for _, flags, _ in dovecot.messages(user, password))

    monkeypatch.setattr(intake_filing, "process", real_process)
    inbound = session.get(InboundEmail, crashed.id)
    assert quarantine.retry(session, inbound, actor="admin@example.com").status == "created"
    session.commit()
    assert committed_rows(app)[1].status == "created"


def test_a_message_that_cannot_be_stored_stays_unseen_for_the_next_poll(app, session, dovecot, account,
                                                                         make_mailbox, monkeypatch, caplog):
    from queue_app.services.intake import filing as intake_filing

    user, password = account
    box = make_mailbox(user, password)
    dovecot.append(user, password, make_email(subject="Database hiccup"))
    dovecot.append(user, password, make_email(subject="Fine"))
    real_receive = intake_filing.receive

    def fail_first(session, raw, **kw):
        if b"Database hiccup" in raw:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return real_receive(session, raw, **kw)

    monkeypatch.setattr(intake_filing, "receive", fail_first)
    with caplog.at_level(logging.ERROR, logger="workers.intake_poll"):
        assert intake_poll.poll_all() == {box.address: Counter(error=1, created=1)}

    assert "could not store UID 1" in caplog.text and "stays unseen" in caplog.text
    flags = {uid: f for uid, f, _ in dovecot.messages(user, password)}
    assert not seen(flags[1]) and seen(flags[2])

    monkeypatch.setattr(intake_filing, "receive", real_receive)
    assert intake_poll.poll_all() == {box.address: Counter(created=1)}
    assert sorted(i.subject for i in committed_rows(app, WorkItem)) == ["Database hiccup", "Fine"]


@pytest.mark.parametrize("move", [True, False], ids=["MOVE", "COPY+EXPUNGE"])
def test_a_processed_folder_receives_the_messages(app, session, dovecot, account, make_mailbox, monkeypatch, move):
    user, password = account
    folder = "Erledigt/Geprüft"
    box = make_mailbox(user, password, imap_processed_folder=folder)
    dovecot.append(user, password, make_email(subject="One"))
    dovecot.append(user, password, make_email(subject="Two"))
    if not move:
        real_mark_done = intake_poll.mark_done
        monkeypatch.setattr(intake_poll, "mark_done",
                            lambda client, uids, folder, caps: real_mark_done(client, uids, folder,
                                                                              caps - {"MOVE", "UIDPLUS"}))

    assert intake_poll.poll_all() == {box.address: Counter(created=2)}

    assert dovecot.messages(user, password) == []
    client = dovecot.connect(user, password)
    assert (b"/", folder) in [(delimiter, name) for _, delimiter, name in client.list_folders()]  # two levels
    client.logout()
    moved = dovecot.messages(user, password, folder=folder)
    assert len(moved) == 2 and all(seen(flags) for _, flags, _ in moved)
    assert sorted(i.subject for i in committed_rows(app, WorkItem)) == ["One", "Two"]

    dovecot.append(user, password, make_email(subject="Three"))  # the folder exists now: reused
    assert intake_poll.poll_all() == {box.address: Counter(created=1)}
    assert len(dovecot.messages(user, password, folder=folder)) == 3


def test_messages_arriving_during_a_poll_are_taken_by_the_next(app, session, dovecot, account, make_mailbox,
                                                               monkeypatch):
    from queue_app.services.intake import filing as intake_filing

    user, password = account
    box = make_mailbox(user, password)
    dovecot.append(user, password, make_email(subject="Before 1"))
    dovecot.append(user, password, make_email(subject="Before 2"))
    real_receive = intake_filing.receive
    arrived = []

    def receive_while_mail_arrives(*args, **kw):
        if not arrived:
            dovecot.append(user, password, make_email(subject="During"))
            arrived.append(1)
        return real_receive(*args, **kw)

    monkeypatch.setattr(intake_filing, "receive", receive_while_mail_arrives)

    assert intake_poll.poll_all() == {box.address: Counter(created=2)}
    flags = {uid: f for uid, f, _ in dovecot.messages(user, password)}
    assert seen(flags[1]) and seen(flags[2]) and not seen(flags[3])

    assert intake_poll.poll_all() == {box.address: Counter(created=1)}
    assert sorted(i.subject for i in committed_rows(app, WorkItem)) == ["Before 1", "Before 2", "During"]


def test_one_poll_takes_at_most_the_configured_number(app, session, dovecot, account, make_mailbox, monkeypatch):
    user, password = account
    box = make_mailbox(user, password)
    dovecot.append_many(user, password, [make_email(subject=f"Order {n}") for n in range(3)])
    monkeypatch.setitem(app.config, "INTAKE_IMAP_MAX_PER_POLL", 2)

    assert intake_poll.poll_all() == {box.address: Counter(created=2)}
    assert intake_poll.poll_all() == {box.address: Counter(created=1)}
    assert all(seen(flags) for _, flags, _ in dovecot.messages(user, password))


def test_a_thousand_messages_are_stored_filed_and_marked_in_one_poll(app, session, dovecot, account, make_mailbox):
    """Every fourth message answers an earlier one, some in the same chunk, most in an earlier one."""
    user, password = account
    box = make_mailbox(user, password)
    parents = {}
    raws = []
    for n in range(1000):
        message_id = f"<bulk-{n}@mail.example.com>"
        if n % 4 == 3:
            parents[message_id] = f"<bulk-{n - 3 if n < 150 else n - 150}@mail.example.com>"
        raws.append(make_email(subject=f"Order ORD-{n}", sender=f"customer{n % 40}@example.com",
                               message_id=message_id, in_reply_to=parents.get(message_id)))
    dovecot.append_many(user, password, raws)

    assert intake_poll.poll_all() == {box.address: Counter(created=750, followup=250)}

    rows = committed_rows(app)
    assert len(rows) == 1000 and {r.status for r in rows} == {"created", "followup"}
    item_of = {r.message_id: r.work_item_id for r in rows}
    assert all(item_of[reply] == item_of[parent] for reply, parent in parents.items())
    assert len(committed_rows(app, WorkItem)) == 750
    assert all(seen(flags) for _, flags, _ in dovecot.messages(user, password))

    assert intake_poll.poll_all() == {box.address: Counter()}
    assert len(committed_rows(app)) == 1000


def test_a_broken_account_is_logged_and_the_others_are_polled(app, session, dovecot, make_mailbox, caplog):
    bad_user, _ = dovecot.add_user()
    good_user, good_password = dovecot.add_user()
    bad = make_mailbox(bad_user, "wrong-password")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    unreachable = make_mailbox(good_user, good_password, port=closed_port)
    good = make_mailbox(good_user, good_password)
    dovecot.append(good_user, good_password, make_email(subject="Still arrives"))

    with caplog.at_level(logging.ERROR, logger="workers.intake_poll"):
        result = intake_poll.poll_all()

    assert result == {bad.address: Counter(error=1), unreachable.address: Counter(error=1),
                      good.address: Counter(created=1)}
    assert f"polling {bad.address} ({bad_user}@127.0.0.1:{dovecot.port}/INBOX) failed: login as '{bad_user}' " \
           "failed: [AUTHENTICATIONFAILED]" in caplog.text
    assert f"polling {unreachable.address}" in caplog.text and f"cannot connect to 127.0.0.1:{closed_port}" \
        in caplog.text
    assert [i.subject for i in committed_rows(app, WorkItem)] == ["Still arrives"]


def test_inactive_and_non_imap_mailboxes_are_not_polled(app, session, dovecot, account, make_mailbox):
    user, password = account
    box = make_mailbox(user, password, active=False)
    mailboxes.create_mailbox(session, address="smtp-only@backdesk.example.com", type="general", team_name=box.team)
    session.commit()
    dovecot.append(user, password, make_email())

    assert intake_poll.poll_all() == {}
    assert not seen(dovecot.messages(user, password)[0][1])


def test_poll_forever_polls_until_stopped(app, session, dovecot, account, make_mailbox, monkeypatch):
    user, password = account
    make_mailbox(user, password)
    dovecot.append(user, password, make_email(subject="Picked up by the loop"))
    monkeypatch.setitem(app.config, "INTAKE_POLL_SECONDS", 1)
    polls = []
    real_poll_all = intake_poll.poll_all
    monkeypatch.setattr(intake_poll, "poll_all", lambda: polls.append(real_poll_all()))

    intake_poll.poll_forever(app, stop=lambda: len(polls) >= 2)

    assert [sum(p.values(), Counter()) for p in polls] == [Counter(created=1), Counter()]
    assert [i.subject for i in committed_rows(app, WorkItem)] == ["Picked up by the loop"]
    assert session.scalar(sa.select(sa.func.count()).select_from(Message)) >= 1


def _use_redis(app, url):
    app.config["REDIS_URL"] = url
    old = app.extensions.pop("backdesk_redis", None)
    if old is not None:
        old.close()


def test_the_scheduler_queues_one_poll_job_per_imap_mailbox(app, session, dovecot, account, make_mailbox,
                                                            redis_url, monkeypatch):
    from workers import schedule

    saved = app.config["REDIS_URL"]
    _use_redis(app, f"redis://127.0.0.1:{_closed_port()}/0")
    try:
        assert intake_poll.enqueue_polls() == 0  # no IMAP mailbox: Redis is not even asked
    finally:
        _use_redis(app, saved)
    assert ("imap-poll", "INTAKE_POLL_SECONDS", schedule._imap_poll) in schedule.PERIODIC

    url = urlsplit(redis_url)._replace(path="/14").geturl()
    _use_redis(app, url)
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    try:
        user, password = account
        box = make_mailbox(user, password)
        dovecot.append(user, password, make_email(subject="Polled by a worker"))

        schedule._imap_poll()
        assert intake_poll.enqueue_polls() == 0  # the first poll still waits: not queued twice
        assert Queue("intake", connection=conn).get_job_ids() == [f"imap-poll-{box.id}"]

        saved_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            SimpleWorker([Queue("intake", connection=conn)], connection=conn).work(burst=True)
        finally:
            for sig, handler in saved_handlers.items():
                signal.signal(sig, handler)

        assert [i.subject for i in committed_rows(app, WorkItem)] == ["Polled by a worker"]
        assert seen(dovecot.messages(user, password)[0][1])
        assert intake_poll.enqueue_polls() == 1  # a finished poll leaves nothing behind
    finally:
        conn.flushdb()
        conn.close()
        _use_redis(app, saved)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
