"""Jobs recorded in the transaction that needs them, handed to RQ after it commits, and marked
complete by the job itself (workers.context.job_context) in the transaction of its effect."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column


from queue_app.models.base import db, utcnow

# Handed to RQ, neither completed nor given up: what the reconciler looks at (a small partial index).
IN_FLIGHT = sa.text("completed_at IS NULL AND failed_at IS NULL")


class OutboxJob(db.Model):
    __tablename__ = "outbox_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_path: Mapped[str] = mapped_column(sa.String(255))  # dotted path, e.g. "workers.checks.run_checks"
    args: Mapped[list] = mapped_column(sa.JSON, default=list)
    queue: Mapped[str] = mapped_column(sa.String(32), default="default")
    run_at: Mapped[Optional[datetime]]  # a timer: enqueue for this instant with RQ's scheduler
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[Optional[datetime]]  # last handed to RQ (by the commit, the relay or the reconciler)
    # Set by the job, in the same transaction as its effect: the job has run. Never set by a hand-over.
    completed_at: Mapped[Optional[datetime]]
    # Set by the reconciler when RQ gave the job up (failed after its last retry, stopped, canceled).
    failed_at: Mapped[Optional[datetime]]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[Optional[str]] = mapped_column(sa.Text)

    __table_args__ = (
        sa.Index("ix_outbox_jobs_pending", "enqueued_at", "id"),
        sa.Index("ix_outbox_jobs_in_flight", "enqueued_at", sqlite_where=IN_FLIGHT, postgresql_where=IN_FLIGHT),
    )

    @property
    def rq_job_id(self):
        return f"outbox-{self.id}"
