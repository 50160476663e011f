"""Run each job inside an app context with its own database transaction."""
import functools
import logging
import os

import sqlalchemy as sa
from flask import current_app, has_app_context

log = logging.getLogger(__name__)
_app = None
_app_pid = None


def _process_app():
    """One app per worker process; pooled connections inherited across fork are dropped."""
    global _app, _app_pid
    if _app is None or _app_pid != os.getpid():
        if _app is not None:
            from queue_app.extensions import db

            with _app.app_context():
                db.engine.dispose(close=False)
        else:
            from queue_app import create_app
            from workers import init_app

            _app = create_app()
            init_app(_app)
        _app_pid = os.getpid()
    return _app


def _current_outbox_id():
    """The OutboxJob id of the RQ job running now (`outbox-<id>`), or None (not an outbox job, or not in RQ)."""
    from rq import get_current_job

    job = get_current_job()
    if job is None or not job.id.startswith("outbox-"):
        return None
    try:
        return int(job.id.split("-", 1)[1])
    except ValueError:
        return None


def _mark_outbox_row_completed(outbox_id):
    """The job has done its work: recorded in the job's own transaction, just before it commits, so
    the mark and the effect are committed together or not at all (the reconciler re-hands the rest)."""
    from queue_app.extensions import db
    from queue_app.models import OutboxJob
    from queue_app.models.base import utcnow

    if outbox_id is None:
        return
    now = utcnow()
    db.session.execute(sa.update(OutboxJob).where(OutboxJob.id == outbox_id, OutboxJob.completed_at.is_(None))
                       .values(completed_at=now, enqueued_at=sa.func.coalesce(OutboxJob.enqueued_at, now)))


def job_context(func):
    """Commit on success, roll back on failure (RQ then retries if the job asked for it).

    An outbox job (RQ id `outbox-<id>`) is marked completed in the transaction that commits its
    effect; a job that raises, or whose process dies, leaves its row not completed.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from queue_app.extensions import db

        def run():
            try:
                # No mark when the job starts: on SQLite that write would hold the write lock for the
                # whole job. A relay that hands a running job over again meanwhile is refused by
                # RQ's unique id, and the completion below records the hand-over too.
                outbox_id = _current_outbox_id()
                result = func(*args, **kwargs)
                _mark_outbox_row_completed(outbox_id)
                db.session.commit()
                return result
            except Exception:
                db.session.rollback()
                raise
            finally:
                db.session.remove()

        if has_app_context():
            return run()
        with _process_app().app_context():
            return run()

    return wrapper


def config(key, default=None):
    return current_app.config.get(key, default)
