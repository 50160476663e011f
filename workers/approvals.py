"""Approval reminder timers, and the sweep for the ones Redis lost. They call the service; the
notices are claimed in the database, so a timer that runs twice sends nothing twice."""
from queue_app.extensions import db
from queue_app.models.base import utcnow
from queue_app.services.approvals import reminders
from workers.context import job_context


@job_context
def remind(approval_id):
    return reminders.remind(db.session, approval_id) or "nothing due"


def sweep(now=None):
    """Send the overdue notices (and warnings) that are due; returns how many approvals were reminded."""
    now = now or utcnow()
    done = 0
    for approval_id in reminders.overdue_ids(db.session, now):
        if reminders.remind(db.session, approval_id, now):
            done += 1
        db.session.commit()
    return done
