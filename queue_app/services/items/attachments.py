"""Files added to an item by a person or a partner system (email attachments come through intake).

A file is stored once by SHA-256 (db.blobs), hung on an internal note so the
thread shows who added it, recorded as an event, and the item's checks run again after
the commit. Executables are refused outright, as intake refuses them.
"""
import re
import unicodedata

from queue_app.db.blobs import store_blob
from queue_app.models import Attachment, Message
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.checks import runner
from queue_app.services.errors import Invalid
from queue_app.services.intake.mail.attachments import (
    EXECUTABLE_TYPES,
    MAX_FILENAME,
    sniff_content_type,
)
from queue_app.services.items.events import record_event

MAX_FILE_BYTES = 25 * 1024 * 1024


def clean_filename(name):
    """The last path part, without control characters, at most MAX_FILENAME long."""
    name = re.split(r"[/\\]", name or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().strip(".")
    return name[-MAX_FILENAME:] or "document"


def attach_file(session, item, *, actor, filename, data, declared_type=None, now=None):
    now = now or utcnow()
    access.require_change(actor, item)
    if not item.is_open:
        raise Invalid(f"{item.ref} is {item.status}; reopen it before adding files", {"status": item.status})
    if len(data) > MAX_FILE_BYTES:
        raise Invalid(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB", {"file": "too large"})
    filename = clean_filename(filename)
    content_type = sniff_content_type(data, declared_type or "application/octet-stream", filename)
    if content_type in EXECUTABLE_TYPES:
        raise Invalid(f"{filename} is an executable program; it is not accepted", {"file": "executable"})
    message = Message(work_item_id=item.id, kind="note", body_text=f"Added the file {filename}.",
                      author_id=actor.id, created_at=now)
    session.add(message)
    session.flush()
    attachment = Attachment(message_id=message.id, filename=filename, content_type=content_type,
                            declared_content_type=declared_type, size=len(data), sha256=store_blob(session, data),
                            created_at=now)
    session.add(attachment)
    item.last_activity_at = now
    session.flush()
    record_event(session, item, "attachment_added", actor,
                 {"attachment_id": attachment.id, "filename": filename, "content_type": content_type,
                  "size": len(data), "sha256": attachment.sha256}, now=now)
    runner.enqueue_checks(session, item)
    return attachment
