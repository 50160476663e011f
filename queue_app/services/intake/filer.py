"""Stand-in: files every stored email still waiting (status `received`), one at a time.

The IMAP poller stores a mailbox's mail first and then calls `drain`; this keeps that call
working until the filer proper takes its place.
"""
import logging
from collections import Counter

import sqlalchemy as sa

from queue_app.models import InboundEmail
from queue_app.services.intake import filing

log = logging.getLogger(__name__)


def drain(session, **options):
    """Stand-in: process each `received` email in id order, committing each; a Counter of outcomes."""
    counts = Counter()
    ids = session.scalars(sa.select(InboundEmail.id).where(InboundEmail.status == "received")
                          .order_by(InboundEmail.id)).all()
    for inbound_id in ids:
        try:
            outcome = filing.process_stored(session, inbound_id, **options)
            session.commit()
        except Exception:
            session.rollback()
            log.exception("filing stored email %s failed; it stays stored for the intake sweep", inbound_id)
            counts["received"] += 1
            continue
        if outcome is not None:
            counts[outcome.status] += 1
    return counts
