"""Assignment: by hand (one item or many), automatically by the team's policy, "distribute now",
and moving an absent executive's work.

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
- Automatic assignment never takes anyone over capacity, however many items arrive at once.
  The candidates' users rows are write-locked, in id order (so two assigners cannot
  deadlock), before their open items are counted, and stay locked until the caller commits:
  SELECT ... FOR UPDATE on PostgreSQL; on SQLite a no-op UPDATE, which takes the database's
  single write lock. A second assigner waits, then counts the first one's items.
- Assignment by hand may go over capacity: the supervisor decides, and the board shows loads.
  The board's bulk action (assign_selected) refuses, item by item, what would take someone
  over capacity, to someone out of office or without the skill, unless the supervisor
  overrides; whatever changed hands meanwhile is always refused.
- Every assignment writes the usual "assigned" event (lifecycle.assign); an automatic one
  also writes "auto_assigned" naming the policy. The executive is notified
  (services.notifications), unless they took the item themselves.
- Like every service: flush, never commit; the caller owns the transaction (and the locks).
"""
import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from queue_app.models import Event, SlaPolicy, Team, User, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.team import AUTO_ASSIGN_POLICIES, team_members
from queue_app.models.work_item import OPEN_STATUSES
from queue_app.services import access
from queue_app.services.people import notifications as people_notifications, users as people_users
from queue_app.services.items import lifecycle
from queue_app.services.items.events import record_event
from queue_app.services.errors import Conflict, Invalid, NotFound

AUTO_ACTOR = "auto-assign"  # the actor label of assignments made on arrival
RECENT_EVENTS = 20_000  # how far back round-robin looks for each executive's latest assignment
ARRIVAL_SCAN = 50  # sla_aware: how many queued items one arrival may look at
DISTRIBUTE_LIMIT = 2_000  # items one "distribute now" looks at
BATCH = 100
MAX_BULK = 1_000
BOARD_PAGE = 50
POLICY_LABELS = {
    "manual": "Manual", "round_robin": "Round robin", "least_loaded": "Least loaded", "skills": "Skills-based",
    "sla_aware": "SLA-aware",
}


# --- who can take work -------------------------------------------------------------------

def out_of_office_clause(now):
    """SQL: the user is out of office at `now` (User.is_out_of_office in SQL)."""
    return sa.and_(User.out_of_office_from.is_not(None), User.out_of_office_from <= now,
                   sa.or_(User.out_of_office_until.is_(None), User.out_of_office_until > now))


def open_loads(session, user_ids):
    """{user id: open items assigned to them, in any team} (the assignee index answers it)."""
    if not user_ids:
        return {}
    rows = session.execute(
        sa.select(WorkItem.assignee_id, sa.func.count()).where(WorkItem.assignee_id.in_(list(user_ids)),
                                                               WorkItem.status.in_(OPEN_STATUSES))
        .group_by(WorkItem.assignee_id))
    loads = dict.fromkeys(user_ids, 0)
    loads.update({user_id: count for user_id, count in rows})
    return loads


def _lock_users(session, user_ids):
    """Write-lock these users rows in id order and return their current capacities.

    Rows this session locked already are not asked for again (the lock lasts until commit).
    """
    locked = session.info.setdefault("assignment_locked_users", set())
    ids = sorted(set(user_ids))
    if session.get_bind().dialect.name == "postgresql":
        wanted = [i for i in ids if i not in locked]
        if wanted:
            session.execute(sa.select(User.id).where(User.id.in_(wanted)).order_by(User.id).with_for_update())
    elif any(i not in locked for i in ids):
        users = User.__table__
        session.execute(sa.update(users).where(people_users.c.id.in_(ids)).values(capacity=people_users.c.capacity))
    locked.update(ids)
    # Read after locking: a capacity changed by someone else meanwhile is seen here.
    return dict(session.execute(sa.select(User.id, User.capacity).where(User.id.in_(ids))).all()) if ids else {}


@sa.event.listens_for(sa.orm.Session, "after_commit")
@sa.event.listens_for(sa.orm.Session, "after_rollback")
def _forget_locks(session):
    session.info.pop("assignment_locked_users", None)


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
        self.capacity = _lock_users(session, self.users)
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
    lifecycle.assign(session, item, user, actor=actor, now=now, check_access=False)
    record_event(session, item, "auto_assigned", actor, {
        "policy": policy, "to": user.email, "open_before": open_before, "capacity": pool.capacity.get(user.id),
    }, now=now)
    pool.took(item.team_id, user.id)


def _urgency_after(query, item):
    """Items after `item` in urgency order."""
    return query.where(lifecycle.after_in_urgency_order(item.sla_next_due, item.id))


def unassigned_query(team_ids):
    return lifecycle.urgency_order(sa.select(WorkItem).where(
        WorkItem.team_id.in_(list(team_ids)), WorkItem.assignee_id.is_(None), WorkItem.status.in_(OPEN_STATUSES)))


def _serve_queue(session, pool, team, policy, actor, now, limit):
    """Give the team's unassigned items, most urgent first, to whom `policy` picks; [(item, user)]."""
    done = []
    seen = 0
    last = None
    while seen < limit and pool.has_room(team.id):
        query = unassigned_query([team.id]).limit(min(BATCH, limit - seen))
        if last is not None:
            query = _urgency_after(query, last)
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
    query = lifecycle.urgency_order(
        sa.select(WorkItem).where(WorkItem.assignee_id == user.id, WorkItem.status.in_(OPEN_STATUSES))
        .options(selectinload(WorkItem.team)))
    items = session.scalars(query).all()
    mine = [i for i in items if actor.id == user.id or access.manages_team(actor, i.team_id)]
    result = {"assigned": [], "queued": [], "kept": len(items) - len(mine)}
    teams = {i.team_id: i.team for i in mine if i.team.auto_assign != "manual"} if mode == "policy" else {}
    pool = Pool(session, list(teams.values()), now, exclude={user.id}) if teams else None
    for item in mine:
        lifecycle.assign(session, item, None, actor=actor, now=now, check_access=False)
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

def assign(session, item, assignee, *, actor, now=None, expected_version=None):
    """Assign (or unassign, assignee None) one item by hand, and tell the new assignee."""
    now = now or utcnow()
    before = item.assignee_id
    lifecycle.assign(session, item, assignee, actor=actor, now=now, expected_version=expected_version)
    if assignee is not None and before != assignee.id:
        notify_assigned(session, [(item, assignee)], actor, now)
    return item


def bulk_assign(session, items, assignee, *, actor, now=None, expected_versions=None, check_access=True):
    """Assign many items to one person (or unassign them, assignee None) in one go.

    All or nothing: every item is checked first (access, open, the assignee in its team,
    the version the supervisor saw), then changed with batched writes. One "assigned"
    event per item; the assignee gets one notification listing them. Returns the items changed.
    """
    now = now or utcnow()
    items = list(items)
    if len(items) > MAX_BULK:
        raise Invalid(f"at most {MAX_BULK} items at once", {"items": f"at most {MAX_BULK}"})
    if assignee is not None and not assignee.is_active:
        raise Invalid(f"{assignee.email} is not an active user", {"assignee": "inactive user"})
    member_of = assignee.team_ids if assignee is not None else set()
    expected_versions = expected_versions or {}
    for item in items:
        if check_access:
            access.require_assign(actor, item, assignee)
        if item.id in expected_versions:
            lifecycle.check_version(item, expected_versions[item.id])
        if not item.is_open:
            raise Invalid(f"{item.ref} is {item.status}; reopen it before assigning", {"status": item.status})
        if assignee is not None and item.team_id not in member_of:
            raise Invalid(f"{assignee.email} is not a member of the team of {item.ref}",
                          {"assignee": "not a member of the item's team"})
    target = assignee.id if assignee is not None else None
    changed = [item for item in items if item.assignee_id != target]
    if not changed:
        return []
    previous_ids = {item.assignee_id for item in changed if item.assignee_id is not None}
    emails = dict(session.execute(sa.select(User.id, User.email).where(User.id.in_(previous_ids))).all()) \
        if previous_ids else {}
    session.flush()  # anything pending goes first: the update below is written directly
    _update_assignees(session, changed, target, now)
    for item in changed:
        was = item.assignee_id
        for name, value in (("assignee_id", target), ("assignee", assignee), ("version", item.version + 1),
                            ("updated_at", now), ("last_activity_at", now)):
            set_committed_value(item, name, value)
        record_event(session, item, "assigned" if assignee else "unassigned", actor, {
            "from": emails.get(was), "to": assignee.email if assignee else None, "bulk": len(changed),
        }, now=now)
    session.flush()
    if assignee is not None:
        notify_assigned(session, [(item, assignee) for item in changed], actor, now)
    return changed


def _update_assignees(session, items, assignee_id, now):
    """One UPDATE for all the items, guarded by the version each was read at (optimistic locking,
    as the ORM's version column does row by row): if anyone changed one meanwhile, nothing is kept."""
    table = WorkItem.__table__
    result = session.execute(
        sa.update(table)
        .where(table.c.id.in_([item.id for item in items]),
               sa.tuple_(table.c.id, table.c.version).in_([(item.id, item.version) for item in items]))
        .values(assignee_id=assignee_id, updated_at=now, last_activity_at=now, version=table.c.version + 1))
    if result.rowcount != len(items):
        raise Conflict("some of the items were changed by someone else meanwhile; reload and try again")


def items_by_id(session, user, ids):
    """The open-or-not items with these ids that `user` may see, in the order given (for bulk forms)."""
    ids = [int(i) for i in ids][:MAX_BULK + 1]
    rows = session.scalars(sa.select(WorkItem).where(WorkItem.id.in_(ids), access.visible_items(user))).all()
    by_id = {item.id: item for item in rows}
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]


# --- notifications -----------------------------------------------------------------------

def notify_assigned(session, pairs, actor, now):
    """One notification per assignee for these (item, user) assignments; none to someone who took it."""
    by_user = defaultdict(list)
    users = {}
    for item, user in pairs:
        if isinstance(actor, User) and actor.id == user.id:
            continue
        by_user[user.id].append(item)
        users[user.id] = user
    if actor == AUTO_ACTOR:
        by = "automatic assignment"
    else:
        by = actor if isinstance(actor, str) else (actor.name if actor is not None else "the system")
    for user_id, items in by_user.items():
        first = items[0]
        if len(items) == 1:
            subject = f"[{first.ref}] assigned to you"
            body = f"{first.ref} ({first.subject}) was assigned to you by {by}."
        else:
            subject = f"{len(items)} items assigned to you"
            lines = "\n".join(f"- {i.ref}: {i.subject}" for i in items[:200])
            more = f"\n... and {len(items) - 200} more" if len(items) > 200 else ""
            body = f"{by} assigned these items to you:\n{lines}{more}"
        due = first.sla_next_due
        if due is not None:
            body += f"\nNext due: {due:%Y-%m-%d %H:%M} UTC."
        people_notifications.notify(session, first, [users[user_id]], subject, body, now)


# --- what the assignment board shows ------------------------------------------------------

@dataclass
class Board:
    """What the board shows. One team (chosen, or the only one managed): each member's load
    (`people`). Several teams and none chosen: one summary row per team (`summary`) instead.
    `members` is {team id: [member rows]} for the assign controls either way."""
    teams: list
    items: list
    next_item: object  # the last item shown when there are more (pass it back as `after`)
    people: list = field(default_factory=list)
    summary: list = field(default_factory=list)
    members: dict = field(default_factory=dict)
    by_team: bool = False  # True: `summary` is shown instead of `people`


@dataclass
class Member:
    """A team member as the board's assign controls show them (no ORM object needed)."""
    id: int
    name: str
    email: str
    role: str


def managed_teams(session, user):
    query = sa.select(Team).order_by(Team.name)
    if user.role != "admin":
        team_ids = list(user.team_ids) if user.role == "supervisor" else []
        query = query.where(Team.id.in_(team_ids))
    return session.scalars(query).all()


def team_load(session, teams, now):
    """Each active member of `teams`: open, at risk, breached, capacity, free, out of office,
    and their teams' names and skills as text (ready to show).

    One grouped query over the assignee index, whatever the size of the table; the members'
    teams come from the membership table in one more query (no per-person loading).
    """
    if not teams:
        return []
    members = sa.select(team_members.c.user_id).where(team_members.c.team_id.in_([t.id for t in teams]))
    people = session.scalars(
        sa.select(User).where(User.id.in_(members), User.is_active_user.is_(True)).order_by(User.name, User.id)).all()
    if not people:
        return []
    ids = [p.id for p in people]
    links = session.execute(sa.select(team_members.c.user_id, team_members.c.team_id)
                            .where(team_members.c.user_id.in_(ids))).all()
    known = {t.id: t for t in teams}
    missing = {team_id for _, team_id in links} - set(known)
    if missing:
        known.update({t.id: t for t in session.scalars(sa.select(Team).where(Team.id.in_(missing)))})
    their_teams = defaultdict(list)
    for user_id, team_id in links:
        their_teams[user_id].append(known[team_id])
    rows = session.execute(
        sa.select(WorkItem.assignee_id, sa.func.count(),
                  sa.func.count().filter(WorkItem.sla_state == "at_risk"),
                  sa.func.count().filter(sa.or_(WorkItem.sla_state == "breached", WorkItem.sla_next_due <= now)))
        .where(WorkItem.assignee_id.in_(ids), WorkItem.status.in_(OPEN_STATUSES))
        .group_by(WorkItem.assignee_id))
    counts = {row[0]: (row[1], row[2] or 0, row[3] or 0) for row in rows}
    out = []
    for person in people:
        set_committed_value(person, "teams", sorted(their_teams[person.id], key=lambda t: (t.name, t.id)))
        open_, at_risk, breached = counts.get(person.id, (0, 0, 0))
        out.append({"user": person, "open": open_, "at_risk": at_risk, "breached": breached,
                    "capacity": person.capacity, "free": max(0, person.capacity - open_),
                    "out_of_office": person.is_out_of_office(now),
                    "team_ids": [t.id for t in person.teams],
                    "team_names": ", ".join(t.name for t in person.teams),
                    "skills_text": ", ".join(_type_label(t).capitalize() for t in (person.skills or []))})
    return out


def _open_item_columns():
    """work_items columns by name (no table attached), for a query whose FROM is _open_items_source."""
    names = ("team_id", "assignee_id", "status", "sla_state", "sla_next_due")
    table = WorkItem.__table__
    return type("OpenItemColumns", (), {name: sa.column(name, table.c[name].type) for name in names})


def _open_items_source(session):
    """FROM work_items, read through the status index. SQLite's planner would rather walk the
    (team_id, assignee_id, ...) index for a GROUP BY team_id, assignee_id, i.e. every item of
    the table (220 ms at 100,000 items against 4 ms), so it is told the index to use."""
    if session.get_bind().dialect.name == "sqlite":
        return sa.text("work_items INDEXED BY ix_work_items_status_due")
    return WorkItem.__table__


def team_summary(session, teams, now, *, every_team=False):
    """One row per team of `teams` and the members of each, for a board over several teams.

    Returns (rows, {team id: [member rows]}). A row: the team, its policy, people (active
    members), out of office (of those), open items of the team, at risk, breached (as in
    team_load), unassigned, and free capacity (the free slots of its executives who are not
    out of office, their open items counted in any team, as automatic assignment counts them).
    A member row: user (a Member), open, capacity, free, out_of_office.

    Two queries whatever the number of teams: the members, then one pass over the open items
    grouped by (team, assignee) that gives both the teams' figures and the members' loads.
    `every_team` (an admin's board): `teams` are all the teams, so every open item counts
    and no filter is needed.
    """
    if not teams:
        return [], {}
    ids = [t.id for t in teams]
    links = session.execute(
        sa.select(team_members.c.team_id, User.id, User.name, User.email, User.role, User.capacity,
                  User.out_of_office_from, User.out_of_office_until)
        .join(team_members, team_members.c.user_id == User.id)
        .where(team_members.c.team_id.in_(ids), User.is_active_user.is_(True))
        .order_by(User.name, User.id)).all()
    c = _open_item_columns()
    query = (sa.select(c.team_id, c.assignee_id, sa.func.count(), sa.func.count().filter(c.sla_state == "at_risk"),
                       sa.func.count().filter(sa.or_(c.sla_state == "breached", c.sla_next_due <= now)))
             .select_from(_open_items_source(session))
             .where(c.status.in_(OPEN_STATUSES)).group_by(c.team_id, c.assignee_id))
    if not every_team:
        # the shown teams' items, and the members' items in other teams (their load counts those too)
        member_ids = sorted({row[1] for row in links})
        query = query.where(sa.or_(c.team_id.in_(ids), c.assignee_id.in_(member_ids)))
    shown = set(ids)
    loads = defaultdict(int)
    counts = {team_id: [0, 0, 0, 0] for team_id in ids}  # open, at risk, breached, unassigned
    for team_id, assignee_id, open_, at_risk, breached in session.execute(query):
        if assignee_id is not None:
            loads[assignee_id] += open_
        if team_id in shown:
            figures = counts[team_id]
            figures[0] += open_
            figures[1] += at_risk or 0
            figures[2] += breached or 0
            if assignee_id is None:
                figures[3] += open_
    people = {}
    members = {team_id: [] for team_id in ids}
    for team_id, user_id, name, email, role, capacity, away_from, away_until in links:
        person = people.get(user_id)
        if person is None:
            away = away_from is not None and away_from <= now and (away_until is None or now < away_until)
            open_ = loads.get(user_id, 0)
            person = people[user_id] = {"user": Member(user_id, name, email, role), "open": open_,
                                        "capacity": capacity, "free": max(0, capacity - open_), "out_of_office": away}
        members[team_id].append(person)
    rows = []
    for team in teams:
        open_, at_risk, breached, unassigned = counts[team.id]
        team_people = members[team.id]
        rows.append({
            "team": team, "policy": team.auto_assign, "people": len(team_people),
            "out_of_office": sum(1 for p in team_people if p["out_of_office"]),
            "open": open_, "at_risk": at_risk, "breached": breached, "unassigned": unassigned,
            "free": sum(p["free"] for p in team_people if p["user"].role == "executive" and not p["out_of_office"]),
        })
    return rows, members


def board(session, user, now=None, *, after=None, size=BOARD_PAGE, team_id=None):
    """The assignment board of a supervisor (or admin): the unassigned queue of the teams they
    manage (or of one of them, `team_id`), most urgent first (keyset page after the item
    `after`, or after a (sla_next_due, id) pair), and the loads.

    The loads: each member's (team_load) when one team is shown, the chosen one or the only one
    the user manages; one summary row per team (team_summary) when several are shown.
    """
    now = now or utcnow()
    teams = managed_teams(session, user)
    if team_id is not None:
        teams = [t for t in teams if t.id == team_id]
        if not teams:
            raise NotFound("no such team among the teams you manage")
    if not teams:
        return Board(teams=[], items=[], next_item=None)
    query = unassigned_query([t.id for t in teams]).options(*_listing_options())
    if after is not None:
        if isinstance(after, tuple):
            after = _Position(*after)
        query = _urgency_after(query, after)
    rows = session.scalars(query.limit(size + 1)).all()
    items, next_item = (rows[:size], rows[size - 1]) if len(rows) > size else (rows, None)
    shown = Board(teams=teams, items=items, next_item=next_item)
    if len(teams) > 1:
        shown.by_team = True
        shown.summary, shown.members = team_summary(session, teams, now, every_team=user.role == "admin")
    else:
        shown.people = team_load(session, teams, now)
        shown.members = {teams[0].id: shown.people}
    return shown


def _listing_options():
    """What a listed row shows (team, SLA badge, business time left), loaded with the page."""
    return (selectinload(WorkItem.team).selectinload(Team.calendar),
            selectinload(WorkItem.sla_policy).selectinload(SlaPolicy.calendar))


@dataclass
class _Position:
    sla_next_due: object
    id: int


def person_items(session, actor, person, *, after=None, size=BOARD_PAGE):
    """One page of `person`'s open items in the teams `actor` manages, most urgent first
    (keyset, as the board); (items, last item shown when there are more)."""
    team_ids = [t.id for t in managed_teams(session, actor)]
    query = lifecycle.urgency_order(
        sa.select(WorkItem).where(WorkItem.assignee_id == person.id, WorkItem.status.in_(OPEN_STATUSES),
                                  WorkItem.team_id.in_(team_ids))
        .options(*_listing_options()))
    if after is not None:
        query = _urgency_after(query, _Position(*after) if isinstance(after, tuple) else after)
    rows = session.scalars(query.limit(size + 1)).all()
    return (rows[:size], rows[size - 1]) if len(rows) > size else (rows, None)


UNASSIGNED_COLUMNS = ("ref", "subject", "team", "type", "priority", "status", "sla_state", "sla_next_due",
                      "first_response_due", "resolution_due", "created_at", "escalation_level", "requester_email")


def unassigned_rows(session, user, *, team_id=None):
    """The whole unassigned queue of the teams `user` manages (or one of them) for export, in the
    board's order, as dicts of UNASSIGNED_COLUMNS; read in keyset batches, never all at once."""
    teams = managed_teams(session, user)
    if team_id is not None:
        teams = [t for t in teams if t.id == team_id]
        if not teams:
            raise NotFound("no such team among the teams you manage")
    names = {t.id: t.name for t in teams}
    columns = [getattr(WorkItem, c) for c in UNASSIGNED_COLUMNS if c != "team"]
    base = lifecycle.urgency_order(
        sa.select(WorkItem.id, WorkItem.team_id, *columns)
        .where(WorkItem.team_id.in_(list(names)), WorkItem.assignee_id.is_(None),
               WorkItem.status.in_(OPEN_STATUSES))).limit(BATCH * 5)

    def rows():
        last = None
        while names:
            batch = session.execute(base if last is None else _urgency_after(base, last)).all()
            for row in batch:
                out = row._asdict()
                out["team"] = names.get(out["team_id"])
                yield out
            if len(batch) < BATCH * 5:
                return
            last = _Position(batch[-1].sla_next_due, batch[-1].id)

    return rows()


# --- the board's hand assignment: many items, each checked, refusals reported per item -------

@dataclass
class Selection:
    """What the supervisor asked for and what came of it."""
    assigned: list = field(default_factory=list)  # the items changed
    refused: list = field(default_factory=list)  # [(ref, reason)] in the order of the selection


def parse_selection(values):
    """{item id: assignee id the page showed (None: unassigned)} from "id:assignee" form values.

    A value may also be a bare id (shown unassigned). Anything else raises Invalid.
    """
    selection = {}
    for value in values:
        item_text, _, seen_text = str(value).strip().partition(":")
        try:
            item_id = int(item_text)
            seen = int(seen_text) if seen_text.strip() else None
        except ValueError:
            raise Invalid("the selection is not valid; reload the page and try again",
                          {"items": "not a list of item ids"}) from None
        if item_id <= 0 or (seen is not None and seen <= 0):
            raise Invalid("the selection is not valid; reload the page and try again",
                          {"items": "not a list of item ids"})
        selection[item_id] = seen
    return selection


def _refusal(item, assignee, seen, target, names):
    """Why `item` cannot be given to `assignee` by hand (None when it can), before any rule that
    the supervisor may override (capacity, absence, skills)."""
    if not item.is_open:
        return f"it is {item.status.replace('_', ' ')}; reopen it before assigning"
    if item.assignee_id != seen:
        if item.assignee_id is None:
            return "it was returned to the queue meanwhile"
        if item.assignee_id == target:
            return f"it was already assigned to {names.get(item.assignee_id, 'them')} meanwhile"
        return f"it was taken by {names.get(item.assignee_id, 'someone else')} meanwhile"
    if item.assignee_id == target:
        return f"it is already assigned to {assignee.name}" if assignee is not None else "it is already unassigned"
    if assignee is not None and item.team_id not in assignee.team_ids:
        return f"{assignee.name} is not a member of {item.team.name}"
    return None


def assign_selected(session, actor, selection, assignee, *, now=None, override=False):
    """Assign the selected items to `assignee` (None: back to the queue) from the board.

    `selection` is {item id: assignee id the page showed}. Each item is checked on its own and
    the ones that may not be assigned are reported with the reason, the others assigned in one
    go by bulk_assign (one "assigned" event each, one notification to the assignee):
    - gone, not in a team the actor manages, closed, already taken or changed hands meanwhile,
      the assignee not in the item's team: always refused;
    - the assignee out of office, without the item's type in their skills, or with no free
      capacity left (counted in urgency order, the most urgent items first): refused unless
      `override` (assignment by hand may go over capacity when the supervisor says so).
    The assignee's users row is locked before the load is counted, so two supervisors filling
    the same person's last slots at once cannot both succeed.
    """
    now = now or utcnow()
    if not selection:
        raise Invalid("select at least one item", {"items": "nothing selected"})
    if len(selection) > MAX_BULK:
        raise Invalid(f"at most {MAX_BULK} items at once", {"items": f"at most {MAX_BULK}"})
    if assignee is not None and not assignee.is_active:
        raise Invalid(f"{assignee.name} cannot sign in any more; choose someone else", {"assignee": "inactive"})
    ids = list(selection)
    rows = session.scalars(
        sa.select(WorkItem).where(WorkItem.id.in_(ids), access.visible_items(actor))
        .options(selectinload(WorkItem.team)).execution_options(populate_existing=True)).all()
    by_id = {item.id: item for item in rows}
    holders = {item.assignee_id for item in rows if item.assignee_id is not None}
    names = dict(session.execute(sa.select(User.id, User.name).where(User.id.in_(holders))).all()) if holders else {}
    target = assignee.id if assignee is not None else None
    refused = {}
    candidates = []
    for item_id in ids:
        item = by_id.get(item_id)
        if item is None or not access.manages_team(actor, item.team_id):
            refused[item_id] = (f"item {item_id}", "it does not exist or is not in a team you manage")
            continue
        reason = _refusal(item, assignee, selection[item_id], target, names)
        if reason:
            refused[item_id] = (item.ref, reason)
        else:
            candidates.append(item)
    accepted = candidates
    if assignee is not None and candidates and not override:
        accepted = []
        if assignee.is_out_of_office(now):
            for item in candidates:
                refused[item.id] = (item.ref, f"{assignee.name} is out of office")
            candidates = []
        capacity = _lock_users(session, [assignee.id]).get(assignee.id, assignee.capacity)
        load = open_loads(session, [assignee.id])[assignee.id]
        skills = set(assignee.skills or [])
        far = datetime.max.replace(tzinfo=timezone.utc)
        for item in sorted(candidates, key=lambda i: (i.sla_next_due or far, i.id)):
            if item.type not in skills:
                refused[item.id] = (item.ref, f"{assignee.name} does not have the skill {_type_label(item.type)}")
            elif load >= capacity:
                refused[item.id] = (item.ref, f"{assignee.name} would go over capacity "
                                              f"({load} open of {capacity})")
            else:
                load += 1
                accepted.append(item)
    changed = []
    if accepted:
        order = {item_id: n for n, item_id in enumerate(ids)}
        accepted.sort(key=lambda i: order[i.id])
        changed = bulk_assign(session, accepted, assignee, actor=actor, now=now)
    return Selection(assigned=changed, refused=[refused[i] for i in ids if i in refused])


def _type_label(value):
    return value.replace("_", " ")
