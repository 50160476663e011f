"""Customers answer our outgoing mail, whose From is MAIL_FROM: the SMTP intake takes mail for it.

Such a reply is filed on the item it answers (a closed item gets a new item that refers to
it); one that answers nothing is quarantined with the reason, never refused or lost.
"""
import smtplib

import pytest

from queue_app.models import InboundEmail, WorkItem
from queue_app.services.items import lifecycle
from tests.integration.test_smtp_intake import (  # noqa: F401
    committed,
    mailbox,
    make_email,
    send,
    smtp_server,
)

OURS = "backdesk@backdesk.example.com"


@pytest.fixture(autouse=True)
def mail_from(app, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_FROM", f"Backdesk <{OURS}>")
    monkeypatch.setitem(app.config, "MAIL_DOMAIN", "mail.backdesk.test")


def test_rcpt_to_mail_from_is_accepted_and_other_unknown_addresses_still_refused(app, mailbox, smtp_server):
    port = smtp_server()

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.example.com")
        smtp.mail("anna@example.com")
        assert smtp.rcpt(OURS.upper())[0] == 250
        assert smtp.rcpt("nobody@backdesk.example.com")[0] == 550


def test_a_reply_to_mail_from_about_a_closed_item_becomes_an_item_not_a_bounce(app, session, mailbox, smtp_server):
    port = smtp_server(INTAKE_PROCESS_INLINE=True)
    assert send(port, make_email(message_id="<first@mail.example.com>"))[0] == 250
    [item] = committed(app, WorkItem)
    item = session.get(WorkItem, item.id)
    lifecycle.change_status(session, item, "resolved", actor="tester", check_access=False)
    lifecycle.change_status(session, item, "closed", actor="tester", check_access=False)
    session.commit()

    reply = make_email(subject=f"Re: [{item.ref}] Refund", to=OURS, message_id="<second@mail.example.com>")
    code, _ = send(port, reply, to=(OURS,))

    assert code == 250
    rows = committed(app)
    assert [r.status for r in rows] == ["created", "created"]
    items = committed(app, WorkItem)
    assert len(items) == 2 and items[1].description.startswith(f"Follow-up to {item.ref}, which is closed.")


def test_mail_to_mail_from_that_answers_nothing_is_quarantined_not_refused(app, mailbox, smtp_server):
    port = smtp_server(INTAKE_PROCESS_INLINE=True)

    code, _ = send(port, make_email(subject="Hello", to=OURS), to=(OURS,))

    assert code == 250
    [row] = committed(app, InboundEmail)
    assert (row.status, row.reason) == ("quarantined", "no_mailbox") and OURS in row.detail
