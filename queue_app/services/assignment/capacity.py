"""Who has room: executives' open loads, absence, and the row locks that keep capacity true.

Automatic assignment never takes anyone over capacity, however many items arrive at once:
the candidates' users rows are write-locked, in id order (so two assigners cannot deadlock),
before their open items are counted, and stay locked until the caller commits: SELECT ... FOR
UPDATE on PostgreSQL; on SQLite a no-op UPDATE, which takes the database's single write lock.
A second assigner waits, then counts the first one's items.
"""
import sqlalchemy as sa

from queue_app.models import User, WorkItem
from queue_app.models.work_item import OPEN_STATUSES


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


def lock_users(session, user_ids):
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
