"""Requests filed through the front-office form (`/submit`): the work item, then the
acknowledgement email the form promises the customer, by the same rules and template as email
intake's (services.intake.filing.acknowledge_request)."""
from queue_app.models.base import utcnow
from queue_app.services.intake import filing
from queue_app.services.items import attachments, lifecycle


def file_request(session, *, actor, now=None, **details):
    """Create the item (lifecycle.create_item's details, source "form") and acknowledge it; returns it.

    The acknowledgement is an automatic outbound Message sent by the mail job after the commit."""
    now = now or utcnow()
    item = lifecycle.create_item(session, actor=actor, source="form", now=now, **details)
    filing.acknowledge_request(session, item, now=now)
    session.flush()
    return item


def file_request_with_files(session, *, actor, files, now=None, **details):
    """file_request, then the files that came with it (services.items.attachments: each judged by the
    team's limits, a refused one reported while the others go in). Returns (item, UploadResult or None)."""
    now = now or utcnow()
    item = file_request(session, actor=actor, now=now, **details)
    result = attachments.add_files_with_request(session, item, actor=actor, files=files, now=now) if files else None
    return item, result
