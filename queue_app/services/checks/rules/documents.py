"""Checks of a document verification: the files, the expiry date, the document number.

File types are sniffed from the bytes (the name and the sender's claim can lie). Each
file check looks at every attachment of the item that is not an inline email image and
reports per file in `data["files"]`, so a person sees which file is the problem.
"""
import io
import logging
from datetime import timedelta

import sqlalchemy as sa
from pypdf import PdfReader

from queue_app.models import Attachment, Message, WorkItem
from queue_app.services.checks.rules import document_numbers
from queue_app.services.checks.rules.base import CheckOutcome, check
from queue_app.services.intake.mail.attachments import sniff_content_type

ALLOWED_TYPES = {"application/pdf": "PDF", "image/png": "PNG", "image/jpeg": "JPEG", "image/tiff": "TIFF"}
EXTENSION_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                   ".tif": "image/tiff", ".tiff": "image/tiff"}
EXPIRY_WARNING_DAYS = 30
DOCUMENTS_THAT_EXPIRE = ("passport", "national_id", "driving_licence")
DOCUMENTS_WITHOUT_EXPIRY = ("utility_bill", "bank_statement", "company_registration")
MAX_LINKED = 20
NO_DOCUMENT = CheckOutcome("warning", "Not checked: no document is attached yet")

logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed PDFs are reported by the check, not the log


def data_of(attachment):
    return attachment.blob.data if attachment.blob is not None else b""


def sniffed_type(attachment):
    return sniff_content_type(data_of(attachment), "application/octet-stream", attachment.filename)


def _extension(filename):
    name = (filename or "").lower()
    return name[name.rfind("."):] if "." in name else ""


def type_name(content_type):
    return ALLOWED_TYPES.get(content_type, content_type)


def _or_list(names):
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _files_message(problems):
    return "; ".join(f"{name}: {text}" for name, text in problems)


@check("document_attached", title="Document attached")
def document_attached(ctx):
    files = ctx.attachments
    if not files:
        return CheckOutcome("failed", "No document is attached: ask the requester for it")
    names = ", ".join(a.filename for a in files)
    return CheckOutcome("passed", f"{len(files)} file(s) attached: {names}",
                        {"files": [{"attachment_id": a.id, "filename": a.filename} for a in files]})


@check("document_file_type", title="File type")
def document_file_type(ctx):
    """Allowed by content: the team's document types (default PDF, PNG, JPEG, TIFF). A name promising
    another type is a warning."""
    if not ctx.attachments:
        return NO_DOCUMENT
    allowed = ctx.settings.allowed_document_types
    allowed_text = _or_list([type_name(t) for t in allowed])
    files, refused, misnamed = [], [], []
    for attachment in ctx.attachments:
        content_type = sniffed_type(attachment)
        named_as = EXTENSION_TYPES.get(_extension(attachment.filename))
        files.append({"attachment_id": attachment.id, "filename": attachment.filename,
                      "content_type": content_type, "allowed": content_type in allowed})
        if content_type not in allowed:
            refused.append((attachment.filename, f"is {content_type}, not one of {allowed_text}"))
        elif named_as is not None and named_as != content_type:
            misnamed.append((attachment.filename, f"is named as {ALLOWED_TYPES[named_as]} but the content is "
                                                  f"{type_name(content_type)}"))
    if refused:
        return CheckOutcome("failed", f"File type not allowed: {_files_message(refused)}", {"files": files})
    if misnamed:
        return CheckOutcome("warning", f"File name and content disagree: {_files_message(misnamed)}",
                            {"files": files})
    kinds = ", ".join(sorted({type_name(f['content_type']) for f in files}))
    return CheckOutcome("passed", f"Allowed file type ({kinds})", {"files": files})


def pdf_problem(data):
    """None if pypdf opens the PDF, it is not encrypted and has pages; else the reason."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            return "is encrypted (password protected): ask for an unprotected copy"
        pages = len(reader.pages)
    except Exception as exc:  # pypdf raises many kinds on damaged files; all mean "cannot be read"
        return f"cannot be opened as a PDF ({exc.__class__.__name__})"
    if pages == 0:
        return "has no pages"
    return None


@check("document_pdf", title="PDF opens")
def document_pdf(ctx):
    if not ctx.attachments:
        return NO_DOCUMENT
    files, problems = [], []
    limit = ctx.settings.max_document_bytes
    for attachment in ctx.attachments:
        if sniffed_type(attachment) != "application/pdf":
            continue
        data = data_of(attachment)
        # Parsing is the costly part: a file over the size limit is not opened at all.
        problem = pdf_problem(data) if len(data) <= limit else f"is over the size limit ({limit} bytes); not opened"
        files.append({"attachment_id": attachment.id, "filename": attachment.filename, "problem": problem})
        if problem:
            problems.append((attachment.filename, problem))
    if problems:
        return CheckOutcome("failed", f"PDF not usable: {_files_message(problems)}", {"files": files})
    if not files:
        return CheckOutcome("passed", "No PDF among the files: nothing to open", {"files": []})
    return CheckOutcome("passed", f"{len(files)} PDF(s) open, unencrypted, with pages", {"files": files})


@check("document_size", title="File size")
def document_size(ctx):
    if not ctx.attachments:
        return NO_DOCUMENT
    limit = ctx.settings.max_document_bytes
    files, problems = [], []
    for attachment in ctx.attachments:
        size = len(data_of(attachment))
        files.append({"attachment_id": attachment.id, "filename": attachment.filename, "size": size})
        if size == 0:
            problems.append((attachment.filename, "is empty"))
        elif size > limit:
            problems.append((attachment.filename, f"is {size} bytes, over the limit of {limit}"))
    if problems:
        return CheckOutcome("failed", f"File size out of limits: {_files_message(problems)}",
                            {"files": files, "max_bytes": limit})
    return CheckOutcome("passed", f"Every file is within the size limit ({limit} bytes)",
                        {"files": files, "max_bytes": limit})


@check("document_expiry", title="Expiry date")
def document_expiry(ctx):
    item = ctx.item
    expires = item.expires_on
    today = ctx.now.date()
    if expires is None:
        if item.document_type in DOCUMENTS_WITHOUT_EXPIRY:
            return CheckOutcome("passed", f"A {item.document_type.replace('_', ' ')} has no expiry date")
        if item.document_type in DOCUMENTS_THAT_EXPIRE or item.document_type is None:
            return CheckOutcome("failed", "No expiry date: read it from the document")
        return CheckOutcome("warning", "No expiry date given")
    data = {"expires_on": expires.isoformat(), "days_left": (expires - today).days}
    if expires < today:
        return CheckOutcome("failed", f"The document expired on {expires.isoformat()}", data)
    if expires <= today + timedelta(days=EXPIRY_WARNING_DAYS):
        return CheckOutcome("warning", f"The document expires soon, on {expires.isoformat()} "
                                       f"(in {data['days_left']} days)", data)
    return CheckOutcome("passed", f"Valid until {expires.isoformat()}", data)


@check("document_number", title="Document number")
def document_number(ctx):
    item = ctx.item
    if not item.document_type:
        return CheckOutcome("failed", "No document type: the number format cannot be checked")
    if not item.document_number:
        return CheckOutcome("failed", "No document number: read it from the document")
    number_format = ctx.settings.document_number_format(item.document_type)
    data = {"document_type": item.document_type, "format": number_format}
    problem = document_numbers.problem(item.document_number, number_format)
    kind = item.document_type.replace("_", " ")
    if problem:
        return CheckOutcome("failed", f"The {kind} number {item.document_number} {problem}", data)
    if number_format is None:
        return CheckOutcome("passed", f"No number format is configured for {kind} documents", data)
    what = "a valid IBAN" if number_format == "iban" else "in the expected format"
    return CheckOutcome("passed", f"The {kind} number is {what}", data)


@check("duplicate_document", mandatory=False, title="Same file elsewhere")
def duplicate_document(ctx):
    """The same bytes (SHA-256) on another item: perhaps a resubmission, perhaps a reused document."""
    digests = {a.sha256 for a in ctx.attachments if a.size}
    if not digests:
        return CheckOutcome("passed", "No file to compare")
    rows = ctx.session.execute(
        sa.select(WorkItem.ref, Attachment.filename).select_from(Attachment)
        .join(Message, Attachment.message_id == Message.id).join(WorkItem, Message.work_item_id == WorkItem.id)
        .where(Attachment.sha256.in_(digests), WorkItem.id != ctx.item.id)
        .order_by(WorkItem.id).limit(MAX_LINKED * 5)).all()
    refs = list(dict.fromkeys(ref for ref, _ in rows))[:MAX_LINKED]
    if not refs:
        return CheckOutcome("passed", "These files were not seen on any other item")
    return CheckOutcome("warning", f"The same file is also on {', '.join(refs)}", {"related_refs": refs})
