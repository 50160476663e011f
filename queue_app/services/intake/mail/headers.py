"""Header text of inbound mail: charsets, encoded words, addresses, Message-IDs and the [BO-...] tag.

Pure string work on hostile values, bounded by the input caps below; it needs nothing of the
MIME tree, so it stands apart from the walk in parser.py (attachments.py uses clean_line too).
"""
import binascii
import codecs
import re
from functools import lru_cache

import email_validator

# RFC 5322 line limit: decoded header text (the subject) is cut to it.
MAX_HEADER_LINE = 998
MAX_PROBLEMS = 50
# Input caps, so that a hostile header cannot make the pure-Python parts slow.
MAX_FROM_HEADER = 2000
MAX_ADDRESS_HEADER = 100_000
MAX_ADDRESSES = 500
MAX_ID_HEADER = 100_000
MAX_SUBJECT_HEADER = 65_536


# --- small text helpers -----------------------------------------------------------------

# C0, DEL, C1 and the Unicode line/paragraph separators become spaces.
_CONTROL_TO_SPACE = {c: " " for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


def clean_line(text: str, limit: int = MAX_HEADER_LINE) -> str:
    """One line of display text: no control characters (no header injection), single spaces."""
    return " ".join(text.translate(_CONTROL_TO_SPACE).split())[:limit]


def unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value).replace("\r", "").replace("\n", "")


def raw_to_text(value: str, what: str, problems: list) -> str:
    """A raw header string (8-bit bytes kept as surrogates by the parser) as real text (UTF-8)."""
    if value.isascii():
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        note(problems, f"undecodable bytes in {what} replaced")
        return data.decode("utf-8", "replace")


def note(problems: list, text: str):
    if text not in problems and len(problems) < MAX_PROBLEMS:
        problems.append(text)


def short(value: str, limit: int = 80) -> str:
    value = clean_line(value, 10 * limit)
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


def decode_bytes(data: bytes, charset: str | None, what: str, problems: list) -> str:
    """Decode with the declared charset; never fails (see the fallbacks in the code)."""
    charset = (charset or "").strip().strip("\"'").lower()
    if not charset or charset in _US_ASCII:
        candidates = _FALLBACK  # undeclared or "us-ascii" with 8-bit bytes: UTF-8, then Windows, then Latin-1
    elif len(charset) > 40 or (candidates := _codecs_for(charset)) is None:
        note(problems, f"unknown charset {short(charset, 40)} in {what}")
        candidates = _FALLBACK
    for name in candidates:
        try:
            return data.decode(name)
        except (UnicodeError, LookupError):
            continue
    note(problems, f"undecodable bytes in {what} replaced")
    try:
        return data.decode(candidates[0], "replace")
    except (UnicodeError, LookupError):
        return data.decode("utf-8", "replace")


# --- encoded words (RFC 2047) -----------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+?)(?:\*[^?\s]*)?\?([qQbB])\?([^?\s]*)\?=")


def decode_header_text(value: str, what: str, problems: list) -> str:
    """Decode every encoded-word in a raw header value (any charset); raw 8-bit read as UTF-8.

    Adjacent encoded-words in one charset are joined before decoding (encoders split
    multi-byte characters across words) and the whitespace between them is dropped.
    """
    value = unfold(value)
    if "=?" not in value:
        return raw_to_text(value, what, problems)
    out = []  # items: str, or [charset, bytearray] runs
    pos = 0
    last_was_word = False
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos:match.start()]
        if between and not (last_was_word and not between.strip(" \t")):
            out.append(raw_to_text(between, what, problems))
        charset, enc, text = match.group(1).lower(), match.group(2).lower(), match.group(3)
        try:
            if enc == "q":
                data = binascii.a2b_qp(text.encode("utf-8", "surrogateescape"), header=True)
            else:
                data = binascii.a2b_base64(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError, UnicodeError):
            note(problems, f"bad encoded-word in {what} kept as text")
            out.append(raw_to_text(match.group(0), what, problems))
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
        out.append(raw_to_text(value[pos:], what, problems))
    return "".join(item if isinstance(item, str) else decode_bytes(bytes(item[1]), item[0], what, problems)
                   for item in out)


# --- addresses ----------------------------------------------------------------------------

class BadAddress(ValueError):
    pass


_ADDR_SPECIALS = set('()<>[]:;@\\,"')


def tokens(text: str):
    """Split an address header into tokens: ('q', quoted), ('c', comment), ('<', angle), ('w', word), (',' | ':' | ';').

    Raises BadAddress on anything unbalanced (an unmatched ')' or '<', an open quote).
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
                raise BadAddress("unterminated quoted string")
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
                raise BadAddress("unterminated comment")
            yield "c", "".join(buf)
            i = j + 1
        elif ch == "<":
            j = text.find(">", i + 1)
            if j < 0:
                raise BadAddress("unterminated angle address")
            inner = text[i + 1:j]
            if any(c in inner for c in '<"()'):
                raise BadAddress("nested angle address")
            yield "<", inner.strip(" \t")
            i = j + 1
        elif ch in ",;:":
            yield ch, ch
            i += 1
        elif ch in ">)\\":
            raise BadAddress(f"stray {ch!r}")
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


def mailbox(tokens: list, problems: list) -> tuple:
    """(address, display name) of exactly one mailbox in `tokens`; raises BadAddress otherwise."""
    kinds = [kind for kind, _ in tokens]
    if any(k in ",;:" for k in kinds):
        raise BadAddress("more than one address, or a group")
    if kinds.count("<") > 1:
        raise BadAddress("more than one angle address")
    if "<" in kinds:
        at = kinds.index("<")
        phrase, rest = tokens[:at], tokens[at + 1:]
        if any(kind != "c" for kind, _ in rest):
            raise BadAddress("text after the angle address")
        if any(kind == "w" and (set(value) & _ADDR_SPECIALS) and not _ENCODED_WORD.fullmatch(value)
               for kind, value in phrase):
            raise BadAddress("special characters in the display name")
        addr = tokens[at][1]
        name_parts = [value for kind, value in phrase if kind in "qw"]
        if not name_parts:
            name_parts = [value for kind, value in phrase + rest if kind == "c"]
    else:
        words = [value for kind, value in tokens if kind == "w"]
        if len(words) != 1 or any(kind == "q" for kind in kinds):
            raise BadAddress("not a single addr-spec")
        addr = words[0]
        name_parts = [value for kind, value in tokens if kind == "c"]
    valid = _valid_addr_spec(addr)
    if valid is None:
        raise BadAddress("not a valid address")
    name = decode_header_text(" ".join(name_parts), "display name", problems) if name_parts else ""
    return valid, clean_line(name, 200)


def _split_address_list(value: str) -> list:
    """Token lists of the mailboxes in an address-list (groups flattened); raises BadAddress if unbalanced."""
    groups, current = [], []
    for kind, token in tokens(value):
        if kind == ":":  # "Group name:" - drop the phrase before it
            current = []
        elif kind in ",;":
            groups.append(current)
            current = []
        else:
            current.append((kind, token))
    groups.append(current)
    return [g for g in groups if g]



def parse_address_list(values: list, what: str, problems: list) -> list:
    """Valid addresses, lowercased, de-duplicated in order; the rest noted in `problems`."""
    found = {}
    for value in values:
        if len(value) > MAX_ADDRESS_HEADER:
            note(problems, f"{what} header cut at {MAX_ADDRESS_HEADER} characters")
            value = value[:MAX_ADDRESS_HEADER]
        text = raw_to_text(unfold(value), what, problems)
        try:
            groups = _split_address_list(text)
        except BadAddress:  # unbalanced somewhere: salvage the comma-separated pieces that parse alone
            groups = []
            for piece in text.split(","):
                try:
                    groups.extend(_split_address_list(piece))
                except BadAddress:
                    note(problems, f"invalid {what} address dropped: {short(piece)}")
        for tokens in groups:
            if len(found) >= MAX_ADDRESSES:
                note(problems, f"more than {MAX_ADDRESSES} {what} addresses; the rest ignored")
                break
            try:
                addr, _ = mailbox(tokens, problems)
            except BadAddress:
                shown = " ".join(v for _, v in tokens)
                note(problems, f"invalid {what} address dropped: {short(shown)}")
                continue
            found[addr] = None
    return list(found)


# --- message ids --------------------------------------------------------------------------

_ID_TOKEN = re.compile(r"<([^<>\s]*)>")


def normalise_message_id(value: str) -> str | None:
    """'<local@domain>' from a Message-ID-like value, or None (blank, no '@', whitespace inside)."""
    if not value:
        return None
    value = unfold(str(value)).strip()
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


def message_ids(values: list, limit: int) -> list:
    """The <...@...> ids in the values, de-duplicated in order, the last `limit` kept.

    Only the tail of a huge header is read: the ids kept are the last ones anyway.
    """
    ids = {}
    for value in values:
        for token in _ID_TOKEN.findall(unfold(value[-MAX_ID_HEADER:])):
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
