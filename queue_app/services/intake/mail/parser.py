"""Turn raw RFC 5322 bytes into a ParsedEmail the intake can trust.

Everything here assumes hostile input: headers are decoded and cleaned by hand, the sender
is validated strictly (a forged or ambiguous From must not become a requester), HTML is
sanitised with an explicit allow-list and remote images are stripped, executable
attachments are refused, and nesting/part counts are bounded before and after the stdlib
parser runs. Nothing raises except MailParseError (with a short reason code).

The header decoding, the HTML and the attachment rules live in headers.py, html.py and
attachments.py; this module walks the MIME tree and assembles the result.
"""
import binascii
import email
import email.policy
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import HeaderRegistry
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from functools import lru_cache

from queue_app.services.intake.mail.attachments import (
    DEFAULT_BLOCKED_EXTENSIONS,
    blocked_detail,
    safe_filename,
    sniff_content_type,
)
from queue_app.services.intake.mail.headers import (
    MAX_FROM_HEADER,
    MAX_SUBJECT_HEADER,
    BadAddress,
    clean_line,
    decode_bytes,
    decode_header_text,
    mailbox,
    message_ids,
    normalise_message_id,
    note,
    parse_address_list,
    raw_to_text,
    short,
    tokens,
    unfold,
)
from queue_app.services.intake.mail.html import html_to_text, sanitise_html

log = logging.getLogger(__name__)

# How many ids of In-Reply-To, References and the bounced messages are kept from one message.
MAX_PARSED_REFERENCES = 50


class MailParseError(Exception):
    """A message the intake must quarantine; `reason` is a short code, `detail` a sentence for people."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)  # both in args, so the exception pickles (jobs)
        self.reason = reason
        self.detail = detail

    def __str__(self):
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass
class ParsedAttachment:
    filename: str  # safe: no path, no control/bidi characters, at most 200 characters
    content_type: str  # sniffed from the bytes
    declared_content_type: str
    data: bytes
    content_id: str | None  # without <>
    is_inline: bool  # has a Content-ID and is not marked as an attachment


@dataclass
class ParsedEmail:
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    subject: str
    from_address: str
    from_name: str
    to: list[str]
    cc: list[str]
    reply_to: str | None
    date: datetime | None
    body_text: str
    body_html: str | None  # sanitised; cid: images of inline parts left as cid: for the caller
    attachments: list[ParsedAttachment]
    auto_submitted: bool
    bulk: bool
    is_bounce: bool
    bounced_message_ids: list[str]
    problems: list[str]
    # An automatic answer to a message (out of office, vacation, autoresponder), by its headers
    # or its subject; it is filed on its thread but changes nothing there.
    auto_reply: bool = False


# --- policy -------------------------------------------------------------------------------

class _MemoHeaderRegistry(HeaderRegistry):
    """The default header registry, memoised.

    The feedparser re-reads Content-Type several times per part and the modern header
    parser is slow (~50 µs a call); caching by (name, value) makes parsing ~2.5x faster.
    Header objects are immutable, so sharing them is safe. Long values are not cached.
    A header the structured parser chokes on becomes unstructured instead of an exception.
    """

    def __init__(self):
        super().__init__()
        self._memo = lru_cache(maxsize=4096)(super().__call__)
        self._plain = HeaderRegistry(use_default_map=False)

    def __call__(self, name, value):
        try:
            if len(value) > 1000:
                return super().__call__(name, value)
            return self._memo(name, value)
        except Exception:
            # The 3.11 structured parsers have crash bugs on some garbage (e.g. IndexError on
            # "text/plain; filename*"). Message's accessors only need the header as a string,
            # so an unstructured header is a safe stand-in.
            return self._plain(name, value)


# email.policy.default in every respect but the memoised header factory.
_POLICY = email.policy.default.clone(header_factory=_MemoHeaderRegistry())
# For re-serialising an attached message: keep its header lines as they came, 8-bit as is.
_OUT_POLICY = email.policy.default.clone(refold_source="none", cte_type="8bit", linesep="\r\n")


# --- pre-scan -------------------------------------------------------------------------------

_SCAN_TOKENS = re.compile(
    rb'boundary(?:\*[0-9]*\*?)?[ \t]*=[ \t]*(?:"([^"\r\n]*)"|([^\s;]+))'
    rb'|(content-type:[ \t]*(?:\r?\n[ \t]+)?message/)'
    rb'|^--([^\r\n]*?)[ \t]*\r?$',
    re.MULTILINE,
)


def _prescan_depth(raw: bytes, max_depth: int) -> int:
    """An upper estimate of the MIME nesting depth, from the bytes alone.

    The stdlib parser recurses once per nested multipart/message and checks every line
    against every open boundary, so 1,000 levels take it ~0.6 s before a RecursionError.
    The common case (few boundary and message/ declarations) returns at once; otherwise
    open containers are tracked: a boundary declaration or message/* type opens one, a
    delimiter line of an open boundary closes everything inside it.
    """
    low = raw.lower()
    boundaries, messages = low.count(b"boundary"), low.count(b"message/")
    if 2 * boundaries + messages <= max_depth:  # a digest part is an implicit message: x2
        return 2 * boundaries + messages
    stack, deepest = [], 0
    for match in _SCAN_TOKENS.finditer(low):
        declared = match.group(1) if match.group(1) is not None else match.group(2)
        if declared is not None:
            stack.append(declared)
        elif match.group(3):
            stack.append(None)
        else:
            line = match.group(4)
            if line in stack:  # a delimiter: everything opened inside the previous part has ended
                del stack[_last_index(stack, line) + 1:]
            elif line.endswith(b"--") and line[:-2] in stack:  # a close delimiter ends the multipart too
                del stack[_last_index(stack, line[:-2]):]
        deepest = max(deepest, len(stack))
        if deepest > max_depth:
            break
    return deepest


def _last_index(items: list, value) -> int:
    return len(items) - 1 - items[::-1].index(value)


# --- the sender ---------------------------------------------------------------------------

def _parse_from(values: list, problems: list) -> tuple:
    if not values or not any(v.strip() for v in values):
        raise MailParseError("no_sender", "The message has no From header.")
    if len(values) > 1:
        raise MailParseError("invalid_sender", "The message has more than one From header.")
    if len(values[0]) > MAX_FROM_HEADER:
        raise MailParseError("invalid_sender", f"The From header is longer than {MAX_FROM_HEADER} characters.")
    text = raw_to_text(unfold(values[0]), "From", problems).strip()
    try:
        return mailbox(list(tokens(text)), problems)
    except BadAddress as exc:
        raise MailParseError("invalid_sender",
                             f"The From header {short(text)} is not one valid address ({exc}).") from None


# --- the parser -----------------------------------------------------------------------------

_REPORT_PARTS = {"message/delivery-status", "message/global-delivery-status", "message/disposition-notification",
                 "message/global-disposition-notification", "message/feedback-report", "text/rfc822-headers",
                 "message/global-headers"}
_ORIGINAL_ID_FIELDS = ("original-message-id", "x-original-message-id")


# Headers autoresponders set (besides Auto-Submitted: auto-replied), whatever their value.
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponse", "x-autoreply-from", "x-mail-autoreply",
                       "x-autogenerated", "x-vacation")
# Subject prefixes of out-of-office replies in common clients and languages (a colon is required,
# so "Out of office until May" written by a person is not taken for one).
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|auto[- ]?response|autoresponder|out of (the )?office( reply| notice)?"
    r"|abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|respuesta autom[áa]tica"
    r"|risposta automatica|automatisch antwoord|automatiskt svar|自動応答|自动回复)\s*[:：]", re.IGNORECASE)


def _is_auto_reply(headers: dict, auto_submitted: str | None, precedence: str, subject: str) -> bool:
    if auto_submitted is not None and auto_submitted.strip().split(";")[0].strip().lower() == "auto-replied":
        return True
    if precedence == "auto_reply" or any(name in headers for name in _AUTO_REPLY_HEADERS):
        return True
    return bool(_AUTO_REPLY_SUBJECT.match(subject or ""))


def _headers(msg) -> dict:
    found = {}
    for name, value in msg.raw_items():
        found.setdefault(name.strip().lower(), []).append(value if isinstance(value, str) else str(value))
    return found


def _first(headers: dict, name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def parse_email(raw: bytes, *, max_depth: int = 20, max_parts: int = 200,
                blocked_extensions=DEFAULT_BLOCKED_EXTENSIONS) -> ParsedEmail:
    """Parse raw message bytes; raises MailParseError (and nothing else) for what must be quarantined."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError("parse_email expects bytes")
    raw = bytes(raw)
    if not raw.strip():
        raise MailParseError("unparseable", "The message is empty.")
    if _prescan_depth(raw, max_depth) > max_depth:
        raise MailParseError("too_deep", f"MIME parts are nested more than {max_depth} levels deep.")
    try:
        msg = email.message_from_bytes(raw, policy=_POLICY)
        return _Parser(msg, max_depth, max_parts, blocked_extensions).run()
    except MailParseError:
        raise
    except RecursionError:
        raise MailParseError("too_deep", "MIME parts are nested too deeply to parse.") from None
    except Exception as exc:  # a parser bug or an input nobody foresaw: quarantine, don't crash
        log.warning("unparseable email", exc_info=True)
        raise MailParseError("unparseable", f"The message could not be parsed ({type(exc).__name__}).") from exc


class _Parser:
    """One parse: walks the MIME tree iteratively, collecting bodies, attachments and bounce data."""

    def __init__(self, msg, max_depth, max_parts, blocked_extensions):
        self.msg = msg
        self.max_depth = max_depth
        self.max_parts = max_parts
        self.blocked = tuple(str(e).lower() for e in (blocked_extensions or ()))
        self.problems = []
        self.text_part = None
        self.html_part = None
        self.attachments = []
        self.saw_dsn_report = False
        self.saw_status_part = False
        self.original_ids = []  # Original-Message-ID fields and text/rfc822-headers
        self.attached_ids = []  # Message-IDs of attached messages

    def run(self) -> ParsedEmail:
        headers = _headers(self.msg)
        if not headers:
            raise MailParseError("unparseable", "No header section was found.")
        problems = self.problems
        from_address, from_name = _parse_from(headers.get("from", []), problems)
        self._walk()

        raw_subject = (_first(headers, "subject") or "")[:MAX_SUBJECT_HEADER]
        subject = clean_line(decode_header_text(raw_subject, "subject", problems))
        reply_to = parse_address_list(headers.get("reply-to", []), "Reply-To", problems)
        body_text = self._text(self.text_part, "text body") if self.text_part is not None else None
        body_html = None
        if self.html_part is not None:
            raw_html = self._text(self.html_part, "HTML body")
            cids = {a.content_id: f"cid:{a.content_id}" for a in self.attachments if a.content_id}
            body_html = sanitise_html(raw_html, cids)
            if body_text is None:
                body_text = html_to_text(raw_html)
        auto = _first(headers, "auto-submitted")
        precedence = (_first(headers, "precedence") or "").strip().lower()
        is_bounce = self._is_bounce(from_address)
        for name in _ORIGINAL_ID_FIELDS:
            self.original_ids.extend(headers.get(name, []))
        return ParsedEmail(
            message_id=normalise_message_id(_first(headers, "message-id") or ""),
            in_reply_to=message_ids(headers.get("in-reply-to", []), MAX_PARSED_REFERENCES),
            references=message_ids(headers.get("references", []), MAX_PARSED_REFERENCES),
            subject=subject,
            from_address=from_address,
            from_name=from_name,
            to=parse_address_list(headers.get("to", []), "To", problems),
            cc=parse_address_list(headers.get("cc", []), "Cc", problems),
            reply_to=reply_to[0] if reply_to else None,
            date=self._date(_first(headers, "date")),
            body_text=body_text or "",
            body_html=body_html,
            attachments=self.attachments,
            auto_submitted=auto is not None and auto.strip().split(";")[0].strip().lower() != "no",
            bulk=precedence in ("bulk", "junk", "list") or "list-id" in headers or "list-unsubscribe" in headers,
            is_bounce=is_bounce,
            bounced_message_ids=message_ids(self.attached_ids + self.original_ids, MAX_PARSED_REFERENCES)
            if is_bounce else [],
            problems=problems,
            auto_reply=_is_auto_reply(headers, auto, precedence, subject),
        )

    # -- tree walk ------------------------------------------------------------------------

    def _walk(self):
        """Depth-first, in document order, with an explicit stack (no recursion, bounded)."""
        stack = [(self.msg, 0, False)]
        count = 0
        defects = set()
        while stack:
            part, depth, attached = stack.pop()
            count += 1
            if count > self.max_parts:
                raise MailParseError("too_many_parts", f"The message has more than {self.max_parts} MIME parts.")
            if depth > self.max_depth:
                raise MailParseError("too_deep", f"MIME parts are nested more than {self.max_depth} levels deep.")
            defects.update(type(d).__name__ for d in getattr(part, "defects", ()))
            ctype = part.get_content_type()
            payload = part.get_payload()
            if ctype.startswith("multipart/") and isinstance(payload, list):
                if ctype == "multipart/report" and not attached and \
                        str(part.get_param("report-type", "")).strip().lower() == "delivery-status":
                    self.saw_dsn_report = True
                stack.extend((child, depth + 1, attached) for child in reversed(payload))
            elif ctype in ("message/rfc822", "message/global") or (
                    ctype.startswith("message/") and ctype not in _REPORT_PARTS and isinstance(payload, list)):
                if not attached:
                    self._attach_message(part, payload)
                if isinstance(payload, list):
                    stack.extend((child, depth + 1, True) for child in reversed(payload))
            elif attached:
                self._check_nested_leaf(part, ctype)
            elif ctype in _REPORT_PARTS:
                self._report_part(part, ctype, payload)
            else:
                self._leaf(part, ctype)
        for name in sorted(defects):
            note(self.problems, f"MIME defect: {name}")

    def _leaf(self, part, ctype):
        filename = self._filename(part)
        disposition = _safe(part.get_content_disposition)
        if ctype.startswith("multipart/"):
            ctype = "text/plain"  # a multipart without a usable boundary: its body is text
        if ctype in ("text/plain", "text/html") and not filename and disposition != "attachment":
            if ctype == "text/plain" and self.text_part is None:
                self.text_part = part
            elif ctype == "text/html" and self.html_part is None:
                self.html_part = part
            return  # other body parts are alternatives of the chosen ones
        data = self._payload_bytes(part)
        cid = self._content_id(part)
        self._add_attachment(filename, ctype, data, cid, is_inline=cid is not None and disposition != "attachment")

    def _attach_message(self, part, payload):
        """An attached email: kept whole as .eml bytes, named after its subject, never read for the body."""
        inner = payload[0] if isinstance(payload, list) and payload else None
        inner_headers = {}
        if inner is None:
            data = self._payload_bytes(part)
        else:
            inner_headers = _headers(inner)
            cte = str(part.get("content-transfer-encoding", "")).strip().lower()
            if cte == "base64" and not inner_headers:  # non-standard, but seen: the whole email base64-encoded
                data = _safe(lambda: binascii.a2b_base64(str(inner.get_payload()).encode("ascii", "replace")), b"")
                inner_headers = _safe(lambda: _headers(BytesHeaderParser(policy=_POLICY).parsebytes(data)), {})
            else:
                try:
                    data = inner.as_bytes(policy=_OUT_POLICY)
                except Exception:
                    note(self.problems, "an attached message could not be re-serialised exactly")
                    data = _safe(lambda: inner.as_bytes(policy=email.policy.compat32), b"") or b""
        subject = decode_header_text(_first(inner_headers, "subject") or "", "attached subject", self.problems)
        self.attached_ids.extend(inner_headers.get("message-id", [])[:1])
        name = safe_filename(clean_line(subject, 150), "")
        filename = f"{name}.eml" if name else "forwarded-message.eml"
        self._add_attachment(filename, part.get_content_type(), data, self._content_id(part), False, named=True)

    def _add_attachment(self, filename, ctype, data, cid, is_inline, named=False):
        index = len(self.attachments) + 1
        fallback = f"attachment-{index}.eml" if ctype.startswith("message/") else f"attachment-{index}.bin"
        filename = filename if named else safe_filename(filename, fallback)
        sniffed = sniff_content_type(data, ctype, filename)
        detail = blocked_detail(filename, sniffed, self.blocked)
        if detail:
            raise MailParseError("blocked_attachment", detail)
        self.attachments.append(ParsedAttachment(filename=filename, content_type=sniffed,
                                                 declared_content_type=ctype[:127], data=data,
                                                 content_id=cid, is_inline=is_inline))

    def _check_nested_leaf(self, part, ctype):
        """Parts of an attached email are kept inside its .eml, but executables are refused there too."""
        filename = safe_filename(self._filename(part), "")
        sniffed = sniff_content_type(self._payload_bytes(part)[:64], ctype, filename)
        detail = blocked_detail(filename, sniffed, self.blocked)
        if detail:
            raise MailParseError("blocked_attachment", detail.replace("The attachment", "An attached email's file"))

    def _report_part(self, part, ctype, payload):
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            self.saw_status_part = True
        if isinstance(payload, list):  # delivery-status: the parser gives one Message per field block
            for block in payload:
                block_headers = _headers(block)
                for name in _ORIGINAL_ID_FIELDS:
                    self.original_ids.extend(block_headers.get(name, []))
            return
        fields = _safe(lambda: _headers(BytesHeaderParser(policy=_POLICY).parsebytes(self._payload_bytes(part))), {})
        if ctype in ("text/rfc822-headers", "message/global-headers"):
            self.attached_ids.extend(fields.get("message-id", []))
        for name in _ORIGINAL_ID_FIELDS:
            self.original_ids.extend(fields.get(name, []))

    def _is_bounce(self, from_address):
        if self.saw_dsn_report:
            return True
        local = from_address.split("@")[0]
        return self.saw_status_part and local in ("mailer-daemon", "postmaster")

    # -- part helpers ---------------------------------------------------------------------

    def _filename(self, part) -> str:
        name = _safe(part.get_filename) or ""
        if not isinstance(name, str):
            name = str(name)
        if "=?" in name:
            name = decode_header_text(name, "filename", self.problems)
        elif not name.isascii():
            name = raw_to_text(name, "filename", self.problems)
        return name

    def _content_id(self, part) -> str | None:
        value = part.get("content-id")
        if value is None:
            return None
        value = clean_line(raw_to_text(str(value), "Content-ID", self.problems), 500).strip("<> ")
        return value or None

    def _payload_bytes(self, part) -> bytes:
        try:
            data = part.get_payload(decode=True)
        except Exception:
            note(self.problems, "a part could not be decoded; kept as raw text")
            data = None
        if data is None:
            payload = part.get_payload()
            data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
        return data

    def _text(self, part, what) -> str:
        data = self._payload_bytes(part)
        charset = _safe(part.get_content_charset)
        text = decode_bytes(data, charset, what, self.problems)
        return text.replace("\r\n", "\n").replace("\x00", "")

    def _date(self, value):
        if value is None:
            return None
        try:
            parsed = parsedate_to_datetime(clean_line(raw_to_text(value, "Date", self.problems), 200))
            if parsed.tzinfo is None:  # "-0000": UTC, local zone unknown
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        except Exception:
            note(self.problems, f"unparseable Date header {short(value)}")
            return None


def _safe(call, default=None):
    """Run a stdlib accessor that may choke on malformed parameters; a broken header is just absent."""
    try:
        return call()
    except Exception:
        return default
