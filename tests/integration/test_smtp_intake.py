"""The SMTP intake server in real SMTP sessions (smtplib against aiosmtpd on a free port).

The server runs in this process (make_controller) against the test database; its handler
threads have app contexts and sessions of their own, so the test reads only what was
committed. Jobs run on the real Redis of `make test` (database 14, flushed around each test).
"""
import logging
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy as sa
from rq import Queue, SimpleWorker
from sqlalchemy.orm import Session

from queue_app.models import InboundEmail, OutboxJob, WorkItem
from queue_app.services.intake import filing, mailboxes
from tests.integration.conftest import wait_for
from workers.smtp_server import make_controller

ROOT = Path(__file__).resolve().parents[2]
MAILBOX = "returns@backdesk.example.com"
REDIS_DB = 14


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_email(subject="Refund for order ORD-1001", sender="anna@example.com", to=MAILBOX, body=None,
               message_id=None):
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = f"Anna K <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or f"<{free_port()}.{id(msg)}@mail.example.com>"
    msg["Date"] = "Mon, 23 Nov 2026 09:00:00 +0000"
    msg.set_content(body or "Hello, the kettle arrived broken. Please refund.\n")
    return msg.as_bytes()


def use_redis(app, url):
    app.config["REDIS_URL"] = url
    old = app.extensions.pop("backdesk_redis", None)
    if old is not None:
        old.close()


@pytest.fixture
def mailbox(session, make_team):
    team = make_team(name="Returns")
    box = mailboxes.create_mailbox(session, address=MAILBOX, type="general", team_name=team.name)
    session.commit()
    return box


@pytest.fixture
def smtp_server(app, monkeypatch):
    """start(**config) → port of a running intake server; stopped after the test."""
    controllers = []

    def start(**config):
        for key, value in config.items():
            monkeypatch.setitem(app.config, key, value)
        port = free_port()
        controller = make_controller(app, "127.0.0.1", port)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def rconn(app, redis_url, monkeypatch):
    """The app delivers jobs on commit to its own, empty Redis database."""
    url = urlsplit(redis_url)._replace(path=f"/{REDIS_DB}").geturl()
    saved = app.config["REDIS_URL"]
    monkeypatch.setitem(app.config, "OUTBOX_DELIVER_ON_COMMIT", True)
    use_redis(app, url)
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()
    use_redis(app, saved)


def run_burst(conn, *names):
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        SimpleWorker([Queue(n, connection=conn) for n in names], connection=conn).work(burst=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def committed(app, model=InboundEmail):
    """Rows as another connection sees them: committed, nothing else."""
    from queue_app.extensions import db

    with Session(db.engine) as other:
        rows = other.scalars(sa.select(model).order_by(model.id)).all()
        other.expunge_all()
        return rows


def send(port, raw, to=(MAILBOX,), sender="anna@example.com"):
    """One SMTP transaction; returns the final (code, text) of DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.example.com")
        assert smtp.mail(sender)[0] == 250
        for address in to:
            assert smtp.rcpt(address)[0] == 250
        return smtp.data(raw)


def test_a_message_is_committed_before_250_then_processed_by_the_worker(app, session, mailbox, smtp_server, rconn):
    port = smtp_server()

    code, text = send(port, make_email())

    [row] = committed(app)  # committed before the 250 came back
    assert code == 250 and text.decode() == f"Message accepted as {row.id}"
    assert (row.status, row.source, row.mailbox_id, row.envelope_from, row.envelope_to) == \
        ("received", "smtp", mailbox.id, "anna@example.com", [MAILBOX])
    assert row.raw.startswith(b"From: Anna K <anna@example.com>")
    assert committed(app, OutboxJob) == []  # no job per message: the filer is kicked
    wait_for(lambda: len(Queue("intake", connection=rconn).get_job_ids()) == 1, 10, "the filer job")
    [job] = Queue("intake", connection=rconn).get_jobs()
    assert job.func_name == "workers.intake_jobs.file_received"

    run_burst(rconn, "intake")

    session.expire_all()
    inbound = session.get(InboundEmail, row.id)
    assert inbound.status == "created"
    item = inbound.work_item
    assert (item.subject, item.requester_email, item.source, item.team.name) == \
        ("Refund for order ORD-1001", "anna@example.com", "email", "Returns")


def test_inline_processing_files_the_item_before_the_answer(app, session, mailbox, smtp_server):
    port = smtp_server(INTAKE_PROCESS_INLINE=True)

    code, _ = send(port, make_email(subject="Where is my refund?"))

    assert code == 250
    [row] = committed(app)
    assert row.status == "created"
    [item] = committed(app, WorkItem)
    assert item.id == row.work_item_id and item.subject == "Where is my refund?"


def test_unknown_recipient_is_refused_with_550(app, mailbox, smtp_server):
    port = smtp_server()

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail("anna@example.com", ["nobody@backdesk.example.com"], make_email(to="nobody@backdesk.example.com"))
        code, text = refused.value.recipients["nobody@backdesk.example.com"]
        assert code == 550 and text.decode() == "5.1.1 <nobody@backdesk.example.com>: no such mailbox here"
        smtp.rset()
        smtp.mail("anna@example.com")
        assert smtp.rcpt("not-an-address")[0] in (501, 553)
        assert smtp.rcpt("Returns@Backdesk.Example.com")[0] == 250  # addresses are matched case-insensitively
    assert committed(app) == []


def test_an_inactive_mailbox_takes_no_mail(app, session, mailbox, smtp_server):
    mailbox.active = False
    session.commit()
    port = smtp_server()

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.example.com")
        smtp.mail("anna@example.com")
        assert smtp.rcpt(MAILBOX)[0] == 550


def test_mixed_recipients_are_accepted_for_the_known_one_only(app, mailbox, smtp_server):
    port = smtp_server()

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        refused = smtp.sendmail("anna@example.com", ["stranger@backdesk.example.com", MAILBOX],
                                make_email(to=f"stranger@backdesk.example.com, {MAILBOX}"))

    assert refused == {"stranger@backdesk.example.com": (550, b"5.1.1 <stranger@backdesk.example.com>: no such mailbox here")}
    [row] = committed(app)
    assert row.envelope_to == [MAILBOX] and row.mailbox_id == mailbox.id


def test_oversize_mail_is_refused_with_552(app, mailbox, smtp_server):
    port = smtp_server(INTAKE_MAX_MESSAGE_BYTES=10240)
    big = make_email(body=("x" * 70 + "\n") * 200)  # about 15 KB
    assert len(big) > 10240

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.example.com")
        assert smtp.esmtp_features["size"] == "10240"
        # A client that announces the size is refused at MAIL FROM ...
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("anna@example.com", [MAILBOX], big)
        assert refused.value.smtp_code == 552
        # ... one that does not, after DATA.
        smtp.rset()
        assert smtp.mail("anna@example.com")[0] == 250
        assert smtp.rcpt(MAILBOX)[0] == 250
        assert smtp.data(big)[0] == 552
        # The session carries on: a small message is still taken.
        assert smtp.sendmail("anna@example.com", [MAILBOX], make_email()) == {}
    assert len(committed(app)) == 1


def test_a_redis_outage_does_not_stop_intake(app, session, mailbox, smtp_server, monkeypatch, caplog):
    from workers.intake_jobs import sweep

    monkeypatch.setitem(app.config, "OUTBOX_DELIVER_ON_COMMIT", True)
    saved = app.config["REDIS_URL"]
    use_redis(app, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        port = smtp_server()
        with caplog.at_level(logging.WARNING, logger="workers.intake_jobs"):
            code, _ = send(port, make_email(subject="Sent while Redis was down"))
            wait_for(lambda: "cannot queue the filer" in caplog.text, 10, "the kick to fail")
    finally:
        use_redis(app, saved)

    assert code == 250
    [row] = committed(app)
    assert row.status == "received"

    # Redis is back: the scheduler's intake sweep queues the filer, which files the mail.
    conn = redis.Redis.from_url(saved)
    assert sweep(older_than_seconds=0) == 1
    run_burst(conn, "intake")

    session.expire_all()
    inbound = session.get(InboundEmail, row.id)
    assert inbound.status == "created" and inbound.work_item.subject == "Sent while Redis was down"


def test_garbage_is_accepted_and_quarantined_not_lost(app, mailbox, smtp_server):
    port = smtp_server(INTAKE_PROCESS_INLINE=True)
    garbage = b"\x00\xff\xfe\x80 garbage \x81\x82\r\n\xc3\x28 more \x00 bytes\r\n" * 20

    code, _ = send(port, garbage)

    assert code == 250
    [row] = committed(app)
    assert row.status == "quarantined" and row.reason in ("unparseable", "no_sender") and row.detail
    assert row.raw == garbage  # the bytes are kept for a person to look at


def test_overlong_lines_are_accepted_not_bounced(app, mailbox, smtp_server):
    port = smtp_server(INTAKE_PROCESS_INLINE=True)
    raw = (b"From: anna@example.com\r\nTo: " + MAILBOX.encode() + b"\r\nSubject: One long line\r\n"
           b"Content-Type: text/html\r\n\r\n<p>" + b"word " * 2000 + b"</p>\r\n")

    assert send(port, raw)[0] == 250
    [row] = committed(app)
    assert row.raw == raw and row.status == "created"


def test_a_failed_commit_answers_451_and_the_retry_is_stored_once(app, mailbox, smtp_server, monkeypatch):
    port = smtp_server()
    raw = make_email(message_id="<retry-me@mail.example.com>")

    def refuse(session):
        if session.info.get("storing"):
            raise sa.exc.OperationalError("COMMIT", {}, Exception("database is locked"))

    real_receive_many = filing.receive_many

    def receive_many(session, rows):
        session.info["storing"] = True  # the commit that follows fails
        return real_receive_many(session, rows)

    monkeypatch.setattr(filing, "receive_many", receive_many)
    sa.event.listen(Session, "before_commit", refuse)
    try:
        code, text = send(port, raw)
    finally:
        sa.event.remove(Session, "before_commit", refuse)
        monkeypatch.setattr(filing, "receive_many", real_receive_many)

    assert code == 451 and b"try again later" in text
    assert committed(app) == [] and committed(app, OutboxJob) == []
    assert send(port, raw)[0] == 250  # the relay retries
    [row] = committed(app)
    assert row.message_id == "<retry-me@mail.example.com>"


def test_flask_intake_smtp_serves_until_sigterm(app, mailbox, tmp_path):
    port = free_port()
    env = dict(os.environ, BACKDESK_ENV="testing", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
               BACKDESK_INSTANCE_DIR=str(tmp_path), OUTBOX_DELIVER_ON_COMMIT="false", LOG_LEVEL="INFO")
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "intake", "smtp", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the SMTP intake server did not start"
                time.sleep(0.1)

        code, _ = send(port, make_email(subject="Through the command"))

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 250
    assert proc.returncode == 0, output
    assert f"SMTP intake listening on 127.0.0.1:{port}" in output
    [row] = committed(app)
    assert row.status == "received"
    # Quiet logs: neither the readiness probe above (connect, close) nor the session logs a line.
    assert "Connection lost" not in output and "AUTH" not in output


def test_run_all_starts_the_smtp_intake_server():
    from workers.cli import extra_children

    assert extra_children(["flask"]) == {"smtp-intake": ["flask", "intake", "smtp"]}
