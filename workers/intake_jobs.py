"""The intake job: the single filer (services.intake.filer) run on the `intake` queue.

Whoever stores mail (the SMTP server, the IMAP poller) calls `kick` after its commit; the
scheduler's intake sweep kicks too when stored mail has waited. A kick makes sure a filer job
will start after it, without queueing one per message:
- `QUEUED_KEY` is set while a filer job waits in the queue. A kick that finds it set does
  nothing: that job has not started, so it will see the email just committed. Otherwise the
  kick sets it and enqueues a job, which clears it as it starts, before it reads anything.
- The key expires (KICK_TTL), so a job lost with Redis (FLUSHALL, failover) or never enqueued
  cannot stop later kicks for long; the sweep enqueues one whatever the key says.
- Two filer jobs at once are harmless: the filing lock makes their batches take turns.
If Redis is unreachable, the kick fails quietly: the mail is stored, and the sweep (once the
scheduler can lead again) starts the filer.
"""
import logging
from datetime import timedelta

from redis.exceptions import RedisError

from queue_app.extensions import db
from queue_app.models.base import utcnow
from queue_app.services.intake import filer
from workers.context import job_context
from workers.queues import get_queue, redis_connection

log = logging.getLogger(__name__)

FILER_JOB = "workers.intake_jobs.file_received"
QUEUED_KEY = "backdesk:intake:filer-queued"
KICK_TTL = 120  # seconds
RUN_SECONDS = 120  # one job files for at most this long, then queues its successor


@job_context
def file_received():
    """File every stored email still waiting, in arrival order (the single filer)."""
    redis_connection().delete(QUEUED_KEY)  # kicks from now on queue another job
    counts = filer.drain(db.session, max_seconds=RUN_SECONDS)
    if filer.pending_count(db.session):
        kick(force=True)  # time is up with mail left: a successor carries on
    return dict(counts)


def kick(force=False):
    """Make sure a filer job starts after this moment (see the module docstring). False if Redis
    could not be reached."""
    try:
        conn = redis_connection()
        if not conn.set(QUEUED_KEY, 1, nx=True, ex=KICK_TTL) and not force:
            return True
        get_queue("intake", connection=conn).enqueue(FILER_JOB, result_ttl=0, failure_ttl=24 * 3600,
                                                     job_timeout=RUN_SECONDS + 180)
        return True
    except RedisError as exc:
        log.warning("intake: cannot queue the filer (Redis: %s); the intake sweep will", exc)
        try:
            redis_connection().delete(QUEUED_KEY)
        except RedisError:
            pass
        return False


def sweep(older_than_seconds=10):
    """Start the filer if stored mail has waited (its kick was lost with Redis, or never made)."""
    waiting = filer.pending_count(db.session, utcnow() - timedelta(seconds=older_than_seconds))
    if waiting:
        kick(force=True)
    return waiting


@job_context
def process_inbound(inbound_id):
    """A job queued before the single filer (one per email): it files what waits, in order."""
    filer.drain(db.session, max_seconds=RUN_SECONDS)
    return "filed"
