"""Check jobs: run an item's automated checks and store the results."""
from rq import Retry, get_current_job

from queue_app.extensions import db
from queue_app.models import WorkItem
from queue_app.services import checks
from workers.context import job_context
from workers.queues import get_queue


@job_context
def run_checks(item_id, item_version=None):
    """Run every check for the item's type; each result is stored once per item version."""
    item = db.session.get(WorkItem, item_id)
    if item is None:
        return []
    results = [checks.run_check(db.session, item_id, name) for name in checks.checks_for(item)]
    return [(r.name, r.status) for r in results if r is not None]


@job_context
def run_check(item_id, name):
    result = checks.run_check(db.session, item_id, name)
    return (result.name, result.status) if result else None


def enqueue_check_now(item_id, name):
    """Used by the re-run button: a direct enqueue with retries on transient failures."""
    job = get_current_job()
    queue = get_queue("checks", connection=job.connection if job else None)
    return queue.enqueue(run_check, item_id, name, retry=Retry(max=3, interval=[5, 30, 120]))
