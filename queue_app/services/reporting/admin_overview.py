"""What needs an admin now, for the admin landing page: each count capped, so the page costs the
same whatever the size of the tables behind it."""
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from queue_app.models import Approval, InboundEmail, OutboxJob, WorkItem
from queue_app.models.work_item import OPEN_STATUSES
from queue_app.services.audit import chain

COUNT_CAP = 999


@dataclass
class Count:
    value: int
    capped: bool  # more than COUNT_CAP: shown as "999+"

    def __str__(self):
        return f"{COUNT_CAP}+" if self.capped else str(self.value)

    def __bool__(self):
        return self.value > 0


@dataclass
class Overview:
    quarantined: Count  # emails that could not be filed
    pending_approvals: Count  # maker-checker requests waiting for a decision
    breached: Count  # open items past their SLA deadline
    failed_jobs: Count  # outbox jobs RQ gave up on (no retry left)
    unsealed: Optional[int]  # audit entries and item events not yet in the hash chain

    @property
    def all_clear(self):
        return not (self.quarantined or self.pending_approvals or self.breached or self.failed_jobs
                    or self.unsealed)


def _capped_count(session, query):
    rows = query.limit(COUNT_CAP + 1).subquery()
    value = session.scalar(sa.select(sa.func.count()).select_from(rows))
    return Count(min(value, COUNT_CAP), value > COUNT_CAP)


def overview(session):
    """The counts the admin landing page shows, each linked there to the page that deals with it."""
    status = chain.status(session)
    return Overview(
        quarantined=_capped_count(session, sa.select(InboundEmail.id).where(InboundEmail.status == "quarantined")),
        pending_approvals=_capped_count(session, sa.select(Approval.id).where(Approval.status == "pending")),
        breached=_capped_count(session, sa.select(WorkItem.id).where(WorkItem.status.in_(OPEN_STATUSES),
                                                                     WorkItem.sla_state == "breached")),
        failed_jobs=_capped_count(session, sa.select(OutboxJob.id).where(OutboxJob.failed_at.is_not(None),
                                                                         OutboxJob.completed_at.is_(None))),
        unsealed=sum(status.pending.values()),
    )
