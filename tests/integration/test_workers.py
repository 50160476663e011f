"""Workers on a real Redis server: outbox → RQ → job → database.

Each test uses Redis database 15 of the server REDIS_URL points at, flushed before and
after. Jobs run in a SimpleWorker burst inside the test process (same app context), except
for one test that starts a real `flask worker` process.
"""
import email
import email.policy
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from rq import Queue, SimpleWorker

from queue_app.models import CheckResult, Event, Message, OutboxJob, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.items import lifecycle
from queue_app.web.templating import event_data
from tests.integration.conftest import TEST_REDIS_DB, use_redis
from workers import relay
from workers.mail_out import send_message

ROOT = Path(__file__).resolve().parents[2]
def queue(conn, name="checks"):
    return Queue(name, connection=conn)


def run_burst(conn, *names):
    """Run every queued job of the queues in this process, then return.

    The worker installs its own SIGINT/SIGTERM handlers; put pytest's back afterwards so
    Ctrl-C still stops the test run.
    """
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        SimpleWorker([queue(conn, n) for n in names or ("checks",)], connection=conn).work(burst=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def outbox_rows(session, job_path="workers.checks.run_checks"):
    """The outbox rows of one job (items also get SLA timer rows, scheduled for later)."""
    session.expire_all()
    return session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == job_path).order_by(OutboxJob.id)).all()


def check_results(session, item_id):
    return session.scalars(sa.select(CheckResult).where(CheckResult.work_item_id == item_id)).all()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_new_item_is_checked_by_a_worker_after_commit(session, rconn, deliver_on_commit, make_item):
    good = make_item(type="general")  # general items have one check
    bad = lifecycle.create_item(session, actor=None, source="api", type="return", subject="No order number",
                                 fields={}, team=good.team, require_fields=False)
    session.commit()
    good_id, bad_id = good.id, bad.id
    rows = outbox_rows(session)
    job_ids = {row.args[0]: f"outbox-{row.id}" for row in rows}

    assert sorted(queue(rconn).get_job_ids()) == sorted([job_ids[good_id], job_ids[bad_id]])
    job = queue(rconn).fetch_job(job_ids[good_id])
    assert job.func_name == "workers.checks.run_checks" and job.args[0] == good_id
    assert all(row.enqueued_at is not None for row in rows)

    run_burst(rconn, "checks")

    assert queue(rconn).count == 0
    assert queue(rconn).fetch_job(job_ids[good_id]).get_status() == "finished"
    [passed] = check_results(session, good_id)
    assert (passed.name, passed.status) == ("required_fields", "passed")
    failed = {r.name: r for r in check_results(session, bad_id)}["required_fields"]
    assert (failed.name, failed.status) == ("required_fields", "failed")
    assert "order_number" in failed.message
    event = session.scalar(sa.select(Event).where(Event.work_item_id == good_id, Event.kind == "check_result"))
    assert event.actor_label == "worker" and event.data["status"] == "passed"
    assert session.get(WorkItem, good_id).needs_attention is False
    assert session.get(WorkItem, bad_id).needs_attention is True


def test_a_redis_outage_loses_nothing(app, session, rconn, worker_redis_url, deliver_on_commit, make_item, caplog):
    use_redis(app, f"redis://127.0.0.1:{closed_port()}/{TEST_REDIS_DB}")

    item = make_item(type="general")  # general items have one check
    with caplog.at_level(logging.WARNING, logger="queue_app.db.outbox"):
        session.commit()  # succeeds although the job cannot be handed over
    item_id = item.id

    [row] = outbox_rows(session)
    assert row.enqueued_at is None
    assert "the relay will retry" in caplog.text
    assert relay.relay_pending() == 0  # Redis still down: the rows wait, the attempt is noted
    first = session.scalars(sa.select(OutboxJob).order_by(OutboxJob.id)).first()
    assert (first.enqueued_at, first.attempts) == (None, 1) and "ConnectionError" in first.last_error
    [row] = outbox_rows(session)
    assert row.enqueued_at is None

    use_redis(app, worker_redis_url)
    assert relay.relay_pending() == 2  # the checks, and the SLA timer (scheduled for later)
    assert queue(rconn).get_job_ids() == [f"outbox-{row.id}"]
    assert outbox_rows(session)[0].enqueued_at is not None

    run_burst(rconn, "checks")
    assert [r.status for r in check_results(session, item_id)] == ["passed"]


def test_relaying_twice_enqueues_once(session, rconn, make_item):
    item = make_item(type="general")  # general items have one check
    session.commit()  # delivery on commit is off: the row waits for the relay
    item_id = item.id
    [row] = outbox_rows(session)

    assert relay.relay_pending() == 2  # the checks and the SLA timer
    assert relay.relay_pending() == 0
    # Even a relay that dies after enqueueing but before marking the row does not double the job.
    session.execute(sa.update(OutboxJob).values(enqueued_at=None))
    session.commit()
    assert relay.relay_pending() == 2
    relay.deliver([(row.id, row.job_path, row.args, row.run_at)])

    assert queue(rconn).get_job_ids() == [f"outbox-{row.id}"]
    run_burst(rconn, "checks")
    assert len(check_results(session, item_id)) == 1


def test_the_scheduler_relay_leaves_a_fresh_commit_its_own_hand_over(session, rconn, make_item, monkeypatch):
    """The race a relay tick can lose: a commit's rows, read by the relay before the commit's own
    hand-over marks them. The relay waits for rows to settle, and marks only rows still unmarked."""
    make_item(type="general")
    session.commit()
    every_row = sa.select(OutboxJob).order_by(OutboxJob.id)
    rows = session.scalars(every_row).all()  # the checks and the SLA timer
    assert relay.relay_pending(settle=60) == 0  # just written: the commit's own hand-over has them

    session.execute(sa.update(OutboxJob).values(created_at=utcnow() - timedelta(minutes=5)))
    session.commit()
    hand_over = relay.hand_over

    def and_the_commit_marks_it_meanwhile(outbox_id, *args):
        hand_over(outbox_id, *args)
        relay.deliver([(outbox_id, *args)])  # the commit's own hand-over, between the relay's read and mark

    monkeypatch.setattr(relay, "hand_over", and_the_commit_marks_it_meanwhile)
    assert relay.relay_pending(settle=60) == len(rows)
    session.expire_all()
    assert [(r.enqueued_at is not None, r.attempts) for r in session.scalars(every_row)] == [(True, 0)] * len(rows)
    assert queue(rconn).get_job_ids() == [f"outbox-{outbox_rows(session)[0].id}"]  # the checks, once


def test_outbox_relay_command(runner, session, rconn, make_item):
    make_item()
    session.commit()

    result = runner.invoke(args=["outbox", "relay"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "enqueued 2 jobs; 0 still pending"  # the checks and the SLA timer
    assert queue(rconn).count == 1


def test_no_job_is_visible_before_commit_or_after_rollback(session, rconn, deliver_on_commit, make_item, make_team):
    make_item()
    session.flush()

    assert queue(rconn).count == 0
    assert not rconn.keys("rq:job:*")

    session.rollback()
    make_team(name="Unrelated")
    session.commit()  # a later commit must not deliver the rolled-back job either

    assert relay.relay_pending() == 0
    assert outbox_rows(session) == []
    assert queue(rconn).count == 0
    assert not rconn.keys("rq:job:*")


def test_replies_and_acknowledgements_come_from_the_teams_mailbox(
        app, session, rconn, deliver_on_commit, make_team, make_user, make_item, tmp_path, monkeypatch):
    """The customer answers the address our mail came from: the team's mailbox they wrote to, else the
    team's first mailbox; a team without one sends from MAIL_FROM."""
    from queue_app.services.intake import filing, mailboxes

    monkeypatch.setitem(app.config, "INSTANCE_DIR", str(tmp_path))
    monkeypatch.setitem(app.config, "SMTP_HOST", None)
    returns, quiet = make_team(name="Returns", work_types=["return", "general"]), make_team(name="Quiet")
    mailboxes.create_mailbox(session, address="refunds@shop.example.com", type="return", team_name="Returns")
    mailboxes.create_mailbox(session, address="returns@shop.example.com", type="return", team_name="Returns")
    sam = make_user(role="supervisor", teams=[returns, quiet])
    raw = (b"From: Anna K <anna@customer.example.com>\r\nTo: returns@shop.example.com\r\n"
           b"Subject: Broken kettle\r\nMessage-ID: <k1@customer.example.com>\r\n\r\nPlease refund.\r\n")
    emailed = filing.process(session, filing.receive(session, raw, source="smtp")).item
    by_api = make_item(team=returns, type="general")
    elsewhere = make_item(team=quiet, type="general")
    replies = [lifecycle.add_reply(session, item, actor=sam, body="On it.") for item in (emailed, by_api, elsewhere)]
    session.commit()
    ack = session.scalar(sa.select(Message).where(Message.work_item_id == emailed.id, Message.is_automatic.is_(True)))
    ids = [ack.id] + [r.id for r in replies]

    run_burst(rconn, "mail_out")

    senders = [email.message_from_bytes((tmp_path / "outbox" / f"message-{i}.eml").read_bytes(),
                                        policy=email.policy.default)["From"] for i in ids]
    assert senders == ["Returns <returns@shop.example.com>", "Returns <returns@shop.example.com>",
                       "Returns <refunds@shop.example.com>", app.config["MAIL_FROM"]]


def test_outbound_mail_is_written_to_the_outbox_dir_once_without_injected_headers(
        app, session, rconn, deliver_on_commit, make_team, make_user, make_item, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "INSTANCE_DIR", str(tmp_path))
    monkeypatch.setitem(app.config, "SMTP_HOST", None)
    team = make_team()
    supervisor = make_user(role="supervisor", teams=[team])
    item = make_item(team=team, subject="Refund please\r\nBcc: x@example.com")
    reply = lifecycle.add_reply(session, item, actor=supervisor, body="We are on it.")
    session.commit()
    message_id, ref = reply.id, item.ref

    run_burst(rconn, "mail_out")

    path = tmp_path / "outbox" / f"message-{message_id}.eml"
    raw = path.read_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert not any(line.lower().startswith(b"bcc:") for line in raw.splitlines())
    assert parsed["Subject"] == f"[{ref}] Refund please Bcc: x@example.com"
    assert parsed["To"] == "customer@example.com"
    assert parsed.get_content().strip() == "We are on it."
    session.expire_all()
    assert session.get(Message, message_id).send_status == "sent"

    path.unlink()
    assert send_message(message_id) == "skipped"  # a re-delivered job sends nothing
    assert not path.exists()
    sent_events = session.scalars(sa.select(Event).where(Event.kind == "mail_sent")).all()
    assert len(sent_events) == 1
    assert sent_events[0].data["sent_to"] == "customer@example.com"
    assert str(tmp_path) not in json.dumps(sent_events[0].data)
    with app.test_request_context():
        shown = str(event_data(sent_events[0].data, "mail_sent"))
        assert "Sent to" in shown and "customer@example.com" in shown
        # Older events hold the .eml's server path: it is never shown.
        old_style = str(event_data({"message_id": message_id, "via": str(path)}, "mail_sent"))
        assert str(tmp_path) not in old_style and ".eml" not in old_style


def test_a_forked_worker_process_runs_the_checks(app, session, rconn, worker_redis_url, deliver_on_commit,
                                                 make_item, tmp_path):
    item = make_item(type="general")  # general items have one check
    session.commit()
    item_id = item.id
    [row] = outbox_rows(session)
    assert queue(rconn).count == 1
    env = dict(os.environ, BACKDESK_ENV="testing", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
               REDIS_URL=worker_redis_url, BACKDESK_INSTANCE_DIR=str(tmp_path), LOG_LEVEL="INFO")

    proc = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "checks", "--burst"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # Quiet at INFO: no line per job from RQ (LOG_LEVEL=DEBUG shows them, with the job ids).
    assert f"outbox-{row.id}" not in output and "rq.worker" not in output
    assert queue(rconn).count == 0
    session.expire_all()
    assert [(r.name, r.status) for r in check_results(session, item_id)] == [("required_fields", "passed")]
    assert session.scalar(sa.select(sa.func.count()).select_from(Event)
                          .where(Event.work_item_id == item_id, Event.kind == "check_result")) == 1
