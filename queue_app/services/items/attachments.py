"""Files added to an item by a person or a partner system (email attachments come through intake).

One function takes the files of an upload, whatever the path: the item page (several at once),
the front-office form (with the new request) and the API (one file). Each file is judged on
its own by the team's check settings (size limit, allowed types) with the type sniffed from
the bytes; executables and empty files are refused. A refused file is reported with the
reason and the other files of the same upload still go in.

The accepted files are stored once by SHA-256 (db.blobs) and hung on one internal note, so the
thread shows who added them; each is an event, and the item's checks run again once after the
commit (through the outbox).
"""
import re
import unicodedata
from dataclasses import dataclass, field

import sqlalchemy as sa

from queue_app.db.blobs import store_blob
from queue_app.models import Attachment, CheckResult, Message
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.checks import runner
from queue_app.services.checks.settings import settings_for
from queue_app.services.errors import Invalid
from queue_app.services.intake.mail.attachments import (
    DEFAULT_BLOCKED_EXTENSIONS,
    EXECUTABLE_TYPES,
    MAX_FILENAME,
    image_problem,
    sniff_content_type,
)
from queue_app.services.items import state, verification
from queue_app.services.items.events import record_event

# Most files one upload may carry (the request size limit bounds the bytes).
MAX_FILES = 20
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}")
_BIDI = {c: None for c in [0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


@dataclass(frozen=True)
class UploadedFile:
    """One file as a path received it: the name the sender gave, the bytes, the type they claimed."""

    filename: str
    data: bytes
    declared_type: str | None = None


@dataclass
class UploadResult:
    added: list = field(default_factory=list)  # Attachment rows
    refused: list = field(default_factory=list)  # (filename, reason)
    message: Message | None = None

    def refusal_texts(self):
        return [f"{name}: {reason}" for name, reason in self.refused]


def clean_filename(name):
    """The last path part, without control or bidi characters, at most MAX_FILENAME long."""
    name = (name or "").translate(_BIDI)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().strip(".")
    return name[-MAX_FILENAME:] or "document"


def megabytes(size):
    """A size for people: 10 MB, 1.5 MB, 300 KB, 12 bytes (1 MB = 1024 KB, as the limits are set)."""
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{size} bytes"


def type_label(content_type):
    return {"application/pdf": "PDF", "image/png": "PNG", "image/jpeg": "JPEG", "image/tiff": "TIFF",
            "image/gif": "GIF"}.get(content_type, content_type)


# What the item page's preview panel shows: PDFs drawn by pdf.js, and the plain image types.
PREVIEW_KINDS = {"application/pdf": "pdf", "image/png": "image", "image/jpeg": "image", "image/gif": "image"}


@dataclass(frozen=True)
class Preview:
    attachment: Attachment
    kind: str  # "pdf" or "image"


def previews_of(messages):
    """The documents of a thread the item page previews, oldest first: PDFs and plain images, except
    the inline images of an HTML email (shown in its body) and the files of a sender who is not a
    participant (a person checks those before opening them)."""
    return [Preview(a, PREVIEW_KINDS[a.content_type])
            for m in messages if not m.flagged_for_review
            for a in m.attachments if not a.is_inline and a.content_type in PREVIEW_KINDS]


def inline_problem(attachment):
    """Why a picture must not be shown in the page (a damaged header, a pixel bomb), or None. Only the
    header is read: the server never decodes an image, and the browser never gets one too big to decode."""
    return image_problem(attachment.blob.data, attachment.content_type)


def preview_refusal(session, attachment):
    """Why the page's viewer must not open this PDF, or None: the latest "PDF opens" result found that
    opening it costs more than the worker's limits allow (a decompression bomb, a parse that ran out of
    time or memory), and the viewer would pay the same in the person's browser."""
    result = session.scalar(
        sa.select(CheckResult).where(CheckResult.work_item_id == attachment.message.work_item_id,
                                     CheckResult.name == "document_pdf")
        .order_by(CheckResult.id.desc()).limit(1))
    files = (result.data or {}).get("files", []) if result is not None else []
    return next((f["problem"] for f in files if f.get("attachment_id") == attachment.id and f.get("costly")), None)


def refusal(upload, filename, content_type, settings):
    """Why this file is not accepted, or None."""
    size = len(upload.data)
    if size == 0:
        return "the file is empty"
    if size > settings.max_document_bytes:
        return f"the file is {megabytes(size)}, over the team's limit of {megabytes(settings.max_document_bytes)}"
    lowered = filename.lower()
    if content_type in EXECUTABLE_TYPES or any(lowered.endswith(ext) for ext in DEFAULT_BLOCKED_EXTENSIONS):
        return "executable programs are not accepted"
    if content_type not in settings.allowed_document_types:
        allowed = ", ".join(type_label(t) for t in settings.allowed_document_types)
        return f"the content is {content_type}; the team accepts {allowed}"
    return None


def add_files(session, item, *, actor, files, now=None):
    """Add an upload's files to an item someone works on (the item page, the API): the actor must
    be allowed to work the item (services.access) and the item must be open."""
    access.require_work(actor, item)
    if not item.is_open:
        raise Invalid(f"{item.ref} is {item.status.replace('_', ' ')}; reopen it before adding files",
                      {"status": item.status})
    return _add(session, item, actor, files, now or utcnow())


def add_files_with_request(session, item, *, actor, files, now=None):
    """The files filed with a new request (the front-office form): whoever filed the item brings
    its documents, even for a team they are not in."""
    if item.created_by_id != actor.id:
        access.require_work(actor, item)
    return _add(session, item, actor, files, now or utcnow())


def _add(session, item, actor, files, now):
    files = list(files)
    if not files:
        raise Invalid("no file: choose at least one file", {"files": "is required"})
    if len(files) > MAX_FILES:
        raise Invalid(f"at most {MAX_FILES} files at once", {"files": "too many"})
    settings = settings_for(session, item.team_id)
    result = UploadResult()
    accepted = []
    for upload in files:
        filename = clean_filename(upload.filename)
        declared = (upload.declared_type or "").split(";")[0].strip().lower()
        declared = declared if _MEDIA_TYPE.fullmatch(declared) else None  # kept only as a plain media type
        # From the bytes alone: the sniffer trusts a claimed message/rfc822, which a person's file must not get.
        content_type = sniff_content_type(upload.data, "application/octet-stream", filename)
        reason = refusal(upload, filename, content_type, settings)
        if reason:
            result.refused.append((filename, reason))
        else:
            accepted.append((upload, filename, content_type, declared))
    if not accepted:
        return result
    names = ", ".join(name for _, name, _, _ in accepted)
    text = f"Added the file {names}." if len(accepted) == 1 else f"Added {len(accepted)} files: {names}."
    result.message = Message(work_item_id=item.id, kind="note", body_text=text, author_id=actor.id, created_at=now)
    session.add(result.message)
    session.flush()
    for upload, filename, content_type, declared in accepted:
        attachment = Attachment(message_id=result.message.id, filename=filename, content_type=content_type,
                                declared_content_type=declared,
                                size=len(upload.data), sha256=store_blob(session, upload.data), created_at=now)
        session.add(attachment)
        session.flush()
        result.added.append(attachment)
        record_event(session, item, "attachment_added", actor,
                     {"attachment_id": attachment.id, "filename": filename, "content_type": content_type,
                      "size": attachment.size, "sha256": attachment.sha256}, now=now)
    state.touch(item, now)
    session.flush()
    runner.enqueue_checks(session, item)
    verification.on_new_documents(session, item, [a.filename for a in result.added], actor=actor, now=now)
    return result


def attach_file(session, item, *, actor, filename, data, declared_type=None, now=None):
    """One file (the API): the Attachment, or Invalid saying why the file was refused."""
    result = add_files(session, item, actor=actor, now=now,
                       files=[UploadedFile(filename=filename, data=data, declared_type=declared_type)])
    if result.refused:
        name, reason = result.refused[0]
        raise Invalid(f"{name}: {reason}", {"file": reason})
    return result.added[0]
