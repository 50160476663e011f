"""The only writer of Event rows: every change to a work item is recorded here with actor and time."""
from queue_app.models import Event
from queue_app.models.base import utcnow


def actor_label(actor):
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return actor.email


def record_event(session, item, kind, actor=None, data=None, now=None):
    event = Event(
        work_item_id=item.id,
        kind=kind,
        actor_id=None if actor is None or isinstance(actor, str) else actor.id,
        actor_label=actor_label(actor),
        at=now or utcnow(),
        data=data or {},
    )
    session.add(event)
    return event
