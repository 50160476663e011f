"""Watching an item: anyone who may see it can watch it, and is then told (services.people.notifications)
when its status changes, the requester writes again or someone adds a note.

Invariants: one row per person and item; a person is never told of what they did themselves, nor of
an item they may no longer see (they left its team, or it moved to another). Flush, never commit.
"""
import sqlalchemy as sa

from queue_app.models import User, Watcher, WorkItem
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.people import notifications

WHAT = {
    "status": "its status changed",
    "reply": "the requester wrote again",
    "note": "a note was added",
}


def is_watching(session, user, item):
    return session.scalar(sa.select(Watcher.id).where(Watcher.work_item_id == item.id,
                                                      Watcher.user_id == user.id)) is not None


def count(session, item):
    return session.scalar(sa.select(sa.func.count()).select_from(Watcher).where(Watcher.work_item_id == item.id))


def watch(session, item, *, actor, now=None):
    """Start watching `item` (watching it twice changes nothing); NotFound if the actor may not see it."""
    access.require_change(actor, item)
    if not is_watching(session, actor, item):
        session.add(Watcher(user_id=actor.id, work_item_id=item.id, created_at=now or utcnow()))
        session.flush()
    return True


def unwatch(session, item, *, actor):
    """Stop watching `item` (not watching it is no error)."""
    access.require_view(actor, item)
    session.execute(sa.delete(Watcher).where(Watcher.work_item_id == item.id, Watcher.user_id == actor.id))
    return False


def watched_items(session, user, *, before=None, limit=50, options=()):
    """The items `user` watches and may see, the most recently watched first: [(watcher id, item)],
    keyset-paged on the watcher row's id (`before`)."""
    query = (sa.select(Watcher.id, WorkItem).join(WorkItem, WorkItem.id == Watcher.work_item_id)
             .where(Watcher.user_id == user.id, access.visible_items(user)).options(*options)
             .order_by(Watcher.id.desc()).limit(limit))
    if before is not None:
        query = query.where(Watcher.id < before)
    return [(row[0], row[1]) for row in session.execute(query)]


def notify_watchers(session, item, what, actor, now, detail=""):
    """Tell the item's watchers `what` (a key of WHAT) happened; not the actor, nor anyone who cannot see it."""
    actor_id = actor.id if isinstance(actor, User) else None
    users = session.scalars(sa.select(User).join(Watcher, Watcher.user_id == User.id)
                            .where(Watcher.work_item_id == item.id)).all()
    users = [u for u in users if u.id != actor_id and u.is_active and access.can_view(u, item)]
    if not users:
        return []
    who = actor if isinstance(actor, str) else (actor.name or actor.email) if actor is not None else "the system"
    body = f"{item.ref} ({item.subject}): {WHAT[what]} ({who}).{' ' + detail if detail else ''}\n" \
           "You are told because you watch this item; unwatch it on its page."
    return notifications.notify(session, item, users, f"[{item.ref}] {WHAT[what]}", body, now)
