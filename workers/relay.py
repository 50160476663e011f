"""Hand outbox rows to RQ. Called right after a commit and periodically by the scheduler.

Handing a job over is not completing it: the job marks its row completed itself
(workers.context.job_context), and workers/reconciler.py hands over again whatever Redis lost.
"""
import logging

import sqlalchemy as sa
from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError

from queue_app.extensions import db
from queue_app.models import OutboxJob
from queue_app.models.base import utcnow
from workers.queues import get_queue, queue_for, retry_for

log = logging.getLogger(__name__)


def hand_over(outbox_id, job_path, args, run_at=None):
    """Enqueue one outbox job as RQ job `outbox-<id>` (for its run_at, if that is still ahead);
    a job RQ already holds under that id is left as it is."""
    name = queue_for(job_path)
    queue = get_queue(name)
    options = dict(job_id=f"outbox-{outbox_id}", unique=True, failure_ttl=7 * 24 * 3600, retry=retry_for(name))
    try:
        if run_at is not None and run_at > utcnow():
            queue.enqueue_at(run_at, job_path, *args, **options)  # RQ's scheduler moves it to the queue on time
        else:
            queue.enqueue(job_path, *args, **options)
    except DuplicateJobError:
        pass  # already queued, scheduled or running: the unique id did its job


def deliver(jobs):
    """Enqueue just-committed jobs [(id, job_path, args, run_at)], then mark them in a short transaction."""
    delivered = []
    for outbox_id, job_path, args, run_at in jobs:
        hand_over(outbox_id, job_path, args, run_at)
        delivered.append(outbox_id)
    if delivered:
        with db.engine.begin() as conn:
            conn.execute(sa.update(OutboxJob).where(OutboxJob.id.in_(delivered), OutboxJob.enqueued_at.is_(None))
                         .values(enqueued_at=utcnow()))


def relay_pending(session=None, limit=500):
    """Enqueue every pending outbox row; returns how many were handed over. Stops at the first Redis error."""
    session = session or db.session
    rows = session.scalars(sa.select(OutboxJob).where(OutboxJob.enqueued_at.is_(None))
                           .order_by(OutboxJob.id).limit(limit)).all()
    sent = 0
    for row in rows:
        try:
            hand_over(row.id, row.job_path, row.args, row.run_at)
        except RedisError as exc:
            row.attempts += 1
            row.last_error = f"{exc.__class__.__name__}: {exc}"
            log.warning("outbox relay: Redis unavailable (%s); %d jobs wait", exc, len(rows) - sent)
            break
        row.enqueued_at = utcnow()
        row.attempts += 1
        sent += 1
    session.commit()
    return sent


def pending_count(session=None):
    session = session or db.session
    return session.scalar(sa.select(sa.func.count()).select_from(OutboxJob).where(OutboxJob.enqueued_at.is_(None)))
