"""SLA timer jobs, the sweep, and recalculation after a policy change.

A timer job is scheduled with RQ's scheduler for the item's next ladder instant. It
re-reads the item and acts only if its sla_version still matches and something is due;
the sweep finds anything the timers missed (Redis flushed, a worker killed) through the
indexed sla_next_check_at column. Steps are claimed in the database, so whoever gets
there first takes a step and everyone else does nothing.
"""
import logging
from datetime import timedelta

from queue_app.db.outbox import enqueue_after_commit
from queue_app.extensions import db
from queue_app.models import WorkItem
from queue_app.models.base import utcnow
from queue_app.services.sla import ladder as sla_ladder
from queue_app.services.sla import policies as sla_policies
from workers.context import job_context

log = logging.getLogger(__name__)
# RQ's scheduler keeps whole seconds (it floors the instant), so a timer can start up to a
# second before its instant; one that finds its step that close schedules itself again.
EARLY_MARGIN = timedelta(seconds=2)


@job_context
def fire_sla_timer(item_id, sla_version):
    item = db.session.get(WorkItem, item_id)
    if item is None or item.sla_version != sla_version:
        return "stale"
    now = utcnow()
    taken = sla_ladder.process_due(db.session, item, now, fired_by="timer")
    upcoming = item.sla_next_check_at
    if not taken and upcoming is not None and now < upcoming <= now + EARLY_MARGIN:
        enqueue_after_commit(db.session, sla_policies.TIMER_JOB, item.id, item.sla_version, run_at=upcoming)
        return "early"
    return taken or "nothing due"


def sweep(limit=500, now=None):
    """Take every step that is due; one transaction per item so one bad item cannot block the rest."""
    now = now or utcnow()
    taken = 0
    for item_id in sla_ladder.due_item_ids(db.session, now, limit):
        try:
            item = db.session.get(WorkItem, item_id)
            if item is not None:
                taken += len(sla_ladder.process_due(db.session, item, now, fired_by="sweep"))
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("SLA sweep: item %s failed; the next sweep tries again", item_id)
    return taken


@job_context
def recalculate_open_items(batch=500):
    """Re-derive due times of every open item after policies or calendars changed.

    Idempotent: an item whose due times come out the same is left as it is, so a run handed over
    again after a crash between two batches' commits only repeats the work.
    """
    after, changed = 0, 0
    while True:
        ids = sla_policies.open_item_ids(db.session, after_id=after, limit=batch)
        if not ids:
            break
        now = utcnow()
        for item_id in ids:
            changed += sla_policies.recalculate(db.session, db.session.get(WorkItem, item_id), now, None, reason="policy")
        db.session.commit()
        after = ids[-1]
    return changed
