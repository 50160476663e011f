"""The outbox reconciler: hand over again every job that Redis or a dead worker lost.

Run by the scheduler every OUTBOX_RECONCILE_SECONDS (and by `flask outbox reconcile`).

**Complete.** An outbox job is complete when its job function has run to the end: job_context
sets `completed_at` in the transaction that commits the job's effect. Being handed to RQ
(`enqueued_at`) is only a delivery, which Redis can lose (FLUSHALL, a restart without its
append-only file, a failover) and a worker can take down with it (SIGKILL, OOM, a lost machine).

**What is looked at.** Rows handed over more than OUTBOX_LEASE_SECONDS ago, neither completed
nor given up (the partial index ix_outbox_jobs_in_flight holds just those); a timer only once its
run_at is less than a lease and an interval ahead, so it is scheduled again before it is due.
For each, Redis is asked about RQ job `outbox-<id>` in one atomic snapshot per batch.

**Known to Redis: left alone.**
- waiting: `queued` and in its queue (or a worker's intermediate queue), `scheduled` and in the
  queue's scheduled registry (a timer, or a retry after its back-off), `deferred`;
- running: `started` by a live worker: the worker's key exists, names this job as its current
  job and has had a heartbeat within the lease (busy workers beat several times per lease, see
  workers.cli.heartbeat_seconds; worker and scheduler clocks must agree to well within a lease,
  as NTP keeps them), and the job is within its timeout;
- finished: RQ ran it. Its completion is committed before RQ records that, so such a row is seen
  completed next time (one that is not, a job without job_context, is marked completed here).

**Given up: recorded, left for a person.** `failed` (RQ's last retry failed, or RQ found it
abandoned with no retry left), `stopped` and `canceled` get `failed_at` and the error. Handing
them over again would run a job that always fails for ever; `rq requeue outbox-<id>` runs one
again, and its completion is recorded as usual.

**Lost: handed over again under the same id.** No record at all; or a record that is not where
its status says (`queued` in no queue, `scheduled` in no registry, `started` by a worker that is
gone or silent for a lease). A job queued in no queue is read again half a second later, since a
worker that has just popped it looks the same until it marks it started. The stale record is
deleted first, only if it is still the one seen, so RQ's unique=True takes the new one and still
refuses a third; a record that changed meanwhile leaves the row as it is for the next pass. A
timer whose run_at is ahead is scheduled for run_at again, never run early. The row is then
claimed (its attempts counter must not have moved, and it must still be in flight), so a job that
completed meanwhile is left alone and two reconcilers hand a job over once.

Every job is idempotent, so the rare double run (a worker frozen longer than a lease, then
resumed) does no harm; mail is sent at most once (workers.mail_out).
"""
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import sqlalchemy as sa
from flask import current_app
from redis.exceptions import RedisError, WatchError
from rq.executions import ExecutionRegistry
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.utils import utcparse
from rq.worker import Worker

from queue_app.extensions import db
from queue_app.models import OutboxJob
from queue_app.models.base import utcnow
from workers.queues import JOB_TIMEOUTS, QUEUES, get_queue, queue_for, redis_connection
from workers.relay import hand_over

log = logging.getLogger(__name__)

WAITING, RUNNING, FINISHED, GIVEN_UP, HANDED_OVER = "waiting", "running", "finished", "given up", "handed over again"
STOPPED_BY_RQ = ("failed", "stopped", "canceled")
# How long a worker may take between popping a job and marking it started.
DEQUEUE_SETTLE_SECONDS = 0.5
# RQ's forking worker kills a horse that outlives its timeout by this much.
HORSE_GRACE = timedelta(seconds=60)


@dataclass
class Seen:
    """What Redis holds of one outbox job, read in one snapshot."""

    job_id: str
    queue: str
    status: Optional[str]
    worker_name: Optional[str]
    started_at: Optional[str]
    timeout: Optional[str]
    in_queue: bool
    in_schedule: bool


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _snapshot(conn, rows):
    """[Seen] for the rows, read in one MULTI so status and queue membership agree."""
    with conn.pipeline(transaction=True) as pipe:
        for row in rows:
            job_id, queue = f"outbox-{row.id}", get_queue(queue_for(row.job_path), connection=conn)
            pipe.hmget(Job.key_for(job_id), "status", "worker_name", "started_at", "timeout")
            pipe.lpos(queue.key, job_id)
            pipe.lpos(queue.intermediate_queue_key, job_id)
            pipe.zscore(queue.scheduled_job_registry.key, job_id)
        replies = pipe.execute()
    seen = []
    for index, row in enumerate(rows):
        (status, worker_name, started_at, timeout), queued, taken, scheduled = replies[4 * index:4 * index + 4]
        seen.append(Seen(f"outbox-{row.id}", queue_for(row.job_path), _text(status), _text(worker_name),
                         _text(started_at), _text(timeout), queued is not None or taken is not None,
                         scheduled is not None))
    return seen


def _workers(conn, seen):
    """{worker name: (last heartbeat, current job)} of the workers named by started jobs (missing: gone)."""
    names = sorted({s.worker_name for s in seen if s.status == "started" and s.worker_name})
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(Worker.redis_worker_namespace_prefix + name, "last_heartbeat", "current_job")
        replies = pipe.execute() if names else []
    return {name: (_text(beat), _text(current)) for name, (beat, current) in zip(names, replies) if beat}


def _runs_on_a_live_worker(seen, workers, now, lease):
    heartbeat, current_job = workers.get(seen.worker_name, (None, None))
    if heartbeat is None or current_job != seen.job_id or now - utcparse(heartbeat) > lease:
        return False
    try:
        timeout = int(seen.timeout) if seen.timeout else JOB_TIMEOUTS[seen.queue]
        started = utcparse(seen.started_at) if seen.started_at else None
    except ValueError:
        return True  # a record we cannot read: the worker is alive, let it be
    return timeout < 0 or started is None or now < started + timedelta(seconds=timeout) + HORSE_GRACE + lease


def verdict(seen, workers, now, lease):
    """(WAITING | RUNNING | FINISHED | GIVEN_UP | None, why); None: lost, to be handed over again."""
    status = seen.status
    if status is None:
        return None, "no record in Redis"
    if status == "queued":
        return (WAITING, None) if seen.in_queue else (None, "queued in no queue")
    if status == "scheduled":
        return (WAITING, None) if seen.in_schedule else (None, "scheduled in no registry")
    if status == "deferred":
        return WAITING, None
    if status == "started":
        if _runs_on_a_live_worker(seen, workers, now, lease):
            return RUNNING, None
        return None, f"started by worker {seen.worker_name or '?'}, which is gone or silent"
    if status == "finished":
        return FINISHED, None
    if status in STOPPED_BY_RQ:
        return GIVEN_UP, status
    return None, f"left {status} in Redis"


def _look_again_at_dequeued(conn, rows, seen, verdicts, now, lease):
    """A worker listening on several queues pops a job (BLPOP) a moment before it marks it started,
    so "queued in no queue" is also what a job being taken looks like. Such jobs are read again
    after DEQUEUE_SETTLE_SECONDS; only one still queued in no queue (its worker died between the
    two steps, or Redis lost the list) is lost."""
    again = [index for index, (found, why) in enumerate(verdicts) if found is None and seen[index].status == "queued"]
    if not again:
        return seen, verdicts
    time.sleep(DEQUEUE_SETTLE_SECONDS)
    seen, verdicts = list(seen), list(verdicts)
    fresh = _snapshot(conn, [rows[index] for index in again])
    workers = _workers(conn, fresh)
    for index, what in zip(again, fresh):
        seen[index], verdicts[index] = what, verdict(what, workers, now, lease)
    return seen, verdicts


def _forget(conn, seen):
    """Delete what is left of a lost job (its record, any queue or registry entry), if its record is
    still the one seen (or still missing); False if it changed meanwhile."""
    queue = get_queue(seen.queue, connection=conn)
    key = Job.key_for(seen.job_id)
    started = StartedJobRegistry(queue=queue)
    with conn.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            now_there = [_text(v) for v in pipe.hmget(key, "status", "worker_name", "started_at")]
            if now_there != [seen.status, seen.worker_name, seen.started_at]:
                return False
            executions = [entry for entry in pipe.zrange(started.key, 0, -1)
                          if _text(entry).startswith(seen.job_id + ":")]
            pipe.multi()
            if executions:  # else RQ's cleanup would later "abandon" the new job of the same id
                pipe.zrem(started.key, *executions)
            pipe.zrem(queue.scheduled_job_registry.key, seen.job_id)
            pipe.lrem(queue.key, 0, seen.job_id)
            pipe.lrem(queue.intermediate_queue_key, 0, seen.job_id)
            pipe.delete(key, ExecutionRegistry.key_template.format(seen.job_id))
            pipe.execute()
            return True
        except WatchError:
            return False


def _claim(session, row, why, now):
    """Record the new hand-over; False if the row completed, was given up or was handed over meanwhile."""
    claimed = session.execute(
        sa.update(OutboxJob)
        .where(OutboxJob.id == row.id, OutboxJob.attempts == row.attempts, OutboxJob.completed_at.is_(None),
               OutboxJob.failed_at.is_(None))
        .values(enqueued_at=now, attempts=OutboxJob.attempts + 1, last_error=f"handed over again: {why}")
    ).rowcount
    session.commit()
    return claimed == 1


def _give_up(session, conn, row, status, now):
    error = f"{status} in RQ"
    try:
        result = Job.fetch(f"outbox-{row.id}", connection=conn).latest_result()
        if result is not None and result.exc_string:
            error += ": " + result.exc_string.strip().splitlines()[-1]
    except Exception:  # the record went meanwhile; the status is enough
        pass
    given_up = session.execute(sa.update(OutboxJob).where(OutboxJob.id == row.id, OutboxJob.completed_at.is_(None),
                                                          OutboxJob.failed_at.is_(None))
                               .values(failed_at=now, last_error=error)).rowcount
    session.commit()
    if given_up:
        log.error("outbox job %s (%s%r) was given up by RQ (%s); run it again with `rq requeue outbox-%s`",
                  row.id, row.job_path, tuple(row.args), error, row.id)


def _mark_finished(session, row, now):
    marked = session.execute(sa.update(OutboxJob).where(OutboxJob.id == row.id, OutboxJob.completed_at.is_(None))
                             .values(completed_at=now)).rowcount
    session.commit()
    if marked:
        log.warning("outbox job %s (%s) finished in RQ without recording its completion (not a job_context "
                    "job?); marked completed", row.id, row.job_path)


def reconcile(session=None, *, now=None, lease=None, batch=500, limit=10_000):
    """One pass; returns a Counter of verdicts ("handed over again", "waiting", "running", ...)."""
    session = session or db.session
    cfg = current_app.config
    now = now or utcnow()
    lease = timedelta(seconds=cfg["OUTBOX_LEASE_SECONDS"] if lease is None else lease)
    # A timer is looked at once it is this close, so a lost one is scheduled again before it is due.
    horizon = now + lease + timedelta(seconds=cfg["OUTBOX_RECONCILE_SECONDS"])
    conn = redis_connection()
    counts = Counter()
    after = 0
    while sum(counts.values()) < limit:
        rows = session.execute(
            sa.select(OutboxJob.id, OutboxJob.job_path, OutboxJob.args, OutboxJob.run_at, OutboxJob.attempts)
            .where(OutboxJob.completed_at.is_(None), OutboxJob.failed_at.is_(None),
                   OutboxJob.enqueued_at < now - lease,
                   sa.or_(OutboxJob.run_at.is_(None), OutboxJob.run_at <= horizon), OutboxJob.id > after)
            .order_by(OutboxJob.id).limit(batch)).all()
        session.rollback()  # no transaction held while Redis is asked
        if not rows:
            break
        after = rows[-1].id
        seen = _snapshot(conn, rows)
        workers = _workers(conn, seen)
        verdicts = [verdict(what, workers, now, lease) for what in seen]
        seen, verdicts = _look_again_at_dequeued(conn, rows, seen, verdicts, now, lease)
        for row, what, (found, why) in zip(rows, seen, verdicts):
            if found == GIVEN_UP:
                _give_up(session, conn, row, why, now)
            elif found == FINISHED:
                _mark_finished(session, row, now)
            elif found is None:
                # Redis first: a record that moved meanwhile leaves the row untouched for the next pass.
                if not _forget(conn, what) or not _claim(session, row, why, now):
                    found = "changed meanwhile"
                else:
                    hand_over(row.id, row.job_path, row.args, row.run_at)
                    found = HANDED_OVER
                    log.warning("outbox job %s (%s%r): %s; handed over again%s", row.id, row.job_path,
                                tuple(row.args), why, f" for {row.run_at.isoformat()}"
                                if row.run_at is not None and row.run_at > utcnow() else "")
            counts[found] += 1
    _clean_started_registries(conn)
    return counts


def _clean_started_registries(conn):
    """RQ's own handling of abandoned jobs (retry, or failed), which its workers do only every 10 minutes;
    it runs after the pass, so a job this pass found lost is handed over fresh instead."""
    for name in QUEUES:
        try:
            StartedJobRegistry(queue=get_queue(name, connection=conn)).cleanup()
        except RedisError as exc:
            log.warning("outbox reconciler: cleaning the started jobs of %s failed: %s", name, exc)
            return

