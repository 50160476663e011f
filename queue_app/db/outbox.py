"""Enqueue after commit, and never lose a job.

Invariants:
- A job that must run is written as an OutboxJob row in the same transaction as the
  change that needs it, so it exists if and only if that change was committed.
- After a successful commit the rows are handed to RQ with the unique job id
  ``outbox-<id>``; after a rollback they are forgotten (the rows are gone too).
- If the process dies after the commit or Redis is down, the rows stay pending and the
  relay (workers/relay.py, run periodically) enqueues them later. The unique job id
  keeps a job from being queued twice, and every job is idempotent anyway.
- A row is complete only when its job has run: the job sets completed_at in the transaction
  that commits its effect (workers.context.job_context). One handed over and not completed
  that Redis no longer holds (flushed, failed over, its worker killed) is handed over again
  under the same id by the reconciler (workers/reconciler.py, run periodically).

Jobs are named by dotted path, and the hand-over to RQ is plugged in by the workers package
(`hand_over_with`, called by workers.init_app), so the application never imports the workers.
Without one (a bare create_app()), jobs wait for the relay.
"""
import logging

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from queue_app.db import batched_rows
from queue_app.models import OutboxJob
from queue_app.settings import OutboxSettings

log = logging.getLogger(__name__)
_PENDING = "backdesk_outbox_pending"
_DELIVER = "backdesk.outbox_deliver"


def enqueue_after_commit(session, job_path, *args, run_at=None):
    """Record a job to run once the current transaction commits (at `run_at`, if given).

    Returns the OutboxJob, or None inside batched_rows.batched_rows (bulk import), where the row
    is inserted with the batch, still before the commit, and handed to RQ after it.
    """
    values = dict(job_path=job_path, args=list(args), run_at=run_at)
    if batched_rows.add_row(session, OutboxJob, values,
                     lambda job_id: session.info.setdefault(_PENDING, []).append(
                         (job_id, job_path, list(args), run_at))):
        return None
    job = OutboxJob(**values)
    session.add(job)
    session.flush()
    session.info.setdefault(_PENDING, []).append((job.id, job_path, list(args), run_at))
    return job


def hand_over_with(app, deliver):
    """`deliver([(id, job_path, args, run_at)])` is called with the jobs of each commit of this app."""
    app.extensions[_DELIVER] = deliver


def _deliver(jobs):
    if not jobs or not has_app_context() or not OutboxSettings.current().deliver_on_commit:
        return
    deliver = current_app.extensions.get(_DELIVER)
    if deliver is None:
        return
    try:
        deliver(jobs)
    except Exception as exc:  # the relay retries; the commit has already succeeded
        log.warning("could not hand outbox jobs %s to RQ now (%s); the relay will retry",
                    [j[0] for j in jobs], exc)


@sa.event.listens_for(Session, "after_commit")
def _after_commit(session):
    jobs = session.info.pop(_PENDING, None)
    if jobs:  # not a commit without jobs (the audit chain's seal after each commit is one)
        _deliver(jobs)


@sa.event.listens_for(Session, "after_rollback")
def _after_rollback(session):
    session.info.pop(_PENDING, None)
