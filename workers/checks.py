"""Check jobs: run an item's automated checks and store the results.

The relay enqueues them on the "checks" queue with the queue's time limit
(workers.queues.JOB_TIMEOUTS) and retries with backoff (RETRY_INTERVALS). A transient
failure raises, so the whole job is retried; on the last attempt it is stored as an
`error` result instead, so the item still shows that the check could not run.
"""
import logging

from rq import get_current_job

from queue_app.extensions import db
from queue_app.services.checks import runner
from workers.context import job_context

log = logging.getLogger(__name__)


def is_final_attempt():
    """True outside RQ, or when RQ has no retry left for this job."""
    job = get_current_job()
    return job is None or not job.retries_left


@job_context
def run_checks(item_id, item_version=None, run_key=None):
    """Run every check of the item's type. `item_version` is the version that asked (for the log);
    the run is keyed by the version found now, or by `run_key` for a re-run someone asked for."""
    results = runner.run_checks(db.session, item_id, run_key=run_key, final_attempt=is_final_attempt())
    if results is None:
        log.info("item %s is gone; no checks to run", item_id)
        return []
    return [(r.name, r.status) for r in results]


@job_context
def run_check(item_id, name, run_key=None):
    result = runner.run_check(db.session, item_id, name, run_key=run_key, final_attempt=is_final_attempt())
    return (result.name, result.status) if result else None
