"""The only writer of Event rows: every change to a work item is recorded here with actor and time.

Inside db.batched_rows (the bulk import) an event is a row queued for the batch's INSERT;
otherwise it is an Event added to the session. Either way it is written without a hash: the
audit chain's sealer links it at the commit (services.audit.chain, db.sealing).
"""
from queue_app.db import sealing
from queue_app.db.batched_rows import add_row
from queue_app.models import Event
from queue_app.models.base import utcnow


def actor_label(actor):
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return actor.email


def record_event(session, item, kind, actor=None, data=None, now=None):
    sealing.writing(session)
    values = dict(
        work_item_id=item.id,
        kind=kind,
        actor_id=None if actor is None or isinstance(actor, str) else actor.id,
        actor_label=actor_label(actor),
        at=now or utcnow(),
        data=data or {},
    )
    if add_row(session, Event, values):
        return None
    event = Event(**values)
    session.add(event)
    return event
