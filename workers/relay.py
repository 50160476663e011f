"""Hand outbox rows to RQ. Called right after a commit and periodically by the scheduler.

Handing a job over is not completing it: the job marks its row completed itself
(workers.context.job_context), and workers/reconciler.py hands over again whatever Redis lost.
"""
import calendar
import logging
from datetime import timedelta

import sqlalchemy as sa
from redis.exceptions import RedisError
from rq.job import JobStatus
from rq.scripts import _build_hset_args, get_unique_enqueue_script

from queue_app.extensions import db
from queue_app.models import OutboxJob
from queue_app.models.base import utcnow
from workers.queues import get_queue, queue_for, redis_connection, retry_for

FAILURE_TTL = 7 * 24 * 3600  # a failed job's record stays a week for `rq requeue`

log = logging.getLogger(__name__)


def hand_over(outbox_id, job_path, args, run_at=None):
    """Enqueue one outbox job as RQ job `outbox-<id>` (for its run_at, if that is still ahead);
    a job RQ already holds under that id is left as it is."""
    hand_over_many([(outbox_id, job_path, args, run_at)])


def hand_over_many(jobs):
    """Enqueue outbox jobs [(id, job_path, args, run_at)] in one Redis round trip: each as RQ job
    `outbox-<id>`, queued (RQ's atomic unique enqueue: a job RQ already holds under that id is
    left as it is) or, for a run_at still ahead, scheduled in the queue's registry (RQ's scheduler
    moves it to the queue on time; scheduling again only writes the same job again).

    What Queue.enqueue(..., unique=True) and Queue.enqueue_at do, one job at a time with two round
    trips each, written into one pipeline: a commit of the filer hands over a batch's checks,
    acknowledgements and timers at once."""
    if not jobs:
        return
    conn = redis_connection()
    queues, now = {}, utcnow()
    with conn.pipeline(transaction=False) as pipe:
        for outbox_id, job_path, args, run_at in jobs:
            name = queue_for(job_path)
            queue = queues.get(name) or queues.setdefault(name, get_queue(name, connection=conn))
            scheduled = run_at is not None and run_at > now
            job = queue.create_job(job_path, args=tuple(args), job_id=f"outbox-{outbox_id}", failure_ttl=FAILURE_TTL,
                                   retry=retry_for(name), status=JobStatus.SCHEDULED if scheduled else JobStatus.QUEUED)
            pipe.sadd(queue.redis_queues_keys, queue.key)
            if scheduled:
                queue._persist_job(job, pipe, status=JobStatus.SCHEDULED)
                pipe.zadd(queue.scheduled_job_registry.key, {job.id: calendar.timegm(run_at.utctimetuple())})
            else:
                queue._prepare_for_queue(job)
                ttl = job.ttl if job.ttl is not None else -1
                get_unique_enqueue_script(conn)(keys=[job.key, queue.key], args=[job.id, "R", ttl] + _build_hset_args(job),
                                                client=pipe)
        pipe.execute()


def deliver(jobs):
    """Enqueue just-committed jobs [(id, job_path, args, run_at)], then mark them in a short transaction."""
    if not jobs:
        return
    hand_over_many(jobs)
    with db.engine.begin() as conn:
        conn.execute(sa.update(OutboxJob).where(OutboxJob.id.in_([job[0] for job in jobs]),
                                                OutboxJob.enqueued_at.is_(None))
                     .values(enqueued_at=utcnow()))


def relay_pending(session=None, limit=500, settle=0.0):
    """Enqueue every pending outbox row; returns how many were handed over. Stops at the first Redis error.

    settle: take only rows written at least this many seconds ago. A commit hands its own jobs over
    right after it and then marks them; the scheduler's relay leaves it that moment, so the two do
    not both hand a fresh job over and count a second attempt. A row is marked only if it is still
    unmarked and not completed, so a hand-over that lost a race changes nothing."""
    session = session or db.session
    pending = sa.and_(OutboxJob.enqueued_at.is_(None), OutboxJob.completed_at.is_(None))
    query = sa.select(OutboxJob.id, OutboxJob.job_path, OutboxJob.args, OutboxJob.run_at).where(pending)
    if settle:
        query = query.where(OutboxJob.created_at <= utcnow() - timedelta(seconds=settle))
    rows = session.execute(query.order_by(OutboxJob.id).limit(limit)).all()
    session.rollback()  # no transaction held while Redis is asked
    sent, failure = [], None
    for row in rows:
        try:
            hand_over(row.id, row.job_path, row.args, row.run_at)
        except RedisError as exc:
            failure = (row.id, f"{exc.__class__.__name__}: {exc}")
            log.warning("outbox relay: Redis unavailable (%s); %d jobs wait", exc, len(rows) - len(sent))
            break
        sent.append(row.id)
    if sent:
        session.execute(sa.update(OutboxJob).where(OutboxJob.id.in_(sent), pending)
                        .values(enqueued_at=utcnow(), attempts=OutboxJob.attempts + 1))
    if failure:
        session.execute(sa.update(OutboxJob).where(OutboxJob.id == failure[0], pending)
                        .values(attempts=OutboxJob.attempts + 1, last_error=failure[1]))
    session.commit()
    return len(sent)


def pending_count(session=None):
    session = session or db.session
    return session.scalar(sa.select(sa.func.count()).select_from(OutboxJob).where(OutboxJob.enqueued_at.is_(None)))
