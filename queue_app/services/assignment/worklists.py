"""The executive's queues: My queue (with saved views and filters), the team queue, "take next",
and the change stamp the pages poll to refresh themselves.

- My queue: open items assigned to the user, those needing attention first, then by the next
  due instant (state.urgency_order), keyset-paged. Saved views and filters narrow it.
- Team queue: the open unassigned items of the user's teams, most urgent first.
- A tag (services.items.tags) narrows both queues, so a tag's chip shows every open item with it.
- take_next: gives the user the most urgent unassigned open item of their teams whose type is
  among their skills (any type when they have none). Two people pressing at once never get the
  same item: on PostgreSQL the candidate row is locked with FOR UPDATE SKIP LOCKED (a row
  someone else is taking is skipped, not waited for); on SQLite a compare-and-set UPDATE claims
  it (WHERE id = :id AND assignee_id IS NULL), which also takes the database's write lock until
  commit, and a lost race moves on to the next candidate. The assignment itself is
  state.assign (the "assigned" event, the version check). Taking work yourself has no
  capacity rule (services.assignment.capacity: only automatic assignment is capped), so none applies here.
- Like every service: flush, never commit; the caller owns the transaction.
"""
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.orm import defer, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from queue_app.models import Calendar, SlaPolicy, Team, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.work_item import OPEN_STATUSES, PRIORITIES, TYPES
from queue_app.services import access
from queue_app.services.errors import Invalid
from queue_app.services.items import lifecycle, state, tags

SAVED_VIEWS = {
    "due_today": "Due today",
    "waiting_on_customer": "Waiting on customer",
    "needs_attention": "Needs attention",
}
FILTERS = {"type": TYPES, "status": OPEN_STATUSES, "priority": PRIORITIES}
TAKE_BATCH = 20
TAKE_ROUNDS = 10


@dataclass
class QueueFilter:
    """The validated saved view and filters of My queue (all optional)."""

    view: str = None
    type: str = None
    status: str = None
    priority: str = None
    tag: str = None
    errors: dict = field(default_factory=dict)

    @property
    def args(self):
        """The query-string arguments that reproduce this filter (for links and cursors)."""
        return {name: value for name in ("view", "type", "status", "priority", "tag")
                if (value := getattr(self, name))}

    @property
    def active(self):
        return bool(self.args)


def parse_filter(args):
    """A QueueFilter from request arguments; unknown values raise Invalid naming the allowed ones."""
    result = QueueFilter()
    errors = {}
    view = (args.get("view") or "").strip()
    if view:
        if view not in SAVED_VIEWS:
            errors["view"] = f"unknown view {view[:40]!r}; choose one of {', '.join(SAVED_VIEWS)}"
        else:
            result.view = view
    for name, allowed in FILTERS.items():
        value = (args.get(name) or "").strip()
        if not value:
            continue
        if value not in allowed:
            extra = " (My queue shows open items only)" if name == "status" else ""
            errors[name] = f"unknown {name} {value[:40]!r}; choose one of {', '.join(allowed)}{extra}"
        else:
            setattr(result, name, value)
    try:
        result.tag = tags.parse_filter(args.get("tag"))
    except Invalid as exc:
        errors["tag"] = exc.message
    if errors:
        raise Invalid("; ".join(message[:1].upper() + message[1:] for message in errors.values()), errors)
    return result


def end_of_today(zone, now=None):
    """The UTC instant at which the current local day in `zone` ends."""
    now = (now or utcnow()).astimezone(zone)
    midnight = datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=zone)
    return midnight.astimezone(timezone.utc)


def view_clause(view, zone, now=None):
    if view == "due_today":
        return sa.and_(WorkItem.sla_next_due.is_not(None), WorkItem.sla_next_due < end_of_today(zone, now))
    if view == "waiting_on_customer":
        return WorkItem.status == "pending_customer"
    if view == "needs_attention":
        return sa.or_(WorkItem.needs_attention.is_(True), WorkItem.sla_state == "breached")
    raise Invalid(f"unknown view {view!r}")


def my_queue_query(user, flt=None, zone=timezone.utc, now=None):
    """The open items assigned to `user`, narrowed by the filter (order and paging: inbox.paging)."""
    flt = flt or QueueFilter()
    query = lifecycle.open_items_query(user).where(WorkItem.assignee_id == user.id)
    if flt.view:
        query = query.where(view_clause(flt.view, zone, now))
    for name in ("type", "status", "priority"):
        value = getattr(flt, name)
        if value:
            query = query.where(getattr(WorkItem, name) == value)
    if flt.tag:
        query = query.where(tags.tagged(flt.tag))
    return query


def team_queue_query(user, tag=None):
    """The open unassigned items of the user's teams (nothing for someone in no team), with `tag` if given."""
    team_ids = sorted(user.team_ids)
    if not team_ids:
        return None
    query = lifecycle.open_items_query(user).where(WorkItem.assignee_id.is_(None), WorkItem.team_id.in_(team_ids))
    return query.where(tags.tagged(tag)) if tag else query


def listed(query):
    """`query` without the long text columns (description, reason), which no queue row shows:
    a queue page of 75 rows would otherwise carry every item's full text."""
    return query.options(defer(WorkItem.description), defer(WorkItem.reason))


def with_row_relations(session, user, *pages):
    """Give the items of `pages` their team and SLA policy (with calendars): the user's own teams
    as already loaded, the others (and the policies) in one query each for all pages together,
    instead of a query per relation per page. Returns the pages unchanged."""
    items = [item for page in pages for item in page]
    known = {team.id: team for team in user.teams}
    bare = [team for team in known.values() if "calendar" not in team.__dict__]
    calendar_ids = sorted({team.calendar_id for team in bare} - {None})
    calendars = ({row.id: row for row in session.scalars(sa.select(Calendar).where(Calendar.id.in_(calendar_ids)))}
                 if calendar_ids else {})
    for team in bare:
        set_committed_value(team, "calendar", calendars.get(team.calendar_id))
    for model, key, relation in ((Team, "team_id", "team"), (SlaPolicy, "sla_policy_id", "sla_policy")):
        loaded = known if model is Team else {}
        ids = sorted({getattr(item, key) for item in items} - {None} - set(loaded))
        if ids:
            loaded = {**loaded, **{row.id: row for row in session.scalars(
                sa.select(model).where(model.id.in_(ids)).options(selectinload(model.calendar)))}}
        for item in items:
            if relation not in item.__dict__:
                set_committed_value(item, relation, loaded.get(getattr(item, key)))
    return pages


def _candidates(user):
    query = sa.select(WorkItem.id).where(WorkItem.team_id.in_(sorted(user.team_ids)),
                                         WorkItem.assignee_id.is_(None),
                                         WorkItem.status.in_(OPEN_STATUSES))
    skills = [s for s in (user.skills or []) if s in TYPES]
    if skills:
        query = query.where(WorkItem.type.in_(skills))
    return state.urgency_order(query)


def _claim_postgres(session, user):
    item_id = session.scalar(_candidates(user).limit(1).with_for_update(skip_locked=True, of=WorkItem))
    if item_id is None:
        return None
    return session.scalars(sa.select(WorkItem).where(WorkItem.id == item_id)
                           .execution_options(populate_existing=True)).one()


def _claim_compare_and_set(session, user):
    table = WorkItem.__table__
    tried = set()
    for _ in range(TAKE_ROUNDS):
        ids = [i for i in session.scalars(_candidates(user).limit(TAKE_BATCH + len(tried))).all() if i not in tried]
        if not ids:
            return None
        for item_id in ids:
            tried.add(item_id)
            claimed = session.execute(
                sa.update(table).where(table.c.id == item_id, table.c.assignee_id.is_(None),
                                       table.c.status.in_(OPEN_STATUSES))
                .values(version=table.c.version)).rowcount
            if claimed == 1:  # ours until commit: the write lock is held from here on
                return session.scalars(sa.select(WorkItem).where(WorkItem.id == item_id)
                                       .execution_options(populate_existing=True)).one()
    return None


def take_next(session, user, now=None):
    """Assign `user` the most urgent unassigned item they may take; the WorkItem, or None if none is left."""
    now = now or utcnow()
    if not user.team_ids:
        raise Invalid("you are not a member of any team, so there is no team queue to take from")
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        item = _claim_postgres(session, user)
    else:
        item = _claim_compare_and_set(session, user)
    if item is None:
        return None
    state.assign(session, item, user, actor=user, now=now)
    return item


def change_stamp(session, user, now=None):
    """A short text that changes whenever anything shown in the user's queues changes: their open
    items and their teams' unassigned ones (count, ids, versions, latest update), plus the minute,
    so the business time left stays current. One round trip; both halves are answered from the
    queue indexes (assignee, status / team, assignee)."""
    now = now or utcnow()
    clauses = [sa.and_(WorkItem.assignee_id == user.id, WorkItem.status.in_(OPEN_STATUSES))]
    team_ids = sorted(user.team_ids)
    if team_ids:
        clauses.append(sa.and_(WorkItem.team_id.in_(team_ids), WorkItem.assignee_id.is_(None),
                               WorkItem.status.in_(OPEN_STATUSES)))
    parts = [sa.select(sa.literal(n).label("part"), sa.func.count().label("n"),
                       sa.func.coalesce(sa.func.sum(WorkItem.id), 0).label("ids"),
                       sa.func.coalesce(sa.func.sum(WorkItem.version), 0).label("versions"),
                       sa.func.max(WorkItem.updated_at).label("latest"))
             .where(clause, access.visible_items(user)) for n, clause in enumerate(clauses)]
    rows = session.execute(sa.union_all(*parts) if len(parts) > 1 else parts[0]).all()
    stamp = []
    for row in sorted(rows, key=lambda r: r.part):
        latest = row.latest
        latest = int(latest.timestamp() * 1000) if isinstance(latest, datetime) else (latest or 0)
        stamp.append(f"{row.n}.{row.ids}.{row.versions}.{latest}")
    stamp.append(str(int(now.timestamp() // 60)))
    return "-".join(stamp)
