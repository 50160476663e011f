"""Checks of a document verification: the files, the expiry date, the document number.

File types are sniffed from the bytes (the name and the sender's claim can lie). Each
file check looks at every attachment of the item that is not an inline email image and
reports per file in `data["files"]`, so a person sees which file is the problem.
"""
import logging
import time
from datetime import timedelta

import sqlalchemy as sa

from queue_app.models import Attachment, Message, WorkItem
from queue_app.services.checks.rules import document_numbers, pdf_reader
from queue_app.services.checks.rules.base import CheckOutcome, check
from queue_app.services.intake.mail.attachments import image_problem, sniff_content_type

ALLOWED_TYPES = {"application/pdf": "PDF", "image/png": "PNG", "image/jpeg": "JPEG", "image/tiff": "TIFF"}
EXTENSION_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                   ".tif": "image/tiff", ".tiff": "image/tiff"}
EXPIRY_WARNING_DAYS = 30
DOCUMENTS_THAT_EXPIRE = ("passport", "national_id", "driving_licence")
DOCUMENTS_WITHOUT_EXPIRY = ("utility_bill", "bank_statement", "company_registration")
MAX_LINKED = 20
NO_DOCUMENT = CheckOutcome("warning", "Not checked: no document is attached yet")

# PDFs are opened by the worker's PDF reader process (pdf_reader.py running pdf_probe.py) with these
# limits: a hostile file ends the reader, not the worker. All of an item's PDFs share PDF_CHECK_SECONDS,
# well inside the checks queue's job time limit (workers.queues.JOB_TIMEOUTS["checks"], 120 s), so the
# job always ends with its results.
PDF_PROBE = pdf_reader.PROBE
MAX_PDF_PAGES = 500  # a passport, a statement, a company's registration: never thousands of pages
PDF_SECONDS = 10  # per file: a scan opens in milliseconds
PDF_CHECK_SECONDS = 60
PDF_MEMORY_BYTES = 512 * 1024 * 1024

log = logging.getLogger(__name__)


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
        if not data_of(attachment):
            refused.append((attachment.filename, "is empty, so it is no document at all"))
        elif content_type not in allowed:
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


def pdf_problem(data, **limits):
    """None if the PDF opens, is not encrypted, has pages (at most MAX_PDF_PAGES) and nothing that runs;
    else the reason."""
    return pdf_verdict(data, **limits)[0]


def pdf_verdict(data, *, seconds=PDF_SECONDS, memory_bytes=PDF_MEMORY_BYTES, max_pages=MAX_PDF_PAGES):
    """(problem or None, costly): read by this worker's PDF reader process (pdf_reader, pdf_probe.py) under
    a memory limit and within `seconds`, so a bomb or an endless file costs the worker at most that time,
    never its memory. `costly`: opening the file took or would take more than the limits allow, so the
    page's viewer should not try either."""
    try:
        answer = pdf_reader.ask(data, max_pages=max_pages, memory_bytes=memory_bytes, seconds=seconds,
                                probe=PDF_PROBE)
        return answer["problem"], bool(answer["costly"])
    except TimeoutError:
        return f"took over {seconds:.0f} seconds to open: not read further", True
    except (ValueError, KeyError, TypeError):
        raise RuntimeError("the PDF reader did not run: it answered something else than its verdict") from None
    except pdf_reader.ReaderGone as gone:
        if gone.returncode > 0 and b"MemoryError" not in gone.stderr:  # not the limits: it cannot run at all
            last = gone.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {gone.returncode}"]
            raise RuntimeError(f"the PDF reader did not run: {last[0]}") from None
        # The limits ended it before it could answer (SIGKILL, a MemoryError outside the parse).
        log.warning("pdf reader ended with %s: %s", gone.returncode, gone.stderr[-500:])
        return (f"could not be opened within the limits ({seconds:.0f} seconds, "
                f"{memory_bytes // (1024 * 1024)} MB): not read further"), True


@check("document_pdf", title="PDF opens")
def document_pdf(ctx):
    if not ctx.attachments:
        return NO_DOCUMENT
    files, problems = [], []
    limit = ctx.settings.max_document_bytes
    deadline = time.monotonic() + PDF_CHECK_SECONDS
    for attachment in ctx.attachments:
        if sniffed_type(attachment) != "application/pdf":
            continue
        data = data_of(attachment)
        # Parsing is the costly part: a file over the size limit is not opened at all.
        left = deadline - time.monotonic()
        costly = False
        if len(data) > limit:
            problem = f"is over the size limit ({limit} bytes); not opened"
        elif left < 1:
            problem = "was not opened: the item's other PDFs used up the time allowed; run the checks again"
        else:
            problem, costly = pdf_verdict(data, seconds=min(PDF_SECONDS, left))
        files.append({"attachment_id": attachment.id, "filename": attachment.filename, "problem": problem,
                      "costly": costly})
        if problem:
            problems.append((attachment.filename, problem))
    if problems:
        return CheckOutcome("failed", f"PDF not usable: {_files_message(problems)}", {"files": files})
    if not files:
        return CheckOutcome("passed", "No PDF among the files: nothing to open", {"files": []})
    return CheckOutcome("passed", f"{len(files)} PDF(s) open, unencrypted, with pages", {"files": files})


@check("document_image", title="Image size")
def document_image(ctx):
    """A PNG, JPEG or GIF is judged by its header alone: a pixel bomb (a small file declaring billions of
    pixels) would take gigabytes to decode, so nothing here decodes it and the page does not show it."""
    if not ctx.attachments:
        return NO_DOCUMENT
    files, problems = [], []
    for attachment in ctx.attachments:
        content_type = sniffed_type(attachment)
        if content_type not in ("image/png", "image/jpeg", "image/gif"):
            continue
        problem = image_problem(data_of(attachment), content_type)
        files.append({"attachment_id": attachment.id, "filename": attachment.filename, "problem": problem})
        if problem:
            problems.append((attachment.filename, problem))
    if problems:
        return CheckOutcome("failed", f"Image not usable: {_files_message(problems)}", {"files": files})
    if not files:
        return CheckOutcome("passed", "No image among the files: nothing to measure", {"files": []})
    return CheckOutcome("passed", f"{len(files)} image(s) of a sensible size", {"files": files})


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
