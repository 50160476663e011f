"""Automatic assignment: by the team's policy on arrival, "distribute now", and moving an absent
executive's work.

Policies (Team.auto_assign):
- manual: nothing happens by itself; supervisors assign.
- round_robin: the available executive whose latest assignment in this team is the oldest
  (someone with none among the last RECENT_EVENTS events counts as oldest).
- least_loaded: the available executive with the fewest open items.
- skills: among the available executives with the item's type in their skills, the least loaded.
- sla_aware: most urgent first. Each arrival serves the team's unassigned queue in urgency
  order (the new item included), each item going to the available executive with the skill
  and the most free capacity, so a free slot goes to the item closest to breaching.

Available = active, member of the item's team, role executive, not out of office at `now`,
and fewer open items (in any team) than their capacity.

Invariants:
- Automatic assignment never takes anyone over capacity, however many items arrive at once
  (the users rows are locked before loads are counted: services.assignment.capacity).
- Every assignment goes through the gate (services.items.state) and writes its "assigned"
  event; an automatic one also writes "auto_assigned" naming the policy. The executive is
  notified (services.assignment.notices).
- Like every service: flush, never commit; the caller owns the transaction (and the locks).
"""
import itertools
from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from queue_app.models import Event, User, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.team import AUTO_ASSIGN_POLICIES, team_members
from queue_app.models.work_item import OPEN_STATUSES
from queue_app.services import access
from queue_app.services.assignment.capacity import (
    lock_users,
    open_loads,
    out_of_office_clause,
)
from queue_app.services.assignment.notices import AUTO_ACTOR, notify_assigned
from queue_app.services.errors import Invalid, NotFound
from queue_app.services.items import state
from queue_app.services.items.events import record_event
from queue_app.services.people import users as people_users

RECENT_EVENTS = 20_000  # how far back round-robin looks for each executive's latest assignment
ARRIVAL_SCAN = 50  # sla_aware: how many queued items one arrival may look at
DISTRIBUTE_LIMIT = 2_000  # items one "distribute now" looks at
BATCH = 100
POLICY_LABELS = {
    "manual": "Manual", "round_robin": "Round robin", "least_loaded": "Least loaded", "skills": "Skills-based",
    "sla_aware": "SLA-aware",
}


# --- who can take work -------------------------------------------------------------------

def _last_assigned(session, team_id, emails):
    """{email: id of their latest "assigned" event on this team's items} for these emails.

    Walks the team's assignments newest first, a page at a time, and stops once everyone has
    been seen or RECENT_EVENTS events back: bounded work at any table size (someone not seen
    that far back counts as never assigned, which is what round-robin needs).
    """
    wanted = set(emails)
    found = {}
    newest = session.scalar(sa.select(sa.func.max(Event.id))) or 0
    floor = newest - RECENT_EVENTS
    upper = newest
    while wanted - set(found) and upper > floor:
        rows = session.execute(
            sa.select(Event.id, Event.data).join(WorkItem, WorkItem.id == Event.work_item_id)
            .where(Event.id > floor, Event.id <= upper, Event.kind == "assigned", WorkItem.team_id == team_id)
            .order_by(Event.id.desc()).limit(BATCH)).all()
        for event_id, data in rows:
            email = (data or {}).get("to")
            if email in wanted and email not in found:
                found[email] = event_id
        if len(rows) < BATCH:
            break
        upper = rows[-1][0] - 1
    return found


class Pool:
    """The executives who may take items of some teams, locked, with their loads as they change."""

    def __init__(self, session, teams, now, exclude=()):
        self.session = session
        self.teams = {team.id: team for team in teams}
        query = (sa.select(team_members.c.team_id, User).join(team_members, team_members.c.user_id == User.id)
                 .where(team_members.c.team_id.in_(list(self.teams)), User.role == "executive",
                        User.is_active_user.is_(True), sa.not_(out_of_office_clause(now)))
                 .order_by(User.id))
        if exclude:
            query = query.where(User.id.not_in(list(exclude)))
        self.members = defaultdict(list)
        self.users = {}
        for team_id, user in session.execute(query).all():
            self.members[team_id].append(user.id)
            self.users[user.id] = user
        self.capacity = lock_users(session, self.users)
        self.load = open_loads(session, self.users)
        self._recent = {}
        self._tick = itertools.count(10 ** 15)  # later than any event id

    def free(self, user_id):
        return self.capacity.get(user_id, 0) - self.load.get(user_id, 0)

    def has_room(self, team_id):
        return any(self.free(u) > 0 for u in self.members.get(team_id, ()))

    def recent(self, team_id):
        if team_id not in self._recent:
            members = self.members.get(team_id, ())
            by_email = _last_assigned(self.session, team_id, [self.users[u].email for u in members])
            self._recent[team_id] = {u: by_email.get(self.users[u].email, 0) for u in members}
        return self._recent[team_id]

    def pick(self, policy, item):
        """The executive `policy` gives `item` to, or None when nobody available may take it."""
        available = [u for u in self.members.get(item.team_id, ()) if self.free(u) > 0]
        if policy in ("skills", "sla_aware"):
            available = [u for u in available if item.type in (self.users[u].skills or [])]
        if not available:
            return None
        if policy == "round_robin":
            recent = self.recent(item.team_id)
            chosen = min(available, key=lambda u: (recent.get(u, 0), u))
        elif policy == "sla_aware":
            chosen = min(available, key=lambda u: (-self.free(u), self.load[u], u))
        else:  # least_loaded, skills
            chosen = min(available, key=lambda u: (self.load[u], u))
        return self.users[chosen]

    def took(self, team_id, user_id):
        self.load[user_id] = self.load.get(user_id, 0) + 1
        if team_id in self._recent:
            self._recent[team_id][user_id] = next(self._tick)


# --- automatic assignment ----------------------------------------------------------------

def _auto(session, pool, policy, item, user, actor, now):
    open_before = pool.load.get(user.id, 0)
    state.assign(session, item, user, actor=actor, now=now, check_access=False)
    record_event(session, item, "auto_assigned", actor, {
        "policy": policy, "to": user.email, "open_before": open_before, "capacity": pool.capacity.get(user.id),
    }, now=now)
    pool.took(item.team_id, user.id)


def urgency_after(query, item):
    """Items after `item` in urgency order."""
    return query.where(state.after_in_urgency_order(item.sla_next_due, item.id))


def unassigned_query(team_ids):
    return state.urgency_order(sa.select(WorkItem).where(
        WorkItem.team_id.in_(list(team_ids)), WorkItem.assignee_id.is_(None), WorkItem.status.in_(OPEN_STATUSES)))


def _serve_queue(session, pool, team, policy, actor, now, limit):
    """Give the team's unassigned items, most urgent first, to whom `policy` picks; [(item, user)]."""
    done = []
    seen = 0
    last = None
    while seen < limit and pool.has_room(team.id):
        query = unassigned_query([team.id]).limit(min(BATCH, limit - seen))
        if last is not None:
            query = urgency_after(query, last)
        batch = session.scalars(query.execution_options(populate_existing=True)).all()
        if not batch:
            break
        for item in batch:
            seen += 1
            user = pool.pick(policy, item)
            if user is not None:  # else nobody available may take it: it waits in the queue
                _auto(session, pool, policy, item, user, actor, now)
                done.append((item, user))
                if not pool.has_room(team.id):
                    break
        last = batch[-1]
    return done


def auto_assign(session, item, now=None, *, actor=AUTO_ACTOR):
    """Assign a newly arrived (or returned) item by its team's policy; the User it went to, or None.

    Does nothing for a manual team, an assigned or closed item, or when nobody is available:
    the item then waits in the team's unassigned queue.
    """
    now = now or utcnow()
    team = item.team
    policy = team.auto_assign if team is not None else "manual"
    if policy not in AUTO_ASSIGN_POLICIES or policy == "manual" or item.assignee_id is not None or not item.is_open:
        return None
    pool = Pool(session, [team], now)
    if policy == "sla_aware":
        done = _serve_queue(session, pool, team, policy, actor, now, ARRIVAL_SCAN)
        if item.assignee_id is None:
            user = pool.pick(policy, item)
            if user is not None:
                _auto(session, pool, policy, item, user, actor, now)
                done.append((item, user))
    else:
        user = pool.pick(policy, item)
        done = []
        if user is not None:
            _auto(session, pool, policy, item, user, actor, now)
            done.append((item, user))
    notify_assigned(session, done, actor, now)
    return next((user for assigned, user in done if assigned is item), None)


def distribute(session, team, actor, now=None, *, limit=DISTRIBUTE_LIMIT):
    """"Distribute now": assign the team's unassigned open items, most urgent first, by its policy.

    Returns [(item, user)] in the order assigned. Items nobody available may take stay queued.
    """
    now = now or utcnow()
    if isinstance(actor, User):
        access.require_manage_team(actor, team.id)
    if team.auto_assign == "manual" or team.auto_assign not in AUTO_ASSIGN_POLICIES:
        raise Invalid(f"{team.name} assigns by hand; choose an auto-assign policy for the team first",
                      {"auto_assign": "manual"})
    pool = Pool(session, [team], now)
    done = _serve_queue(session, pool, team, team.auto_assign, actor, now, limit)
    notify_assigned(session, done, actor, now)
    session.flush()
    return done


def redistribute(session, user, actor, now=None, *, mode="queue"):
    """Move an (absent) executive's open items in one action, most urgent first.

    mode "queue": back to each team's unassigned queue. mode "policy": each item is given by
    its team's policy to someone else available (a manual team's items go to the queue).
    The executive may do it for themselves; a supervisor for the teams they manage (items of
    other teams stay put); an admin for all. Returns {"assigned": [(item, user)], "queued": [items],
    "kept": number of items left because the actor does not manage their team}.
    """
    now = now or utcnow()
    if mode not in ("queue", "policy"):
        raise Invalid(f"unknown mode {mode!r}", {"mode": "must be queue or policy"})
    if not (actor.id == user.id or actor.role == "admin" or
            (actor.role == "supervisor" and actor.team_ids & user.team_ids)):
        raise NotFound("no such person in your teams")
    query = state.urgency_order(
        sa.select(WorkItem).where(WorkItem.assignee_id == user.id, WorkItem.status.in_(OPEN_STATUSES))
        .options(selectinload(WorkItem.team)))
    items = session.scalars(query).all()
    mine = [i for i in items if actor.id == user.id or access.manages_team(actor, i.team_id)]
    result = {"assigned": [], "queued": [], "kept": len(items) - len(mine)}
    teams = {i.team_id: i.team for i in mine if i.team.auto_assign != "manual"} if mode == "policy" else {}
    pool = Pool(session, list(teams.values()), now, exclude={user.id}) if teams else None
    for item in mine:
        state.assign(session, item, None, actor=actor, now=now, check_access=False)
        chosen = pool.pick(item.team.auto_assign, item) if pool is not None and item.team_id in teams else None
        if chosen is None:
            result["queued"].append(item)
        else:
            _auto(session, pool, item.team.auto_assign, item, chosen, actor, now)
            result["assigned"].append((item, chosen))
    notify_assigned(session, result["assigned"], actor, now)
    session.flush()
    return result


def go_out_of_office(session, user, actor, *, start, until=None, items="keep", now=None):
    """Set an absence and, in the same transaction, move their open items ("keep", "queue" or
    "policy", as redistribute). Returns redistribute's result, or None when the items stay."""
    now = now or utcnow()
    if items not in ("keep", "queue", "policy"):
        raise Invalid(f"unknown choice {items!r}", {"items": "keep, queue or policy"})
    people_users.set_absence(session, user, actor=actor, start=start, until=until, now=now)
    if items == "keep":
        return None
    return redistribute(session, user, actor, now, mode=items)


# --- by hand -----------------------------------------------------------------------------

# --- notifications -----------------------------------------------------------------------

# --- what the assignment board shows ------------------------------------------------------

# --- the board's hand assignment: many items, each checked, refusals reported per item -------

