"""Maker-checker approvals: asking, deciding, who may decide, and the approvals queue.

Invariants:
- Resolving an item whose stake needs a checker (services.approvals.stake) moves it to
  `awaiting_approval` with a pending Approval (at most one per item), through the gate.
- Only a supervisor of the item's team, an admin, or a designated checker who is a member
  of the team may decide, and never the person who asked (the maker): that is a
  PermissionDenied (403) whichever way the request comes in. Someone who cannot see the
  item gets NotFound, as everywhere.
- Approval resolves the item; rejection (which needs a comment) returns it to `open`.
  Every step is an event.
- One decision per approval: deciding first claims the approval with an UPDATE that only
  matches while it is still pending, so of two decisions at the same moment (two checkers, or
  one clicking twice) the second waits for the first and is refused with a Conflict.
"""
import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from queue_app.models import Approval, WorkItem, team_checkers
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.approvals import reminders, stake
from queue_app.services.audit import record as audit
from queue_app.services.errors import Conflict, Invalid, PermissionDenied
from queue_app.services.items import state, watchers
from queue_app.services.items.events import record_event

MAX_COMMENT = 2000


def pending_approval(session, item):
    return session.scalar(sa.select(Approval).where(Approval.work_item_id == item.id, Approval.status == "pending"))


def request_approval(session, item, *, actor, action, now=None, comment=None):
    now = now or utcnow()
    if pending_approval(session, item) is not None:
        raise Invalid(f"{item.ref} already has a pending approval", {"status": "awaiting_approval"})
    at_stake = stake.stake(session, item, now.date())
    # Bound to what is approved (a change voids it), and what the checker needs to see.
    data = {**(at_stake.as_data() if at_stake else {}), "from_status": item.status,
            "snapshot": stake.snapshot(item),
            "carried": [[f"{amount:.2f}", currency, team_id] for amount, currency, team_id in stake.carried(item)]}
    approval = Approval(work_item_id=item.id, action=action, requested_by_id=actor.id, requested_at=now,
                        comment=comment, data=data)
    session.add(approval)
    session.flush()
    record_event(session, item, "approval_requested", actor,
                 {"approval_id": approval.id, "action": action, "comment": comment,
                  **{k: v for k, v in data.items() if k not in ("from_status", "snapshot", "carried")}}, now=now)
    state.enter_approval(session, item, approval, actor=actor, now=now)
    reminders.schedule(session, item, approval, now)
    return item


# --- who decides ------------------------------------------------------------------------------

def is_checker(session, user, team_id):
    return session.scalar(sa.select(sa.func.count()).select_from(team_checkers).where(
        team_checkers.c.team_id == team_id, team_checkers.c.user_id == user.id)) > 0


def may_decide(session, user, item):
    """May `user` decide approvals of this item's team (the maker rule is separate)?"""
    if access.manages_team(user, item.team_id):
        return True
    return item.team_id in user.team_ids and is_checker(session, user, item.team_id)


def may_decide_approval(session, user, item, approval):
    return approval is not None and approval.requested_by_id != user.id and may_decide(session, user, item)


def decide(session, item, *, actor, approve, comment=None, now=None):
    now = now or utcnow()
    access.require_change(actor, item)
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > MAX_COMMENT:
        raise Invalid("the comment is too long", {"comment": f"at most {MAX_COMMENT} characters"})
    approval = pending_approval(session, item)
    if approval is None:
        raise Invalid(f"{item.ref} has no pending approval", {"approval": "none pending"})
    if approval.requested_by_id == actor.id:
        raise PermissionDenied("the person who asked for approval cannot approve their own request")
    if not may_decide(session, actor, item):
        raise PermissionDenied(f"only a supervisor or a designated checker of {item.team.name} can decide this")
    if not approve and comment is None:
        raise Invalid("say why the request is rejected", {"comment": "is required to reject"})
    changed = stake.changed_since(item, (approval.data or {}).get("snapshot") or {})
    void = approve and bool(changed)
    _claim(session, item, approval, "void" if void else "approved" if approve else "rejected", now)
    if void:
        # Approving what is no longer there would approve something nobody looked at.
        state.void_approval(session, item, approval, actor=actor, now=now, changed=changed)
        watchers.notify_watchers(session, item, "status", actor, now, "Open again: the approval is void.")
        return item
    approval.status = "approved" if approve else "rejected"
    approval.decided_by_id = actor.id
    approval.decided_at = now
    approval.data = {**(approval.data or {}), "decision_comment": comment}
    record_event(session, item, "approval_decided", actor,
                 {"approval_id": approval.id, "decision": approval.status, "comment": comment,
                  "requested_by": approval.requested_by.email if approval.requested_by else None}, now=now)
    if approve:
        stake.approved(item)
    state.leave_approval(session, item, approval, actor=actor, now=now, comment=comment)
    watchers.notify_watchers(session, item, "status", actor, now,
                             f"Now {item.status}: the approval was {approval.status}.")
    return item


def _claim(session, item, approval, status, now):
    """Move the approval out of `pending` with an UPDATE that matches only while it is still pending,
    before anything else is written: a second decision at the same moment waits for the first one's
    row lock (or SQLite's write lock), then matches nothing and is refused."""
    claimed = session.execute(
        sa.update(Approval).where(Approval.id == approval.id, Approval.status == "pending")
        .values(status=status, decided_at=now).execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        raise Conflict(f"the approval of {item.ref} was decided by someone else meanwhile; reload to see the "
                       "decision", {"approval": "already decided"})


# --- designated checkers ----------------------------------------------------------------------

def _asked_pending(session, team, user):
    """Does `user` wait for a decision on an item of `team`? (The decision cannot be handed to them.)"""
    return session.scalar(sa.select(sa.func.count()).select_from(Approval)
                          .join(WorkItem, Approval.work_item_id == WorkItem.id)
                          .where(Approval.status == "pending", Approval.requested_by_id == user.id,
                                 WorkItem.team_id == team.id)) > 0


def checker_ids(session, team_id):
    return set(session.scalars(sa.select(team_checkers.c.user_id).where(team_checkers.c.team_id == team_id)))


def set_checker(session, team, user, *, actor, enabled):
    """Designate (or stop designating) a member of the team as a checker; a supervisor's call."""
    access.require_manage_team(actor, team.id)
    if enabled and team.id not in user.team_ids:
        raise Invalid(f"{user.email} is not a member of {team.name}", {"user": "not a member of the team"})
    if enabled and _asked_pending(session, team, user):
        raise Invalid(f"{user.email} is waiting for approvals in {team.name}; they cannot become a checker "
                      "until those are decided", {"user": "has pending approval requests in the team"})
    present = user.id in checker_ids(session, team.id)
    if enabled and not present:
        session.execute(team_checkers.insert().values(team_id=team.id, user_id=user.id))
    elif not enabled and present:
        session.execute(team_checkers.delete().where(team_checkers.c.team_id == team.id,
                                                     team_checkers.c.user_id == user.id))
    session.flush()
    audit.changed(session, actor, "checker", user, {"team": team.name, "checker": present},
                  {"team": team.name, "checker": enabled}, label=f"{user.email} as checker of {team.name}")
    return enabled


# --- the approvals queue ----------------------------------------------------------------------

def decidable_team_ids(session, user):
    """Teams whose approvals the user may decide; None means every team (admin)."""
    if user.role == "admin":
        return None
    managed = {t for t in user.team_ids if access.manages_team(user, t)}
    checking = set(session.scalars(sa.select(team_checkers.c.team_id).where(team_checkers.c.user_id == user.id)))
    return managed | (checking & user.team_ids)


def pending_queue(session, user, *, after_id=None, limit=50):
    """Pending approvals the user may decide or asked for, oldest request first (requested_at, then id),
    keyset-paginated: `after_id` is the last approval of the previous page."""
    teams = decidable_team_ids(session, user)
    query = (sa.select(Approval).join(WorkItem, Approval.work_item_id == WorkItem.id)
             .where(Approval.status == "pending")
             .options(selectinload(Approval.work_item).selectinload(WorkItem.team),
                      selectinload(Approval.requested_by)))
    if teams is not None:
        query = query.where(sa.or_(WorkItem.team_id.in_(sorted(teams)), Approval.requested_by_id == user.id))
    if after_id is not None:
        last = session.get(Approval, after_id)
        if last is None:
            query = query.where(Approval.id > after_id)
        else:
            query = query.where(sa.or_(Approval.requested_at > last.requested_at,
                                       sa.and_(Approval.requested_at == last.requested_at, Approval.id > last.id)))
    return session.scalars(query.order_by(Approval.requested_at, Approval.id).limit(limit)).all()


def checkers_by_team(session, teams):
    """{team id: set of checker user ids} for the supervisor page."""
    ids = [t.id for t in teams]
    rows = session.execute(sa.select(team_checkers.c.team_id, team_checkers.c.user_id)
                           .where(team_checkers.c.team_id.in_(ids))) if ids else []
    out = {team_id: set() for team_id in ids}
    for team_id, user_id in rows:
        out[team_id].add(user_id)
    return out

