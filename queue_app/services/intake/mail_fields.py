"""Work item fields taken from an incoming email's subject and body (order number, amounts,
currency, document number and expiry, IBAN or account reference), so a return that says
"Return for order ORD-778899" does not wait for someone to copy the number across.

Rules:
- A field is taken only when it is unambiguous: every match of its patterns gives the same
  value (after normalising: "1.234,56 €" and "EUR 1,234.56" are the same amount). Two
  different order numbers in one mail give no order number.
- Quoted reply lines (starting with ">") are not read: they are someone else's words.
- What is found goes through the same validation as the API (work_types.validate_fields); a
  value it refuses is not taken. An IBAN must pass its mod-97 check.
- Each pattern is a regular expression with exactly one capture group, matched without
  regard to case; one that repeats an unlimited repeat, such as (a+)+, is refused, as it can
  run for hours on a mail that almost matches. For each field, a team's active patterns replace the defaults below;
  fields the team has no pattern for use the defaults.
- Patterns are compiled once per process and read once per transaction (db.config_cache),
  so the bulk import does not pay for them per message.
"""
import logging
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from re import _constants, _parser  # the parse tree, to refuse patterns that can run for hours

import sqlalchemy as sa

from queue_app.db.config_cache import cached
from queue_app.models import MailFieldPattern
from queue_app.services.checks.rules import iban
from queue_app.services.errors import Invalid
from queue_app.services.items.work_types import FIELDS, validate_fields

log = logging.getLogger(__name__)
MAX_SCAN = 20_000  # characters of the body read: requests say what they are about near the top
FLAGS = re.IGNORECASE
# Field kinds a pattern can fill (free text and choices are for people to write).
EXTRACTABLE_KINDS = ("string", "decimal", "currency", "date", "ref")
EXTRACTABLE_FIELDS = tuple(sorted({spec.name for specs in FIELDS.values() for spec in specs
                                   if spec.kind in EXTRACTABLE_KINDS}))
_KIND = {spec.name: spec.kind for specs in FIELDS.values() for spec in specs}

# --- the default patterns (English, German, Spanish, French) -------------------------------------------

CODES = ("EUR", "GBP", "USD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "RON", "BGN", "JPY", "CNY", "INR",
         "AUD", "CAD", "NZD", "SGD", "HKD", "ZAR", "MXN", "BRL", "TRY")
# A bare "$" or "¥" is left alone: it does not say which dollar or yen.
SYMBOLS = {"US$": "USD", "€": "EUR", "£": "GBP", "₹": "INR"}
_SP = r"[^\S\n]"  # a space within a line
# Codes in capitals only: "eur" in running text is more often something else.
CUR = r"(?:US\$|[€£₹]|\b(?-i:" + "|".join(CODES) + r")\b)"
# 1.234,56  1,234.56  1 234,56  1234,56  45  12.50 (grouped by three, or not grouped at all).
# It starts with the digit itself (the look-behind after it), so the regex engine can skip to digits.
NUM = (r"\d(?<![\d.,]\d)(?:\d{0,2}(?:(?:[.,'\u00a0\u202f]| (?=\d{3}(?!\d)))\d{3})+|\d*)"
       r"(?:[.,]\d{1,2})?(?!\d|[.,]\d)")
AMOUNT = rf"(?:{CUR}{_SP}?)?{NUM}(?:{_SP}?{CUR})?"
# An amount with its currency, as three patterns that each start with something rare (a digit, a
# symbol, a capital letter): one alternation of the three is several times slower.
MONEY = (rf"({NUM}{_SP}?{CUR})", rf"((?:US\$|[€£₹]){_SP}?{NUM})",
         rf"((?-i:[A-Z]{{3}})(?<=\b(?:{'|'.join(CODES)})){_SP}?{NUM})")
MONEY_LABELS = ("an amount then its currency: 1.234,56 €, 45,00 EUR",
                "a currency symbol then the amount: €1,234.56, £12.50",
                "an ISO code then the amount: EUR 45")
NO = r"(?:number|nummer|n[úu]mero|num[ée]ro|n[°º]\.?|n\.[°º]|no\.?|nr\.?|núm\.?|num\.?|id|#)"
NOT_A_DATE = r"(?!\d{1,2}[./-]\d{1,2}[./-]\d{2,4}(?!\w))"


def _identifier(min_more, max_more, extra=""):
    """An identifier with at least one digit in it (so "order was damaged" finds no order number)."""
    chars = rf"A-Z0-9/\-{extra}"
    return rf"{NOT_A_DATE}((?=[A-Z/\-{extra}]*\d)[A-Z0-9][{chars}]{{{min_more},{max_more}}})(?![{chars}])"


def _keyed(keywords, value, *, numbered=True, separator=r"[\s:#=]{0,3}"):
    """`value` (holding the capture group) right after one of `keywords`, optionally followed by
    "number", "Nr.", "n°", ... and a colon."""
    number = rf"(?:[\s\-]*{NO})?" if numbered else ""
    return rf"(?<!\w)(?:{keywords})(?!\w){number}{separator}{value}"


_ORDER_WORDS = (r"order|bestellung|bestellnummer|bestellnr\.?|bestell-nr\.?|auftragsnummer|auftrag|pedido|"
                r"commande")
_DOCUMENT_WORDS = (r"document|passport|id{0}card|identity{0}card|ausweisnummer|ausweis|personalausweis|"
                   r"reisepassnummer|reisepass|passnummer|dokumentennummer|dokumentnummer|dokument|documento|"
                   r"pasaporte|dni|passeport|pi[èe]ce{0}d['’]identit[ée]|carte{0}d['’]identit[ée]").format(_SP + "+")
_EXPIRY_WORDS = (r"expires?{0}on|expires|expiry{0}date|expiry|expiration{0}date|expiration|"
                 r"valid{0}(?:until|till|through|to)|g[üu]ltig{0}bis(?:{0}zum)?|ablaufdatum|l[äa]uft{0}am|"
                 r"caduca{0}el|caduca|fecha{0}de{0}(?:caducidad|vencimiento)|caducidad|"
                 r"v[áa]lido{0}hasta(?:{0}el)?|vence{0}el|vence|expire{0}le|expire|"
                 r"date{0}d['’]expiration|valable{0}jusqu['’]au|valide{0}jusqu['’]au").format(_SP + "+")
_AMOUNT_WORDS = r"amount|refund|betrag|erstattungsbetrag|summe|importe|reembolso|montant|remboursement"
_EXPECTED_WORDS = (r"expected{0}amount|expected|should{0}(?:be|have{0}been)|erwartete[rn]?{0}betrag|erwartet|"
                   r"soll-?betrag|importe{0}esperado|esperado|deber[íi]a{0}ser|montant{0}attendu|attendu|"
                   r"pr[ée]vu").format(_SP + "+")
_ACTUAL_WORDS = (r"actual{0}amount|actual|received|charged|booked|tats[äa]chliche[rn]?{0}betrag|tats[äa]chlich|"
                 r"ist-?betrag|erhalten|gebucht|importe{0}real|importe{0}cobrado|cobrado|recibido|"
                 r"montant{0}r[ée]el|r[ée]el|re[çc]u|d[ée]bit[ée]").format(_SP + "+")
_ACCOUNT_WORDS = (r"account|acct\.?|kundenkonto|kontonummer|konto|kundennummer|cuenta|n[úu]mero{0}de{0}cliente|"
                  r"compte|r[ée]f[ée]rence{0}client").format(_SP + "+")
_IBAN_START = r"(?![A-Z]{2}\d{2}[ ]?[A-Z0-9]{4})"
_AMOUNT_SEPARATOR = rf"(?:{_SP}*[:=]|{_SP}+(?:of|von|über|de|du|des)(?!\w)){_SP}*"


@dataclass(frozen=True)
class Pattern:
    field: str
    regex: str
    label: str = ""  # what it looks for, for the admin page
    # Text that must be in a mail (lower-cased) for the regex to match, or a regex that must find
    # something: a cheap test that spares the bulk import most of the regex work.
    hints: tuple | str = ()


# The first and third start with a digit or a capital letter, which the engine skips to as fast as a test would.
_MONEY_HINTS = ((), ("€", "£", "₹", "$"), ())


DEFAULT_PATTERNS = (
    Pattern("order_number", _keyed(_ORDER_WORDS, _identifier(2, 31)),
            "order / Bestellung / pedido / commande, then the number",
            ("order", "bestell", "auftrag", "pedido", "commande")),
    # "Refund 2 items" is no amount: after the word, a colon or "of" / "von" / "de" first.
    Pattern("amount", _keyed(_AMOUNT_WORDS, f"({AMOUNT})", numbered=False, separator=_AMOUNT_SEPARATOR),
            "amount / refund / Betrag / importe / montant, then the amount",
            ("amount", "refund", "betrag", "summe", "importe", "reembolso", "montant", "rembourse")),
    *(Pattern("amount", regex, label, hints) for regex, label, hints in
      zip(MONEY, MONEY_LABELS, _MONEY_HINTS)),
    Pattern("expected_amount", _keyed(_EXPECTED_WORDS, f"({AMOUNT})", numbered=False),
            "expected / erwartet / Soll-Betrag / esperado / attendu, then the amount",
            ("expected", "should", "erwartet", "soll", "esperado", "deber", "attendu", "prévu", "prevu")),
    Pattern("actual_amount", _keyed(_ACTUAL_WORDS, f"({AMOUNT})", numbered=False),
            "actual / received / Ist-Betrag / recibido / reçu, then the amount",
            ("actual", "received", "charged", "booked", "tatsächlich", "tatsachlich", "ist", "erhalten", "gebucht",
             "real", "cobrado", "recibido", "réel", "reel", "reçu", "recu", "débit", "debit")),
    *(Pattern("currency", regex, "the currency of " + label, hints) for regex, label, hints in
      zip(MONEY, MONEY_LABELS, _MONEY_HINTS)),
    Pattern("currency", _keyed(r"currency|w[äa]hrung|moneda|divisa|devise", r"([A-Z]{3})(?![A-Z])", numbered=False),
            "currency / Währung / moneda / devise, then the ISO code",
            ("currency", "währung", "wahrung", "moneda", "divisa", "devise")),
    Pattern("document_number", _keyed(_DOCUMENT_WORDS, _identifier(1, 63)),
            "document / passport / Ausweisnummer / número de documento / numéro de document, then the number",
            ("document", "passport", "passeport", "pasaporte", "card", "identit", "ausweis", "reisepass", "passnummer",
             "dokument", "dni", "pièce", "piece")),
    Pattern("expires_on", _keyed(_EXPIRY_WORDS, r"(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{4})(?!\d)",
                                 numbered=False),
            "expires / gültig bis / caduca el / expire le, then the date (day first, or ISO)",
            ("expir", "valid", "gültig", "gultig", "ablauf", "läuft", "lauft", "caduc", "vencimiento", "válido", "vence",
             "valable")),
    Pattern("account", r"(?<![A-Z0-9])((?-i:[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?))"
                       r"(?![A-Za-z0-9])", "an IBAN (its mod-97 check must hold)", r"[A-Z]{2}\d\d"),
    Pattern("account", _keyed(_ACCOUNT_WORDS, _IBAN_START + _identifier(0, 63, extra=".")),
            "account / Konto / cuenta / compte, then the reference",
            ("account", "acct", "konto", "kunden", "cuenta", "cliente", "compte", "client")),
)


# --- compiling and reading patterns ----------------------------------------------------------------------

_compiled = {}
MAX_COMPILED = 2000


def pattern_problem(regex):
    """Why `regex` cannot be a field pattern (for a person to read), or None when it can."""
    if not isinstance(regex, str) or not regex.strip():
        return "enter a regular expression"
    try:
        compiled = re.compile(regex, FLAGS)
    except re.error as exc:
        return f"is not a valid regular expression: {exc}"
    except (RecursionError, OverflowError, ValueError):
        return "is not a valid regular expression"
    if compiled.groups != 1:
        return f"must have exactly one capture group, the value to take (it has {compiled.groups}); " \
               "use (?:...) for other groups"
    if _nested_repeat(_parser.parse(regex, FLAGS)):
        return "repeats a group that itself repeats without limit, such as (a+)+: on some mails that " \
               "takes hours; give the inner repeat a limit, such as {1,20}"
    return None


def _nested_repeat(items, inside=False):
    """Does an unlimited repeat hold another unlimited repeat (the kind of regex that can run for
    hours on a mail that almost matches)?"""
    for op, av in items:
        if op in (_constants.MAX_REPEAT, _constants.MIN_REPEAT, _constants.POSSESSIVE_REPEAT):
            low, high, sub = av
            unlimited = high == _constants.MAXREPEAT
            if unlimited and inside:
                return True
            if _nested_repeat(sub, inside or unlimited):
                return True
            continue
        for part in av if isinstance(av, (list, tuple)) else ():
            if isinstance(part, _parser.SubPattern) and _nested_repeat(part, inside):
                return True
            if isinstance(part, (list, tuple)):
                for sub in part:
                    if isinstance(sub, _parser.SubPattern) and _nested_repeat(sub, inside):
                        return True
    return False


def compile_pattern(regex):
    """The compiled expression, compiled once per process."""
    found = _compiled.get(regex)
    if found is None:
        if len(_compiled) >= MAX_COMPILED:
            _compiled.clear()
        found = _compiled[regex] = re.compile(regex, FLAGS)
    return found


def _hint(hints):
    """A test of the lower-cased and the original text: False when the pattern cannot match."""
    if not hints:
        return None
    if isinstance(hints, str):
        search = re.compile(hints).search
        return lambda text, low: search(text) is not None
    return lambda text, low: any(hint in low for hint in hints)


_DEFAULTS = {}
for _pattern in DEFAULT_PATTERNS:
    _DEFAULTS.setdefault(_pattern.field, []).append((compile_pattern(_pattern.regex), _hint(_pattern.hints)))
_DEFAULTS = {name: tuple(found) for name, found in _DEFAULTS.items()}


def team_patterns(session, team_id):
    """{field: ((compiled, hint), ...)} for a team: its own active patterns per field, the defaults for the
    other fields. Read once per transaction inside db.config_cache (the bulk import)."""
    by_team = cached(session, "mail_field_patterns", lambda: _load(session))
    own = by_team.get(team_id)
    if not own:
        return _DEFAULTS
    return {**_DEFAULTS, **own}


def _load(session):
    by_team = {}
    rows = session.execute(sa.select(MailFieldPattern.team_id, MailFieldPattern.field, MailFieldPattern.pattern)
                           .where(MailFieldPattern.active.is_(True))
                           .order_by(MailFieldPattern.position, MailFieldPattern.id)).all()
    for team_id, name, regex in rows:
        if pattern_problem(regex) is None:  # saved ones are checked; this keeps a bad row from stopping intake
            by_team.setdefault(team_id, {}).setdefault(name, []).append((compile_pattern(regex), None))
    return {team_id: {name: tuple(found) for name, found in fields.items()} for team_id, fields in by_team.items()}


# --- reading values ----------------------------------------------------------------------------------

_NUMBER_IN = re.compile(r"\d[\d.,'\u00a0\u202f ]*")
_SPACES = re.compile(r"[\s'\u00a0\u202f]")
_SEPARATORS = re.compile(r"[.,]")
_CODE_IN = re.compile(r"(?<![A-Za-z])(" + "|".join(CODES) + r")(?![A-Za-z])", re.IGNORECASE)
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DAY_FIRST = re.compile(r"(\d{1,2})[./-](\d{1,2})[./-](\d{4})")
_IBAN_SHAPE = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}")


def parse_amount(text):
    """"1.234,56 €", "€1,234.56", "EUR 45", "45,00" -> "1234.56", "1234.56", "45", "45.00"; None
    if no plain number is in it. The last separator followed by one or two digits is the decimal
    one; a separator followed by three digits groups thousands."""
    match = _NUMBER_IN.search(text or "")
    if match is None:
        return None
    number = _SPACES.sub("", match.group().rstrip(".,' \u00a0\u202f"))
    head, sep, tail = max(number.rpartition(","), number.rpartition("."), key=lambda parts: len(parts[0]))
    if sep and len(tail) in (1, 2):
        whole, decimals = head, tail
    else:
        whole, decimals = number, ""
    groups = _SEPARATORS.split(whole)
    if len(groups) > 1 and (not 1 <= len(groups[0]) <= 3 or any(len(g) != 3 for g in groups[1:])):
        return None
    digits = "".join(groups)
    if not digits.isdigit():
        return None
    try:
        return str(Decimal(f"{digits}.{decimals}" if decimals else digits))
    except InvalidOperation:
        return None


def parse_currency(text):
    """The ISO code of the symbol or code in `text` ("45,00 €" -> "EUR"), or None."""
    text = text or ""
    for symbol, code in SYMBOLS.items():
        if symbol in text:
            return code
    match = _CODE_IN.search(text)
    if match is not None:
        return match.group(1).upper()
    stripped = text.strip()
    return stripped.upper() if re.fullmatch(r"[A-Za-z]{3}", stripped) else None


def parse_date(text):
    """"31/12/2030", "31.12.2030", "2030-12-31" -> "2030-12-31" (day first, as in Europe); None otherwise."""
    text = (text or "").strip()
    match = _ISO_DATE.fullmatch(text)
    if match is not None:
        year, month, day = (int(g) for g in match.groups())
    else:
        match = _DAY_FIRST.fullmatch(text)
        if match is None:
            return None
        day, month, year = (int(g) for g in match.groups())
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def parse_account(text):
    """An IBAN without its spaces (cut to its country's length, so a word caught after it does not
    spoil it), or an account reference as written; Invalid for an IBAN that fails its check."""
    text = (text or "").strip().rstrip(".-/")
    compact = re.sub(r"\s", "", text).upper()
    if not _IBAN_SHAPE.fullmatch(compact) and not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9 ]{11,40}", text.upper()):
        return text
    expected = iban.LENGTHS.get(compact[:2])
    if expected is not None and len(compact) > expected:
        compact = compact[:expected]
    problem = iban.problem(compact)
    if problem is not None:
        raise Invalid(f"IBAN {compact} {problem}", {"account": f"IBAN {problem}"})
    return compact


def normalise(name, text):
    """The value a capture gives for field `name`, as validate_fields takes it; None when it gives none.
    Invalid when it is the kind of value the field takes but not a valid one (an IBAN that fails mod-97)."""
    kind = _KIND.get(name)
    if kind == "decimal":
        return parse_amount(text)
    if kind == "currency":
        return parse_currency(text)
    if kind == "date":
        return parse_date(text)
    if name == "account":
        return parse_account(text) or None
    text = (text or "").strip().rstrip(".-/,;:")
    return (text.upper() if kind == "ref" else text) or None


def _key(value):
    return value.upper() if isinstance(value, str) else value


# --- the extraction ---------------------------------------------------------------------------------

@dataclass
class Found:
    """What an email gives: `values` (name -> text for validate_fields) and, for the admin page's
    "try it" box, why other fields were not taken (`notes`)."""

    values: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)


def unquoted(body):
    """The body without quoted reply lines (those starting with ">")."""
    body = (body or "")[:MAX_SCAN]
    if ">" not in body:
        return body
    return "\n".join(line for line in body.splitlines() if not line.lstrip().startswith(">"))


def extract(work_type, subject, body, patterns=None):
    """The fields of a `work_type` item an email's `subject` and plain-text `body` give unambiguously.

    `patterns`: {field: ((compiled, hint or None), ...)} (team_patterns); the defaults when None.
    """
    found = Found()
    specs = FIELDS.get(work_type) or ()
    patterns = _DEFAULTS if patterns is None else patterns
    wanted = [spec.name for spec in specs if spec.kind in EXTRACTABLE_KINDS and patterns.get(spec.name)]
    if not wanted:
        return found
    text = f"{subject or ''}\n{unquoted(body)}"
    low = text.lower()
    captured = {}  # id(compiled) -> its captures (amount and currency share patterns); hashing one is slow
    candidates = {}
    for name in wanted:
        values = {}
        for compiled, hint in patterns[name]:
            if hint is not None and not hint(text, low):
                continue
            key = id(compiled)
            if key not in captured:
                captured[key] = [match.group(1) for match in compiled.finditer(text)]
            for capture in captured[key]:
                try:
                    value = normalise(name, capture)
                except Invalid as exc:
                    found.notes[name] = exc.message
                    values = None
                    break
                if value is not None:
                    values.setdefault(_key(Decimal(value) if _KIND[name] == "decimal" else value), value)
            if values is None:
                break
        if values is None:
            continue
        if len(values) == 1:
            candidates[name] = next(iter(values.values()))
        elif values:
            found.notes[name] = "several different values (" + ", ".join(values.values()) + "): none taken"
    found.values = _valid(work_type, candidates, found.notes)
    return found


def _valid(work_type, candidates, notes):
    """The candidates validate_fields accepts (the API's rules); why the others were refused, in `notes`."""
    if not candidates:
        return {}
    try:
        validate_fields(work_type, candidates, require=False)
    except Invalid as exc:
        for key, problem in exc.fields.items():
            name = key.removeprefix("fields.")
            if name in candidates:
                notes[name] = f"{candidates.pop(name)!r} refused: {problem}"
    return candidates


def fields_from_mail(session, work_type, team_id, subject, body):
    """What filing an email gives a new item of `work_type` in the team: {name: text}.

    A failure here files the email without fields rather than not at all."""
    if not any(spec.kind in EXTRACTABLE_KINDS for spec in FIELDS.get(work_type) or ()):
        return {}
    patterns = team_patterns(session, team_id)
    try:
        return extract(work_type, subject, body, patterns).values
    except Exception:  # noqa: BLE001 - a team's odd pattern must not keep the mail from being filed
        log.exception("taking fields from the mail failed (team %s); filed without them", team_id)
        return {}
