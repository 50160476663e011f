"""What the assignment board shows: the unassigned queue of the teams a supervisor manages, most
urgent first, each executive's load, one summary row per team, and the queue as CSV rows.

Every figure comes from grouped queries over the queue indexes, so the board costs the same
at any table size.
"""
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from queue_app.models import SlaPolicy, Team, User, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.team import team_members
from queue_app.models.work_item import OPEN_STATUSES
from queue_app.services.assignment.auto import BATCH, unassigned_query, urgency_after
from queue_app.services.errors import NotFound
from queue_app.services.items import state
from queue_app.services.items.work_types import type_label

BOARD_PAGE = 50


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
                    "skills_text": ", ".join(type_label(t).capitalize() for t in (person.skills or []))})
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
        query = urgency_after(query, after)
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
    query = state.urgency_order(
        sa.select(WorkItem).where(WorkItem.assignee_id == person.id, WorkItem.status.in_(OPEN_STATUSES),
                                  WorkItem.team_id.in_(team_ids))
        .options(*_listing_options()))
    if after is not None:
        query = urgency_after(query, _Position(*after) if isinstance(after, tuple) else after)
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
    base = state.urgency_order(
        sa.select(WorkItem.id, WorkItem.team_id, *columns)
        .where(WorkItem.team_id.in_(list(names)), WorkItem.assignee_id.is_(None),
               WorkItem.status.in_(OPEN_STATUSES))).limit(BATCH * 5)

    def rows():
        last = None
        while names:
            batch = session.execute(base if last is None else urgency_after(base, last)).all()
            for row in batch:
                out = row._asdict()
                out["team"] = names.get(out["team_id"])
                yield out
            if len(batch) < BATCH * 5:
                return
            last = _Position(batch[-1].sla_next_due, batch[-1].id)

    return rows()
