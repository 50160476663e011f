"""SLA clock: due times, pausing, and the state shown everywhere.

Invariants:
- Due times are computed in business minutes over the policy's calendar and stored in
  indexed columns; sla_next_due is the earliest deadline still pending (None when the
  clock is paused or stopped), the inbox's sort key.
- A pause status (policy.pause_statuses) stops the clock; leaving it moves the pending
  due times later by the paused time, so pausing never shortens what is left.
- Every change of due times bumps sla_version, so stale timers can tell they are stale.
- Resolution ends the clock: `met` when on time, otherwise `breached` stays.
"""
import sqlalchemy as sa

from queue_app.models import SlaPolicy
from queue_app.models.sla_policy import DEFAULT_PAUSE_STATUSES
from queue_app.services import clock
from queue_app.services.audit import record_event

DEFAULT_FIRST_RESPONSE_MINUTES = 240
DEFAULT_RESOLUTION_MINUTES = 2880
DEFAULT_WARN_PERCENT = 75


def find_policy(session, item):
    """The most specific active policy matching the item's type, priority and team."""
    policies = session.scalars(sa.select(SlaPolicy).where(SlaPolicy.active.is_(True)).order_by(SlaPolicy.id)).all()
    candidates = [
        p for p in policies
        if p.match_type in (None, item.type)
        and p.match_priority in (None, item.priority)
        and p.match_team_id in (None, item.team_id)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.specificity, -p.id))


def pause_statuses(item):
    policy = item.sla_policy
    return set(policy.pause_statuses if policy else DEFAULT_PAUSE_STATUSES)


def _calendar(item):
    policy = item.sla_policy
    if policy and policy.calendar:
        return policy.calendar
    return item.team.calendar if item.team else None


def _refresh_next_due(item):
    if item.sla_state in ("paused", "met") or not item.is_open:
        item.sla_next_due = None
        return
    pending = []
    if item.first_responded_at is None and item.first_response_due:
        pending.append(item.first_response_due)
    if item.resolution_due:
        pending.append(item.resolution_due)
    item.sla_next_due = min(pending) if pending else None


def start_clock(session, item, now, actor=None):
    """Set the policy and due times of a new item (or after type/priority/team change)."""
    policy = find_policy(session, item)
    item.sla_policy = policy
    item.sla_policy_id = policy.id if policy else None
    calendar = _calendar(item)
    first = policy.first_response_minutes if policy else DEFAULT_FIRST_RESPONSE_MINUTES
    resolution = policy.resolution_minutes if policy else DEFAULT_RESOLUTION_MINUTES
    start = item.created_at or now
    item.first_response_due = clock.add_business_minutes(calendar, start, first)
    item.resolution_due = clock.add_business_minutes(calendar, start, resolution)
    if item.sla_state not in ("breached",):
        item.sla_state = "paused" if item.status in pause_statuses(item) else "on_track"
    if item.sla_state == "paused" and item.sla_paused_at is None:
        item.sla_paused_at = now
    item.sla_version = (item.sla_version or 0) + 1
    _refresh_next_due(item)
    record_event(session, item, "sla_set", actor, {
        "policy": policy.name if policy else None,
        "first_response_due": item.first_response_due.isoformat(),
        "resolution_due": item.resolution_due.isoformat(),
    }, now=now)


def on_status_change(session, item, old, new, now, actor=None):
    paused = pause_statuses(item)
    if new in paused and old not in paused and item.sla_state not in ("met",):
        item.sla_paused_at = now
        item.sla_state = "paused"
        item.sla_version += 1
        record_event(session, item, "sla_paused", actor, {"status": new}, now=now)
    elif old in paused and new not in paused and item.sla_paused_at is not None:
        # Keep the business time that was left when the clock stopped, counted again from now.
        calendar = _calendar(item)
        paused_minutes = max(0.0, clock.business_minutes_between(calendar, item.sla_paused_at, now))
        if item.first_responded_at is None and item.first_response_due:
            item.first_response_due = _resume(calendar, item.sla_paused_at, item.first_response_due, now)
        if item.resolution_due:
            item.resolution_due = _resume(calendar, item.sla_paused_at, item.resolution_due, now)
        item.sla_paused_at = None
        item.sla_state = "on_track"
        item.sla_state = state_at(item, now)
        item.sla_version += 1
        record_event(session, item, "sla_resumed", actor,
                     {"paused_minutes": round(paused_minutes, 2),
                      "resolution_due": item.resolution_due.isoformat() if item.resolution_due else None}, now=now)
    if new == "resolved":
        late = item.resolution_due is not None and now > item.resolution_due
        item.sla_state = "breached" if (late or item.sla_state == "breached") else "met"
        item.sla_version += 1
    elif old in ("resolved", "closed") and new not in ("resolved", "closed"):
        item.sla_state = state_at(item, now) if item.sla_state != "breached" else "breached"
        item.sla_version += 1
    _refresh_next_due(item)


def _resume(calendar, paused_at, due, now):
    left = clock.business_minutes_between(calendar, paused_at, due)
    return clock.add_business_minutes(calendar, now, left)


def on_first_response(item, now):
    if item.first_responded_at is None:
        item.first_responded_at = now
        _refresh_next_due(item)


def state_at(item, now):
    """The SLA state as of `now`, derived from the stored due times.

    At risk once the business time left to a deadline is at most (100 - warn%) of its
    target, so time spent paused never counts towards the warning.
    """
    if item.sla_state in ("paused", "met", "breached"):
        return item.sla_state
    policy = item.sla_policy
    pending = []
    if item.first_responded_at is None and item.first_response_due:
        pending.append((item.first_response_due,
                        policy.first_response_minutes if policy else DEFAULT_FIRST_RESPONSE_MINUTES))
    if item.resolution_due and item.is_open:
        pending.append((item.resolution_due, policy.resolution_minutes if policy else DEFAULT_RESOLUTION_MINUTES))
    if any(due <= now for due, _ in pending):
        return "breached"
    warn = (policy.warn_at_percent if policy else DEFAULT_WARN_PERCENT) / 100
    calendar = _calendar(item)
    for due, target in pending:
        if clock.business_minutes_between(calendar, now, due) <= (1 - warn) * target:
            return "at_risk"
    return "on_track"


def remaining_minutes(item, now):
    """Business minutes to the next deadline (negative when overdue), or None."""
    if item.sla_next_due is None:
        return None
    return clock.business_minutes_between(_calendar(item), now, item.sla_next_due)
