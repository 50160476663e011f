"""SLA policies on items: which policy applies, due times, pausing, recalculation, SLA state.

The ladder of steps taken when those due times pass is services.sla.ladder.

Invariants:
- Due times are computed in business minutes over the policy's calendar and stored in
  indexed columns. sla_next_due is the earliest deadline still pending (None when the
  clock is paused or stopped), the inbox's sort key; sla_next_check_at is the instant
  the next ladder step is due, the sweep's key (None when nothing is pending).
- A pause status (policy.pause_statuses) stops the clock; leaving it keeps the business
  time that was left, so pausing never shortens what is left.
- Every change of due times bumps sla_version and schedules a timer job (through the
  outbox, so only after commit) at sla_next_check_at. A timer carrying an old version,
  or finding nothing due, does nothing.
- Resolution ends the clock: `met` when on time, otherwise `breached` stays.
"""
from contextlib import contextmanager
from contextvars import ContextVar

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from queue_app.db.config_cache import cached
from queue_app.db.outbox import enqueue_after_commit
from queue_app.models import SlaPolicy, WorkItem
from queue_app.models.sla_policy import DEFAULT_PAUSE_STATUSES
from queue_app.models.work_item import OPEN_STATUSES
from queue_app.services.items.events import record_event
from queue_app.services.sla import clock as sla_clock

DEFAULT_FIRST_RESPONSE_MINUTES = 240
DEFAULT_RESOLUTION_MINUTES = 2880
DEFAULT_WARN_PERCENT = 75
# Used when a policy names no ladder: on breach tell the assignee and the team's
# supervisors and raise the priority one step.
DEFAULT_LADDER = [{"after_breach_minutes": 0, "notify": ["assignee", "supervisors"], "raise_priority": True}]
TARGETS = ("first_response", "resolution")
TIMER_JOB = "workers.sla_timers.fire_sla_timer"


# Bulk intake files many items at one instant (its transaction's time) under a few policies,
# so the same due times are computed again and again; inside `memoised_due_times()` each
# (calendar, start, minutes) is computed once. Outside it nothing is kept.
_MEMO = ContextVar("sla_due_time_memo", default=None)


@contextmanager
def memoised_due_times():
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def _add_business_minutes(calendar, start, minutes):
    memo = _MEMO.get()
    if memo is None:
        return sla_clock.add_business_minutes(calendar, start, minutes)
    key = (id(calendar), start, minutes)
    hit = memo.get(key)
    if hit is not None and hit[0] is calendar:  # the calendar kept in the entry: its id cannot be reused
        return hit[1]
    result = sla_clock.add_business_minutes(calendar, start, minutes)
    memo[key] = (calendar, result)
    return result


def find_policy(session, item):
    """The most specific active policy matching the item's type, priority and team."""
    policies = cached(session, "sla_policies", lambda: session.scalars(
        sa.select(SlaPolicy).where(SlaPolicy.active.is_(True)).order_by(SlaPolicy.id)
        .options(selectinload(SlaPolicy.calendar))).all())
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
    """The statuses that stop the item's clock: the policy's, and waiting for a checker unless
    the policy lets the clock run then (approval_wait)."""
    policy = item.sla_policy
    paused = set(policy.pause_statuses if policy else DEFAULT_PAUSE_STATUSES)
    if policy is None or policy.approval_wait != "running":
        paused.add("awaiting_approval")
    return paused


def _calendar(item):
    policy = item.sla_policy
    if policy and policy.calendar:
        return policy.calendar
    return item.team.calendar if item.team else None


def _target_minutes(item, target):
    policy = item.sla_policy
    if target == "first_response":
        return policy.first_response_minutes if policy else DEFAULT_FIRST_RESPONSE_MINUTES
    return policy.resolution_minutes if policy else DEFAULT_RESOLUTION_MINUTES


def _warn_fraction(item):
    policy = item.sla_policy
    return (policy.warn_at_percent if policy else DEFAULT_WARN_PERCENT) / 100


def ladder(item):
    policy = item.sla_policy
    return (policy.escalation if policy and policy.escalation else None) or DEFAULT_LADDER


def pending_targets(item):
    """(target, due) pairs whose clock is still running."""
    if not item.is_open or item.sla_state in ("paused", "met"):
        return []
    pending = []
    if item.first_responded_at is None and item.first_response_due:
        pending.append(("first_response", item.first_response_due))
    if item.resolution_due:
        pending.append(("resolution", item.resolution_due))
    return pending


def steps(item, target, due):
    """The ladder of one target as (stage, instant, kind, level, rung), in order."""
    calendar = _calendar(item)
    minutes = _target_minutes(item, target)
    warn_at = _add_business_minutes(calendar, due, -(1 - _warn_fraction(item)) * minutes)
    out = [(1, warn_at, "warning", 0, None)]
    for index, rung in enumerate(ladder(item)):
        after = rung.get("after_breach_minutes", 0) or 0
        at = _add_business_minutes(calendar, due, after) if after else due
        out.append((2 + index, at, "breach" if index == 0 else "escalation", index + 1, rung))
    return out


def stage_of(item, target):
    return item.first_response_stage if target == "first_response" else item.resolution_stage


def set_stage(item, target, stage):
    if target == "first_response":
        item.first_response_stage = max(item.first_response_stage or 0, stage)
    else:
        item.resolution_stage = max(item.resolution_stage or 0, stage)


def next_check(item):
    """The instant of the next ladder step not yet taken, or None."""
    upcoming = []
    for target, due in pending_targets(item):
        done = stage_of(item, target) or 0
        for stage, at, *_ in steps(item, target, due):
            if stage > done:
                upcoming.append(at)
                break
    return min(upcoming) if upcoming else None


def refresh(session, item):
    """Recompute the sort and sweep keys; schedule a timer when the next step moved."""
    pending = pending_targets(item)
    item.sla_next_due = min(due for _, due in pending) if pending else None
    when = next_check(item)
    if when != item.sla_next_check_at:
        item.sla_next_check_at = when
        if when is not None and item.id is not None:
            enqueue_after_commit(session, TIMER_JOB, item.id, item.sla_version, run_at=when)


def _due_from_start(item, target, start):
    minutes = _target_minutes(item, target) + (item.sla_paused_minutes or 0)
    return _add_business_minutes(_calendar(item), start, minutes)


def start_clock(session, item, now, actor=None):
    """Set the policy and due times of a new item."""
    policy = find_policy(session, item)
    item.sla_policy = policy
    item.sla_policy_id = policy.id if policy else None
    start = item.created_at or now
    item.first_response_due = _due_from_start(item, "first_response", start)
    item.resolution_due = _due_from_start(item, "resolution", start)
    if item.sla_state != "breached":
        item.sla_state = "paused" if item.status in pause_statuses(item) else "on_track"
    if item.sla_state == "paused" and item.sla_paused_at is None:
        item.sla_paused_at = now
    item.sla_version = (item.sla_version or 0) + 1
    refresh(session, item)
    record_event(session, item, "sla_set", actor, {
        "policy": policy.name if policy else None,
        "first_response_due": item.first_response_due.isoformat(),
        "resolution_due": item.resolution_due.isoformat(),
    }, now=now)


def recalculate(session, item, now, actor=None, reason="changed"):
    """Re-derive policy and due times after a change of type, priority, team or policy.

    Targets count from creation plus the business time spent paused; a first response
    already given keeps its due time. Steps already taken are not repeated.
    """
    if not item.is_open:
        return False
    old = (item.sla_policy_id, item.first_response_due, item.resolution_due)
    policy = find_policy(session, item)
    item.sla_policy = policy
    item.sla_policy_id = policy.id if policy else None
    if item.first_responded_at is None:
        item.first_response_due = _due_from_start(item, "first_response", item.created_at)
    item.resolution_due = _due_from_start(item, "resolution", item.created_at)
    if old == (item.sla_policy_id, item.first_response_due, item.resolution_due):
        refresh(session, item)  # keeps the sweep key right for items from before timers existed
        return False
    item.sla_version += 1
    if item.sla_state in ("on_track", "at_risk"):
        item.sla_state = state_at(item, now)
    refresh(session, item)
    record_event(session, item, "sla_recalculated", actor, {
        "reason": reason, "policy": policy.name if policy else None,
        "first_response_due": item.first_response_due.isoformat() if item.first_response_due else None,
        "resolution_due": item.resolution_due.isoformat(),
    }, now=now)
    return True


def on_status_change(session, item, old, new, now, actor=None):
    paused = pause_statuses(item)
    if new in paused and old not in paused and item.sla_state != "met":
        item.sla_paused_at = now
        item.sla_state = "paused"
        item.sla_version += 1
        record_event(session, item, "sla_paused", actor, {"status": new}, now=now)
    elif old in paused and new not in paused and item.sla_paused_at is not None:
        # Keep the business time that was left when the clock stopped, counted again from now.
        calendar = _calendar(item)
        paused_minutes = max(0.0, sla_clock.business_minutes_between(calendar, item.sla_paused_at, now))
        if item.first_responded_at is None and item.first_response_due:
            item.first_response_due = _resume(calendar, item.sla_paused_at, item.first_response_due, now)
        if item.resolution_due:
            item.resolution_due = _resume(calendar, item.sla_paused_at, item.resolution_due, now)
        item.sla_paused_minutes = (item.sla_paused_minutes or 0) + paused_minutes
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
    refresh(session, item)


def _resume(calendar, paused_at, due, now):
    left = sla_clock.business_minutes_between(calendar, paused_at, due)
    return sla_clock.add_business_minutes(calendar, now, left)


def on_first_response(session, item, now):
    if item.first_responded_at is None:
        item.first_responded_at = now
        refresh(session, item)


def state_at(item, now):
    """The SLA state as of `now`, derived from the stored due times.

    At risk once the business time left to a deadline is at most (100 - warn%) of its
    target, so time spent paused never counts towards the warning.
    """
    if item.sla_state in ("paused", "met", "breached"):
        return item.sla_state
    pending = []
    if item.first_responded_at is None and item.first_response_due:
        pending.append((item.first_response_due, _target_minutes(item, "first_response")))
    if item.resolution_due and item.is_open:
        pending.append((item.resolution_due, _target_minutes(item, "resolution")))
    if any(due <= now for due, _ in pending):
        return "breached"
    warn = _warn_fraction(item)
    calendar = _calendar(item)
    for due, target in pending:
        if sla_clock.business_minutes_between(calendar, now, due) <= (1 - warn) * target:
            return "at_risk"
    return "on_track"


def remaining_minutes(item, now):
    """Business minutes to the next deadline (negative when overdue), or None."""
    if item.sla_next_due is None:
        return None
    return sla_clock.business_minutes_between(_calendar(item), now, item.sla_next_due)


# --- the ladder: warnings, breaches and escalations ---------------------------------

def open_item_ids(session, after_id=0, limit=500):
    """Open items in id order, for recalculation in batches after a policy or calendar change."""
    return session.scalars(
        sa.select(WorkItem.id).where(WorkItem.status.in_(OPEN_STATUSES), WorkItem.id > after_id)
        .order_by(WorkItem.id).limit(limit)
    ).all()
