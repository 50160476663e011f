"""Intake jobs: process a stored email; the sweep finds any left unprocessed."""
import logging
from datetime import timedelta

from queue_app.extensions import db
from queue_app.models.base import utcnow
from queue_app.services.intake import filing
from workers.context import job_context

log = logging.getLogger(__name__)


@job_context
def process_inbound(inbound_id):
    # process_stored files the email once even if the sweep or another delivery of this job has it too.
    outcome = filing.process_stored(db.session, inbound_id)
    return "gone" if outcome is None else outcome.status


def sweep(older_than_seconds=60, limit=200):
    """Process stored emails nobody processed (the job was lost or the process died)."""
    done = 0
    for inbound_id in filing.pending_ids(db.session, utcnow() - timedelta(seconds=older_than_seconds), limit):
        try:
            filing.process_stored(db.session, inbound_id)
            db.session.commit()
            done += 1
        except Exception:
            db.session.rollback()
            log.exception("intake sweep: email %s failed; it stays stored and is tried again", inbound_id)
    return done
