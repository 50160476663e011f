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
- Every assignment writes the usual "assigned" event (work_items.assign); an automatic one
  also writes "auto_assigned" naming the policy. The executive is notified
  (services.notifications), unless they took the item themselves.
- Like every service: flush, never commit; the caller owns the transaction (and the locks).
"""
import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from queue_app.models import Event, Team, User, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.team import AUTO_ASSIGN_POLICIES, team_members
from queue_app.models.work_item import OPEN_STATUSES
from queue_app.services import access, notifications, users, work_items
from queue_app.services.audit import record_event
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
        session.execute(sa.update(users).where(users.c.id.in_(ids)).values(capacity=users.c.capacity))
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
    work_items.assign(session, item, user, actor=actor, now=now, check_access=False)
    record_event(session, item, "auto_assigned", actor, {
        "policy": policy, "to": user.email, "open_before": open_before, "capacity": pool.capacity.get(user.id),
    }, now=now)
    pool.took(item.team_id, user.id)


def _urgency_after(query, item):
    """Items after `item` in urgency order (sla_next_due, nulls last, then id)."""
    if item.sla_next_due is None:
        return query.where(WorkItem.sla_next_due.is_(None), WorkItem.id > item.id)
    return query.where(sa.or_(WorkItem.sla_next_due > item.sla_next_due,
                              sa.and_(WorkItem.sla_next_due == item.sla_next_due, WorkItem.id > item.id),
                              WorkItem.sla_next_due.is_(None)))


def unassigned_query(team_ids):
    return (sa.select(WorkItem).where(WorkItem.team_id.in_(list(team_ids)), WorkItem.assignee_id.is_(None),
                                      WorkItem.status.in_(OPEN_STATUSES))
            .order_by(WorkItem.sla_next_due.asc().nulls_last(), WorkItem.id.asc()))


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
    query = (sa.select(WorkItem).where(WorkItem.assignee_id == user.id, WorkItem.status.in_(OPEN_STATUSES))
             .options(selectinload(WorkItem.team))
             .order_by(WorkItem.sla_next_due.asc().nulls_last(), WorkItem.id.asc()))
    items = session.scalars(query).all()
    mine = [i for i in items if actor.id == user.id or access.manages_team(actor, i.team_id)]
    result = {"assigned": [], "queued": [], "kept": len(items) - len(mine)}
    teams = {i.team_id: i.team for i in mine if i.team.auto_assign != "manual"} if mode == "policy" else {}
    pool = Pool(session, list(teams.values()), now, exclude={user.id}) if teams else None
    for item in mine:
        work_items.assign(session, item, None, actor=actor, now=now, check_access=False)
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
    users.set_absence(session, user, actor=actor, start=start, until=until, now=now)
    if items == "keep":
        return None
    return redistribute(session, user, actor, now, mode=items)


# --- by hand -----------------------------------------------------------------------------

def assign(session, item, assignee, *, actor, now=None, expected_version=None):
    """Assign (or unassign, assignee None) one item by hand, and tell the new assignee."""
    now = now or utcnow()
    before = item.assignee_id
    work_items.assign(session, item, assignee, actor=actor, now=now, expected_version=expected_version)
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
            work_items.check_version(item, expected_versions[item.id])
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
        notifications.notify(session, first, [users[user_id]], subject, body, now)


# --- what the assignment board shows ------------------------------------------------------

@dataclass
class Board:
    teams: list
    items: list
    next_item: object  # the last item shown when there are more (pass it back as `after`)
    people: list = field(default_factory=list)


def managed_teams(session, user):
    query = sa.select(Team).order_by(Team.name)
    if user.role != "admin":
        team_ids = list(user.team_ids) if user.role == "supervisor" else []
        query = query.where(Team.id.in_(team_ids))
    return session.scalars(query).all()


def team_load(session, teams, now):
    """Each active member of `teams`: open, at risk, breached, capacity, free, out of office.

    One grouped query over the assignee index, whatever the size of the table.
    """
    if not teams:
        return []
    members = sa.select(team_members.c.user_id).where(team_members.c.team_id.in_([t.id for t in teams]))
    people = session.scalars(
        sa.select(User).where(User.id.in_(members), User.is_active_user.is_(True))
        .options(selectinload(User.teams)).order_by(User.name, User.id)).all()
    counts = {}
    if people:
        rows = session.execute(
            sa.select(WorkItem.assignee_id, sa.func.count(),
                      sa.func.count().filter(WorkItem.sla_state == "at_risk"),
                      sa.func.count().filter(sa.or_(WorkItem.sla_state == "breached", WorkItem.sla_next_due <= now)))
            .where(WorkItem.assignee_id.in_([p.id for p in people]), WorkItem.status.in_(OPEN_STATUSES))
            .group_by(WorkItem.assignee_id))
        counts = {row[0]: (row[1], row[2] or 0, row[3] or 0) for row in rows}
    out = []
    for person in people:
        open_, at_risk, breached = counts.get(person.id, (0, 0, 0))
        out.append({"user": person, "open": open_, "at_risk": at_risk, "breached": breached,
                    "capacity": person.capacity, "free": max(0, person.capacity - open_),
                    "out_of_office": person.is_out_of_office(now)})
    return out


def board(session, user, now=None, *, after=None, size=BOARD_PAGE):
    """The assignment board of a supervisor (or admin): the unassigned queue of the teams they
    manage, most urgent first (keyset page after the item `after`), and each member's load."""
    now = now or utcnow()
    teams = managed_teams(session, user)
    if not teams:
        return Board(teams=[], items=[], next_item=None)
    query = unassigned_query([t.id for t in teams]).options(selectinload(WorkItem.team))
    if after is not None:
        query = _urgency_after(query, after)
    rows = session.scalars(query.limit(size + 1)).all()
    items, next_item = (rows[:size], rows[size - 1]) if len(rows) > size else (rows, None)
    return Board(teams=teams, items=items, next_item=next_item, people=team_load(session, teams, now))
