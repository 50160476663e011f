"""Drafts: what a person typed in an item's reply or note box and has not sent yet.

One row per person, item and box, saved as they type (the item page posts it), shown in the box
whenever the page is drawn again, and removed when that reply or note is sent or the box is
emptied. Only the person who typed a draft ever sees it."""
import sqlalchemy as sa

from queue_app.models import DRAFT_BOXES, Draft
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.errors import Invalid

MAX_BODY = 100_000  # as a sent reply or note (services.items.lifecycle)


def _check_box(box):
    if box not in DRAFT_BOXES:
        raise Invalid(f"unknown box {box!r}", {"box": f"must be one of {', '.join(DRAFT_BOXES)}"})


def save(session, user, item, box, body, now=None):
    """Keep `body` as the person's draft of `box` on the item (an empty body removes it)."""
    _check_box(box)
    access.require_view(user, item)
    body = body or ""
    if len(body) > MAX_BODY:
        raise Invalid(f"a draft holds at most {MAX_BODY} characters", {"body": "too long"})
    if not body.strip():
        clear(session, user, item, box)
        return None
    draft = session.scalar(sa.select(Draft).where(Draft.user_id == user.id, Draft.work_item_id == item.id,
                                                  Draft.box == box))
    if draft is None:
        draft = Draft(user_id=user.id, work_item_id=item.id, box=box, body=body)
        session.add(draft)
    draft.body = body
    draft.updated_at = now or utcnow()
    session.flush()
    return draft


def for_item(session, user, item):
    """The person's drafts on the item: {box: text}."""
    rows = session.execute(sa.select(Draft.box, Draft.body).where(Draft.user_id == user.id,
                                                                  Draft.work_item_id == item.id))
    return {box: body for box, body in rows}


def clear(session, user, item, box):
    """Forget the draft of `box` (it was sent)."""
    _check_box(box)
    session.execute(sa.delete(Draft).where(Draft.user_id == user.id, Draft.work_item_id == item.id,
                                           Draft.box == box))
