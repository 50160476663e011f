"""Automated checks: a registry of checks per work type, and storing their results.

Invariants: a check function is pure (item in, CheckOutcome out) and never raises for
bad data: it reports `failed`; an unexpected exception is stored as `error`. A result
for an item version that already has one for the same check is not stored twice, so
re-delivered jobs are harmless. A failed check marks the item `needs_attention`.
"""
from dataclasses import dataclass, field

import sqlalchemy as sa

from queue_app.models import CheckResult, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.audit import record_event
from queue_app.services.work_types import problems_with_item_fields


@dataclass
class CheckOutcome:
    status: str  # passed | warning | failed | error
    message: str
    data: dict = field(default_factory=dict)


def required_fields(item):
    problems = problems_with_item_fields(item)
    if problems:
        listed = "; ".join(f"{name} {problem}" for name, problem in sorted(problems.items()))
        return CheckOutcome("failed", f"Required fields missing or malformed: {listed}", {"problems": problems})
    return CheckOutcome("passed", "All required fields are present and well-formed")


CHECKS = {"required_fields": required_fields}
CHECKS_BY_TYPE = {
    "return": ["required_fields"],
    "document_verification": ["required_fields"],
    "discrepancy_fix": ["required_fields"],
    "escalation": ["required_fields"],
    "general": ["required_fields"],
}


def checks_for(item):
    return CHECKS_BY_TYPE.get(item.type, [])


def run_check(session, item_id, name, now=None):
    """Run one check and store its result; returns the CheckResult or None if the item is gone."""
    now = now or utcnow()
    item = session.get(WorkItem, item_id)
    if item is None:
        return None
    existing = session.scalar(
        sa.select(CheckResult).where(CheckResult.work_item_id == item.id, CheckResult.name == name,
                                     CheckResult.item_version == item.version, CheckResult.status != "pending")
    )
    if existing is not None:
        return existing
    try:
        outcome = CHECKS[name](item)
    except Exception as exc:  # a bug in a check must not lose the item; it shows as an error
        outcome = CheckOutcome("error", f"The check crashed: {exc.__class__.__name__}: {exc}")
    result = CheckResult(work_item_id=item.id, name=name, status=outcome.status, message=outcome.message,
                         data=outcome.data, item_version=item.version, created_at=now)
    session.add(result)
    record_event(session, item, "check_result", "worker",
                 {"check": name, "status": outcome.status, "message": outcome.message}, now=now)
    if outcome.status == "failed" and not item.needs_attention:
        session.execute(sa.update(WorkItem).where(WorkItem.id == item.id).values(needs_attention=True)
                        .execution_options(synchronize_session=False))
    session.flush()
    return result


def latest_results(session, item):
    """The newest result of each check on the item."""
    rows = session.scalars(
        sa.select(CheckResult).where(CheckResult.work_item_id == item.id).order_by(CheckResult.id.desc())
    ).all()
    latest = {}
    for row in rows:
        latest.setdefault(row.name, row)
    return [latest[name] for name in sorted(latest)]
