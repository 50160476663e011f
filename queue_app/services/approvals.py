"""Maker-checker approvals.

Invariants: resolving a return or a discrepancy fix whose amount is above its team's
approval threshold moves it to `awaiting_approval` with a pending Approval; only a
supervisor of the team (or an admin) other than the maker may decide; approval
resolves the item, rejection returns it to `open`. Every step is an event.
"""
from decimal import Decimal

import sqlalchemy as sa

from queue_app.models import Approval
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.audit import record_event
from queue_app.services.errors import Invalid, PermissionDenied


def amount_at_stake(item):
    if item.type == "return":
        return item.amount
    if item.type == "discrepancy_fix" and item.expected_amount is not None and item.actual_amount is not None:
        return abs(Decimal(item.expected_amount) - Decimal(item.actual_amount))
    return None


def needs_approval(item):
    threshold = item.team.approval_threshold if item.team else None
    amount = amount_at_stake(item)
    return threshold is not None and amount is not None and Decimal(amount) > Decimal(threshold)


def pending_approval(session, item):
    return session.scalar(sa.select(Approval).where(Approval.work_item_id == item.id, Approval.status == "pending"))


def request_approval(session, item, *, actor, action, now=None, comment=None):
    now = now or utcnow()
    if pending_approval(session, item) is not None:
        raise Invalid(f"{item.ref} already has a pending approval", {"status": "awaiting_approval"})
    approval = Approval(work_item_id=item.id, action=action, requested_by_id=actor.id, requested_at=now,
                        comment=comment, data={"amount": str(amount_at_stake(item)), "from_status": item.status})
    session.add(approval)
    session.flush()
    old = item.status
    item.status = "awaiting_approval"
    item.updated_at = now
    record_event(session, item, "approval_requested", actor,
                 {"approval_id": approval.id, "action": action, "amount": approval.data["amount"]}, now=now)
    record_event(session, item, "status_changed", actor, {"from": old, "to": "awaiting_approval"}, now=now)
    session.flush()
    return item


def decide(session, item, *, actor, approve, comment=None, now=None):
    from queue_app.services.work_items import _apply_status

    now = now or utcnow()
    access.require_view(actor, item)
    approval = pending_approval(session, item)
    if approval is None:
        raise Invalid(f"{item.ref} has no pending approval", {"approval": "none pending"})
    if not access.manages_team(actor, item.team_id):
        raise PermissionDenied("only a supervisor of the team can decide approvals")
    if approval.requested_by_id == actor.id:
        raise PermissionDenied("the person who asked for approval cannot approve their own request")
    approval.status = "approved" if approve else "rejected"
    approval.decided_by_id = actor.id
    approval.decided_at = now
    approval.comment = comment or approval.comment
    record_event(session, item, "approval_decided", actor,
                 {"approval_id": approval.id, "decision": approval.status, "comment": comment}, now=now)
    _apply_status(session, item, "resolved" if approve else "open", actor=actor, now=now, comment=comment)
    return item
