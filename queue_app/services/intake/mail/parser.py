"""Turn raw RFC 5322 bytes into a ParsedEmail the intake can trust.

Everything here assumes hostile input: headers are decoded and cleaned by hand, the sender
is validated strictly (a forged or ambiguous From must not become a requester), HTML is
sanitised with an explicit allow-list and remote images are stripped, executable
attachments are refused, and nesting/part counts are bounded before and after the stdlib
parser runs. Nothing raises except MailParseError (with a short reason code).
"""
import binascii
import codecs
import email
import email.policy
import html as html_lib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import HeaderRegistry
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import unquote

import email_validator
import nh3

log = logging.getLogger(__name__)

DEFAULT_BLOCKED_EXTENSIONS = (".exe", ".bat", ".cmd", ".com", ".scr", ".pif", ".js", ".vbs", ".msi", ".jar",
                              ".ps1", ".dll")
EXECUTABLE_TYPES = ("application/x-msdownload", "application/x-executable")
MAX_SUBJECT = 998
MAX_FILENAME = 200
MAX_REFERENCES = 50
MAX_PROBLEMS = 50
# Input caps, so that a hostile header cannot make the pure-Python parts slow.
MAX_FROM_HEADER = 2000
MAX_ADDRESS_HEADER = 100_000
MAX_ADDRESSES = 500
MAX_ID_HEADER = 100_000
MAX_SUBJECT_HEADER = 65_536


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


# --- small text helpers -----------------------------------------------------------------

# C0, DEL, C1 and the Unicode line/paragraph separators become spaces.
_CONTROL_TO_SPACE = {c: " " for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
# Bidi overrides/isolates are removed from filenames ("evil\u202Efdp.exe" looks like "evilexe.pdf").
_BIDI = {c: None for c in [0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def _clean_line(text: str, limit: int = MAX_SUBJECT) -> str:
    """One line of display text: no control characters (no header injection), single spaces."""
    return " ".join(text.translate(_CONTROL_TO_SPACE).split())[:limit]


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value).replace("\r", "").replace("\n", "")


def _raw_to_text(value: str, what: str, problems: list) -> str:
    """A raw header string (8-bit bytes kept as surrogates by the parser) as real text (UTF-8)."""
    if value.isascii():
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        _note(problems, f"undecodable bytes in {what} replaced")
        return data.decode("utf-8", "replace")


def _note(problems: list, text: str):
    if text not in problems and len(problems) < MAX_PROBLEMS:
        problems.append(text)


def _short(value: str, limit: int = 80) -> str:
    value = _clean_line(value, 10 * limit)
    return repr(value if len(value) <= limit else value[:limit] + "…")


# --- charsets ---------------------------------------------------------------------------

# Names mail actually uses for supersets Python knows under another name; tried in order.
_CHARSET_ALIASES = {
    "gb2312": ("gb18030",), "gbk": ("gb18030",), "x-gbk": ("gb18030",), "cp936": ("gb18030",),
    "iso-8859-1": ("cp1252", "latin-1"), "latin1": ("cp1252", "latin-1"), "iso8859-1": ("cp1252", "latin-1"),
    "shift_jis": ("shift_jis", "cp932"), "shift-jis": ("shift_jis", "cp932"), "sjis": ("shift_jis", "cp932"),
    "x-sjis": ("shift_jis", "cp932"), "ks_c_5601-1987": ("cp949",), "euc-kr": ("euc_kr", "cp949"),
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2"), "windows-874": ("cp874",),
    "iso-8859-8-i": ("iso-8859-8",), "unicode-1-1-utf-7": ("utf-7",),
}
# Python codecs that are not charsets anyone should decode mail with (escapes, IDNA: slow or surprising).
_UNSAFE_CODECS = {"undefined", "unicode-escape", "raw-unicode-escape", "idna", "punycode", "unicode_escape",
                  "raw_unicode_escape", "charmap", "utf-16-be", "utf-16-le", "utf-32-be", "utf-32-le"}
_US_ASCII = {"us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968", "646"}
_FALLBACK = ("utf-8", "cp1252", "latin-1")


@lru_cache(maxsize=512)
def _codecs_for(charset: str) -> tuple | None:
    """The Python codec names to try for a declared charset, or None if unknown."""
    names = _CHARSET_ALIASES.get(charset, (charset,))
    found = []
    for name in names:
        try:
            info = codecs.lookup(name)
        except (LookupError, ValueError, TypeError):
            continue
        if getattr(info, "_is_text_encoding", True) and info.name not in _UNSAFE_CODECS:
            found.append(info.name)
    return tuple(found) or None


def _decode_bytes(data: bytes, charset: str | None, what: str, problems: list) -> str:
    """Decode with the declared charset; never fails (see the fallbacks in the code)."""
    charset = (charset or "").strip().strip("\"'").lower()
    if not charset or charset in _US_ASCII:
        candidates = _FALLBACK  # undeclared or "us-ascii" with 8-bit bytes: UTF-8, then Windows, then Latin-1
    elif len(charset) > 40 or (candidates := _codecs_for(charset)) is None:
        _note(problems, f"unknown charset {_short(charset, 40)} in {what}")
        candidates = _FALLBACK
    for name in candidates:
        try:
            return data.decode(name)
        except (UnicodeError, LookupError):
            continue
    _note(problems, f"undecodable bytes in {what} replaced")
    try:
        return data.decode(candidates[0], "replace")
    except (UnicodeError, LookupError):
        return data.decode("utf-8", "replace")


# --- encoded words (RFC 2047) -----------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+?)(?:\*[^?\s]*)?\?([qQbB])\?([^?\s]*)\?=")


def _decode_header_text(value: str, what: str, problems: list) -> str:
    """Decode every encoded-word in a raw header value (any charset); raw 8-bit read as UTF-8.

    Adjacent encoded-words in one charset are joined before decoding (encoders split
    multi-byte characters across words) and the whitespace between them is dropped.
    """
    value = _unfold(value)
    if "=?" not in value:
        return _raw_to_text(value, what, problems)
    out = []  # items: str, or [charset, bytearray] runs
    pos = 0
    last_was_word = False
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos:match.start()]
        if between and not (last_was_word and not between.strip(" \t")):
            out.append(_raw_to_text(between, what, problems))
        charset, enc, text = match.group(1).lower(), match.group(2).lower(), match.group(3)
        try:
            if enc == "q":
                data = binascii.a2b_qp(text.encode("utf-8", "surrogateescape"), header=True)
            else:
                data = binascii.a2b_base64(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError, UnicodeError):
            _note(problems, f"bad encoded-word in {what} kept as text")
            out.append(_raw_to_text(match.group(0), what, problems))
            last_was_word = False
            pos = match.end()
            continue
        if out and isinstance(out[-1], list) and out[-1][0] == charset and last_was_word:
            out[-1][1] += data
        else:
            out.append([charset, bytearray(data)])
        last_was_word = True
        pos = match.end()
    if pos < len(value):
        out.append(_raw_to_text(value[pos:], what, problems))
    return "".join(item if isinstance(item, str) else _decode_bytes(bytes(item[1]), item[0], what, problems)
                   for item in out)


# --- addresses ----------------------------------------------------------------------------

class _BadAddress(ValueError):
    pass


_ADDR_SPECIALS = set('()<>[]:;@\\,"')


def _tokens(text: str):
    """Split an address header into tokens: ('q', quoted), ('c', comment), ('<', angle), ('w', word), (',' | ':' | ';').

    Raises _BadAddress on anything unbalanced (an unmatched ')' or '<', an open quote).
    """
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t":
            i += 1
        elif ch == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise _BadAddress("unterminated quoted string")
            yield "q", "".join(buf)
            i = j + 1
        elif ch == "(":
            depth, j, buf = 1, i + 1, []
            while j < n and depth:
                c = text[j]
                if c == "\\" and j + 1 < n:
                    j += 1
                    c = text[j]
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if not depth:
                        break
                buf.append(c)
                j += 1
            if depth:
                raise _BadAddress("unterminated comment")
            yield "c", "".join(buf)
            i = j + 1
        elif ch == "<":
            j = text.find(">", i + 1)
            if j < 0:
                raise _BadAddress("unterminated angle address")
            inner = text[i + 1:j]
            if any(c in inner for c in '<"()'):
                raise _BadAddress("nested angle address")
            yield "<", inner.strip(" \t")
            i = j + 1
        elif ch in ",;:":
            yield ch, ch
            i += 1
        elif ch in ">)\\":
            raise _BadAddress(f"stray {ch!r}")
        else:
            j = i
            while j < n and text[j] not in ' \t"(<>),;:\\':
                j += 1
            yield "w", text[i:j]
            i = j


@lru_cache(maxsize=4096)
def _valid_addr_spec(addr: str) -> str | None:
    """The lowercased address if it is a plain deliverable-looking addr-spec, else None."""
    local, at, domain = addr.rpartition("@")
    if not at or not local or "." not in domain.strip(".") or len(addr) > 254:
        return None
    try:
        result = email_validator.validate_email(addr, check_deliverability=False, globally_deliverable=False)
    except email_validator.EmailNotValidError:
        return None
    except Exception:  # the validator must not take the parser down with it
        return None
    return result.normalized.lower()


def _mailbox(tokens: list, problems: list) -> tuple:
    """(address, display name) of exactly one mailbox in `tokens`; raises _BadAddress otherwise."""
    kinds = [kind for kind, _ in tokens]
    if any(k in ",;:" for k in kinds):
        raise _BadAddress("more than one address, or a group")
    if kinds.count("<") > 1:
        raise _BadAddress("more than one angle address")
    if "<" in kinds:
        at = kinds.index("<")
        phrase, rest = tokens[:at], tokens[at + 1:]
        if any(kind != "c" for kind, _ in rest):
            raise _BadAddress("text after the angle address")
        if any(kind == "w" and (set(value) & _ADDR_SPECIALS) and not _ENCODED_WORD.fullmatch(value)
               for kind, value in phrase):
            raise _BadAddress("special characters in the display name")
        addr = tokens[at][1]
        name_parts = [value for kind, value in phrase if kind in "qw"]
        if not name_parts:
            name_parts = [value for kind, value in phrase + rest if kind == "c"]
    else:
        words = [value for kind, value in tokens if kind == "w"]
        if len(words) != 1 or any(kind == "q" for kind in kinds):
            raise _BadAddress("not a single addr-spec")
        addr = words[0]
        name_parts = [value for kind, value in tokens if kind == "c"]
    valid = _valid_addr_spec(addr)
    if valid is None:
        raise _BadAddress("not a valid address")
    name = _decode_header_text(" ".join(name_parts), "display name", problems) if name_parts else ""
    return valid, _clean_line(name, 200)


def _split_address_list(value: str) -> list:
    """Token lists of the mailboxes in an address-list (groups flattened); raises _BadAddress if unbalanced."""
    groups, current = [], []
    for kind, token in _tokens(value):
        if kind == ":":  # "Group name:" - drop the phrase before it
            current = []
        elif kind in ",;":
            groups.append(current)
            current = []
        else:
            current.append((kind, token))
    groups.append(current)
    return [g for g in groups if g]


def _parse_from(values: list, problems: list) -> tuple:
    if not values or not any(v.strip() for v in values):
        raise MailParseError("no_sender", "The message has no From header.")
    if len(values) > 1:
        raise MailParseError("invalid_sender", "The message has more than one From header.")
    if len(values[0]) > MAX_FROM_HEADER:
        raise MailParseError("invalid_sender", f"The From header is longer than {MAX_FROM_HEADER} characters.")
    text = _raw_to_text(_unfold(values[0]), "From", problems).strip()
    try:
        return _mailbox(list(_tokens(text)), problems)
    except _BadAddress as exc:
        raise MailParseError("invalid_sender",
                             f"The From header {_short(text)} is not one valid address ({exc}).") from None


def _parse_address_list(values: list, what: str, problems: list) -> list:
    """Valid addresses, lowercased, de-duplicated in order; the rest noted in `problems`."""
    found = {}
    for value in values:
        if len(value) > MAX_ADDRESS_HEADER:
            _note(problems, f"{what} header cut at {MAX_ADDRESS_HEADER} characters")
            value = value[:MAX_ADDRESS_HEADER]
        text = _raw_to_text(_unfold(value), what, problems)
        try:
            groups = _split_address_list(text)
        except _BadAddress:  # unbalanced somewhere: salvage the comma-separated pieces that parse alone
            groups = []
            for piece in text.split(","):
                try:
                    groups.extend(_split_address_list(piece))
                except _BadAddress:
                    _note(problems, f"invalid {what} address dropped: {_short(piece)}")
        for tokens in groups:
            if len(found) >= MAX_ADDRESSES:
                _note(problems, f"more than {MAX_ADDRESSES} {what} addresses; the rest ignored")
                break
            try:
                addr, _ = _mailbox(tokens, problems)
            except _BadAddress:
                shown = " ".join(v for _, v in tokens)
                _note(problems, f"invalid {what} address dropped: {_short(shown)}")
                continue
            found[addr] = None
    return list(found)


# --- message ids --------------------------------------------------------------------------

_ID_TOKEN = re.compile(r"<([^<>\s]*)>")


def normalise_message_id(value: str) -> str | None:
    """'<local@domain>' from a Message-ID-like value, or None (blank, no '@', whitespace inside)."""
    if not value:
        return None
    value = _unfold(str(value)).strip()
    match = _ID_TOKEN.search(value)
    if match:
        inner = match.group(1)
    elif value and not any(c in value for c in "<> \t"):
        inner = value  # a bare id (broken mailers): wrap it, so replies still thread
    else:
        return None
    local, at, domain = inner.rpartition("@")
    if not (at and local and domain) or len(inner) > 996 or not inner.isprintable():
        return None
    return f"<{inner}>"


def _message_ids(values: list, limit: int) -> list:
    """The <...@...> ids in the values, de-duplicated in order, the last `limit` kept.

    Only the tail of a huge header is read: the ids kept are the last ones anyway.
    """
    ids = {}
    for value in values:
        for token in _ID_TOKEN.findall(_unfold(value[-MAX_ID_HEADER:])):
            mid = normalise_message_id(f"<{token}>")
            if mid:
                ids.pop(mid, None)
                ids[mid] = None
    return list(ids)[-limit:]


_REF_TAG = re.compile(r"\[(BO-[0-9]{6,12})\]", re.IGNORECASE)


def extract_ref_tag(subject: str) -> str | None:
    """The work item reference in a '[BO-000123]' tag anywhere in the subject, upper-cased."""
    match = _REF_TAG.search(subject or "")
    return match.group(1).upper() if match else None


# --- HTML -----------------------------------------------------------------------------------

_HTML_TAGS = {
    "p", "br", "div", "span", "b", "strong", "i", "em", "u", "s", "sub", "sup", "small", "ul", "ol", "li",
    "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "caption", "tr", "td", "th", "blockquote", "pre",
    "code", "h1", "h2", "h3", "h4", "h5", "h6", "a", "img", "hr",
}
_HTML_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
# Dropped together with everything inside them (not just the tags).
_DROP_WITH_CONTENT = {
    "script", "style", "title", "iframe", "frame", "frameset", "noframes", "noscript", "noembed", "object",
    "embed", "applet", "template", "svg", "math", "select", "textarea", "xmp",
}
_URL_SCHEMES = {"http", "https", "mailto", "cid"}


def sanitise_html(html: str, cid_map: dict[str, str] | None = None) -> str:
    """Safe HTML for display: allow-listed tags/attributes only, and no remote content.

    An <img> keeps its src only when it is a cid: URL whose content-id is in `cid_map`
    (content-id without <> -> URL); every other image loses its src (tracking pixels,
    remote images) but keeps its alt text.
    """
    if not html:
        return ""
    lookup = dict(cid_map or {})
    folded = {str(k).lower(): v for k, v in lookup.items()}

    def attribute_filter(tag, attr, value):
        if tag == "img" and attr == "src":
            value = value.strip()
            if value[:4].lower() != "cid:":
                return None
            cid = unquote(value[4:]).strip().strip("<>")
            url = lookup.get(cid) or folded.get(cid.lower())
            return str(url) if url else None
        return value

    return nh3.clean(html, tags=_HTML_TAGS, clean_content_tags=_DROP_WITH_CONTENT, attributes=_HTML_ATTRIBUTES,
                     attribute_filter=attribute_filter, url_schemes=_URL_SCHEMES,
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


_TEXT_BLOCKS = {"p", "div", "br", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
                "hr", "table", "ul", "ol", "dl", "dt", "dd", "caption", "thead", "tbody", "tfoot", "a"}
_TAG = re.compile(r'<(/?)([a-z0-9]+)((?:\s(?:[^>"]|"[^"]*")*)?)>')
_HREF = re.compile(r'href="([^"]*)"')


def html_to_text(html: str) -> str:
    """A readable plain-text rendering: block elements on their own lines, links as 'text <url>'."""
    if not html:
        return ""
    # nh3 leaves only these tags, attribute-free except a/href, with text entity-escaped,
    # so the regex below sees well-formed markup and every '<' in text is '&lt;'.
    cleaned = nh3.clean(html, tags=_TEXT_BLOCKS, clean_content_tags=_DROP_WITH_CONTENT, attributes={"a": {"href"}},
                        url_schemes={"http", "https", "mailto"}, link_rel=None, strip_comments=True)
    out, in_pre, href, link_start = [], 0, None, 0
    pos = 0
    for match in _TAG.finditer(cleaned):
        _text_chunk(out, cleaned[pos:match.start()], in_pre)
        pos = match.end()
        closing, tag, attrs = match.group(1), match.group(2), match.group(3)
        if tag == "a":
            if not closing:
                found = _HREF.search(attrs)
                href, link_start = (html_lib.unescape(found.group(1)) if found else None), len(out)
            elif href:
                label = "".join(out[link_start:]).strip()
                target = href.removeprefix("mailto:")
                if target and target != label:
                    out.append(f" <{target}>")
                href = None
            continue
        if tag == "pre":
            in_pre += -1 if closing else 1
            in_pre = max(in_pre, 0)
        if tag == "br":
            out.append("\n")
        elif tag == "hr":
            out.append("\n----------\n")
        elif tag in ("td", "th"):
            if not closing and out and not out[-1].endswith(("\n", " ")):
                out.append(" ")
        elif tag == "li":
            if not closing:
                out.append("\n- ")
        elif tag == "tr" and not closing:
            pass
        else:
            out.append("\n")
    _text_chunk(out, cleaned[pos:], in_pre)
    text = "\n".join(line.rstrip() for line in "".join(out).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _text_chunk(out: list, chunk: str, in_pre: int):
    if not chunk:
        return
    if not in_pre:
        chunk = re.sub(r"[ \t\r\n\f]+", " ", chunk)
        if not out or out[-1].endswith(("\n", " ")):
            chunk = chunk.lstrip(" ")
    out.append(html_lib.unescape(chunk).replace("\xa0", " "))


# --- attachments --------------------------------------------------------------------------

_OOXML = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
_SNIFF_TEXT_BYTES = 65536


def sniff_content_type(data: bytes, declared: str = "application/octet-stream", filename: str = "") -> str:
    """The content type from the bytes themselves (the declared one is attacker-chosen).

    Only message/rfc822 (and message/global) keep their declared type: they are whole emails.
    """
    declared = (declared or "").split(";")[0].strip().lower()
    if declared in ("message/rfc822", "message/global"):
        return declared
    head = data[:16]
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        ext = _extension(filename)
        return _OOXML.get(ext, "application/zip")
    if head.startswith(b"MZ"):
        return "application/x-msdownload"
    if head.startswith(b"\x7fELF"):
        return "application/x-executable"
    if head.startswith(b"#!"):
        return "text/x-shellscript"
    sample = data[:_SNIFF_TEXT_BYTES]
    if b"\x00" not in sample:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(data) <= _SNIFF_TEXT_BYTES)
            return "text/plain"
        except UnicodeDecodeError:
            pass
    return "application/octet-stream"


def _extension(filename: str) -> str:
    name = (filename or "").lower()
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def _safe_filename(name: str, fallback: str) -> str:
    """A filename safe to store and offer for download: no path, no control or bidi characters."""
    name = (name or "").translate(_BIDI)
    name = re.split(r"[/\\]", name)[-1]
    name = _clean_line(name, 1000)
    name = re.sub(r'[<>:"|?*]', "_", name).strip(" .")
    if not name:
        return fallback
    if name.split(".")[0].lower() in _WINDOWS_RESERVED:
        name = "_" + name
    if len(name) > MAX_FILENAME:
        ext = _extension(name)
        ext = ext if len(ext) <= 20 else ""
        name = name[:MAX_FILENAME - len(ext)].rstrip(" .") + ext
    return name


def _blocked_detail(filename: str, content_type: str, blocked: tuple) -> str | None:
    lowered = filename.lower()
    for ext in blocked:
        if lowered.endswith(ext):
            return f"The attachment {filename!r} has a blocked file type ({ext})."
    if content_type in EXECUTABLE_TYPES:
        return f"The attachment {filename!r} is an executable program ({content_type})."
    return None


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
        subject = _clean_line(_decode_header_text(raw_subject, "subject", problems))
        reply_to = _parse_address_list(headers.get("reply-to", []), "Reply-To", problems)
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
            in_reply_to=_message_ids(headers.get("in-reply-to", []), MAX_REFERENCES),
            references=_message_ids(headers.get("references", []), MAX_REFERENCES),
            subject=subject,
            from_address=from_address,
            from_name=from_name,
            to=_parse_address_list(headers.get("to", []), "To", problems),
            cc=_parse_address_list(headers.get("cc", []), "Cc", problems),
            reply_to=reply_to[0] if reply_to else None,
            date=self._date(_first(headers, "date")),
            body_text=body_text or "",
            body_html=body_html,
            attachments=self.attachments,
            auto_submitted=auto is not None and auto.strip().split(";")[0].strip().lower() != "no",
            bulk=precedence in ("bulk", "junk", "list") or "list-id" in headers or "list-unsubscribe" in headers,
            is_bounce=is_bounce,
            bounced_message_ids=_message_ids(self.attached_ids + self.original_ids, MAX_REFERENCES)
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
            _note(self.problems, f"MIME defect: {name}")

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
                    _note(self.problems, "an attached message could not be re-serialised exactly")
                    data = _safe(lambda: inner.as_bytes(policy=email.policy.compat32), b"") or b""
        subject = _decode_header_text(_first(inner_headers, "subject") or "", "attached subject", self.problems)
        self.attached_ids.extend(inner_headers.get("message-id", [])[:1])
        name = _safe_filename(_clean_line(subject, 150), "")
        filename = f"{name}.eml" if name else "forwarded-message.eml"
        self._add_attachment(filename, part.get_content_type(), data, self._content_id(part), False, named=True)

    def _add_attachment(self, filename, ctype, data, cid, is_inline, named=False):
        index = len(self.attachments) + 1
        fallback = f"attachment-{index}.eml" if ctype.startswith("message/") else f"attachment-{index}.bin"
        filename = filename if named else _safe_filename(filename, fallback)
        sniffed = sniff_content_type(data, ctype, filename)
        detail = _blocked_detail(filename, sniffed, self.blocked)
        if detail:
            raise MailParseError("blocked_attachment", detail)
        self.attachments.append(ParsedAttachment(filename=filename, content_type=sniffed,
                                                 declared_content_type=ctype[:127], data=data,
                                                 content_id=cid, is_inline=is_inline))

    def _check_nested_leaf(self, part, ctype):
        """Parts of an attached email are kept inside its .eml, but executables are refused there too."""
        filename = _safe_filename(self._filename(part), "")
        sniffed = sniff_content_type(self._payload_bytes(part)[:64], ctype, filename)
        detail = _blocked_detail(filename, sniffed, self.blocked)
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
            name = _decode_header_text(name, "filename", self.problems)
        elif not name.isascii():
            name = _raw_to_text(name, "filename", self.problems)
        return name

    def _content_id(self, part) -> str | None:
        value = part.get("content-id")
        if value is None:
            return None
        value = _clean_line(_raw_to_text(str(value), "Content-ID", self.problems), 500).strip("<> ")
        return value or None

    def _payload_bytes(self, part) -> bytes:
        try:
            data = part.get_payload(decode=True)
        except Exception:
            _note(self.problems, "a part could not be decoded; kept as raw text")
            data = None
        if data is None:
            payload = part.get_payload()
            data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
        return data

    def _text(self, part, what) -> str:
        data = self._payload_bytes(part)
        charset = _safe(part.get_content_charset)
        text = _decode_bytes(data, charset, what, self.problems)
        return text.replace("\r\n", "\n").replace("\x00", "")

    def _date(self, value):
        if value is None:
            return None
        try:
            parsed = parsedate_to_datetime(_clean_line(_raw_to_text(value, "Date", self.problems), 200))
            if parsed.tzinfo is None:  # "-0000": UTC, local zone unknown
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        except Exception:
            _note(self.problems, f"unparseable Date header {_short(value)}")
            return None


def _safe(call, default=None):
    """Run a stdlib accessor that may choke on malformed parameters; a broken header is just absent."""
    try:
        return call()
    except Exception:
        return default
