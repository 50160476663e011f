"""Telling executives what was assigned to them: one notification per person and action."""
from collections import defaultdict

from queue_app.models import User
from queue_app.services.people import notifications

AUTO_ACTOR = "auto-assign"  # the actor label of assignments made on arrival


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
        notifications.notify(session, first, [users[user_id]], subject, body, now, kind="assigned")
