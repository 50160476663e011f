"""Test-only outbox jobs, imported by real `flask worker` processes by dotted path (never by the app).

They go to the "default" queue (workers.queues.queue_for: a module it does not know).
"""
import os
import time
from pathlib import Path

from queue_app.extensions import db
from queue_app.models import WorkItem
from queue_app.services.items.events import record_event
from workers.context import job_context

JOB = "tests.integration.outbox_jobs.wait_for_release"
EVENT = "test_job_done"


@job_context
def wait_for_release(marker_dir, item_id):
    """Record this start (`start-<n>-<pid>`), wait until `release` exists, then write the job's effect:
    one Event on the item, committed with the job's completion."""
    marker_dir = Path(marker_dir)
    run = len(list(marker_dir.glob("start-*"))) + 1
    (marker_dir / f"start-{run}-{os.getpid()}").touch()
    deadline = time.monotonic() + 150
    while not (marker_dir / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.05)
    record_event(db.session, db.session.get(WorkItem, item_id), EVENT, "worker", {"run": run})
    return run
