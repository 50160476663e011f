"""The settings the automated checks and approvals apply for a team.

Defaults live here in code; a team's TeamCheckSettings row overrides only the values it
sets (NULL = default). Every reader goes through settings_for(), so the checks, the
approval rule and the pages agree on one value. Every change is recorded in the audit trail
(services.audit), a value back to the default as None.
"""
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa

from queue_app.models import TeamCheckSettings
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid

# Order numbers as the shop systems issue them, e.g. ORD-100234 or WEB-2026-0042.
DEFAULT_ORDER_NUMBER_FORMAT = r"^[A-Z]{2,5}-\d{4,12}(-\d{1,6})?$"
# Document number format per document type: a regular expression matched against the number
# in upper case without spaces, or "iban" for an IBAN with its mod-97 checksum. None: any number.
DOCUMENT_NUMBER_FORMATS = {
    "passport": r"^[A-Z0-9]{6,9}$",  # ICAO 9303: up to 9 letters and digits
    "national_id": r"^[A-Z0-9]{5,20}$",
    "driving_licence": r"^[A-Z0-9-]{5,20}$",
    "utility_bill": r"^[A-Z0-9/-]{4,32}$",
    "bank_statement": "iban",
    "company_registration": r"^[A-Z0-9/-]{4,20}$",
    "other": None,
}
IBAN = "iban"
# The types a file added to an item may have (by content), and the most a team may allow.
DEFAULT_DOCUMENT_TYPES = ("application/pdf", "image/png", "image/jpeg", "image/tiff")
DOCUMENT_TYPES = (*DEFAULT_DOCUMENT_TYPES, "image/gif", "text/plain", "application/zip",
                  "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
# Why a verifier rejects a document, unless the team keeps its own list.
DEFAULT_REJECTION_REASONS = ("Illegible or cut off", "Expired", "Name does not match the account",
                             "Wrong kind of document", "Pages missing", "Signs of tampering")
MAX_REASON = 200


@dataclass(frozen=True)
class CheckSettings:
    base_currency: str = "EUR"
    return_window_days: int = 30
    tolerance_absolute: Decimal = Decimal("1.00")  # in base_currency
    tolerance_percent: Decimal = Decimal("0.5")  # of the expected amount
    order_number_format: str = DEFAULT_ORDER_NUMBER_FORMAT
    document_number_formats: dict = field(default_factory=lambda: dict(DOCUMENT_NUMBER_FORMATS))
    max_document_bytes: int = 10 * 1024 * 1024
    allowed_document_types: tuple = DEFAULT_DOCUMENT_TYPES
    document_rejection_reasons: tuple = DEFAULT_REJECTION_REASONS
    reverification_days: int | None = None  # None: no re-verification item before expiry

    def document_number_format(self, document_type):
        return self.document_number_formats.get(document_type)


DEFAULTS = CheckSettings()
FIELDS = ("base_currency", "return_window_days", "tolerance_absolute", "tolerance_percent", "order_number_format",
          "document_number_formats", "max_document_bytes", "allowed_document_types", "document_rejection_reasons",
          "reverification_days")


def settings_for(session, team_id):
    row = session.scalar(sa.select(TeamCheckSettings).where(TeamCheckSettings.team_id == team_id)) \
        if team_id is not None else None
    return merged(row)


def merged(row):
    if row is None:
        return DEFAULTS
    values = {name: getattr(row, name) for name in FIELDS if name != "document_number_formats"}
    values = {name: value for name, value in values.items() if value is not None}
    for name in ("allowed_document_types", "document_rejection_reasons"):
        if name in values:
            values[name] = tuple(values[name])
    formats = {**DOCUMENT_NUMBER_FORMATS, **(row.document_number_formats or {})}
    return replace(DEFAULTS, document_number_formats=formats, **values)


def _regex(value, name):
    try:
        re.compile(value)
    except re.error as exc:
        raise Invalid(f"{name} is not a valid regular expression: {exc}", {name: "invalid regular expression"}) \
            from None
    return value


def _clean(name, value):
    """Parse one setting from text (CLI, form) or Python; None clears it back to the default."""
    if value is None or value == "":
        return None
    try:
        if name == "base_currency":
            value = str(value).strip().upper()
            if not re.fullmatch(r"[A-Z]{3}", value):
                raise ValueError("must be a 3-letter currency code")
        elif name in ("return_window_days", "max_document_bytes", "reverification_days"):
            value = int(value)
            if value < (0 if name == "return_window_days" else 1):
                raise ValueError("must not be negative" if name == "return_window_days" else "must be positive")
            if name == "reverification_days" and value > 3650:
                raise ValueError("must be at most 3650 days")
        elif name in ("tolerance_absolute", "tolerance_percent"):
            value = Decimal(str(value))
            if not value.is_finite() or value < 0:
                raise ValueError("must be a number of 0 or more")
        elif name == "order_number_format":
            value = _regex(str(value), name)
        elif name == "document_number_formats":
            if not isinstance(value, dict):
                raise ValueError("must map document types to formats")
            unknown = set(value) - set(DOCUMENT_NUMBER_FORMATS)
            if unknown:
                raise ValueError(f"unknown document types: {', '.join(sorted(unknown))}")
            value = {k: (v if v in (None, IBAN) else _regex(v, f"{name}.{k}")) for k, v in value.items()}
        elif name == "allowed_document_types":
            if isinstance(value, str):
                value = [part for part in re.split(r"[\s,]+", value) if part]
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError("must list at least one content type")
            value = [str(v).strip().lower() for v in value]
            unknown = sorted(set(value) - set(DOCUMENT_TYPES))
            if unknown:
                raise ValueError(f"has types that cannot be allowed: {', '.join(unknown)} "
                                 f"(choose from {', '.join(DOCUMENT_TYPES)})")
            value = list(dict.fromkeys(value))
        elif name == "document_rejection_reasons":
            if isinstance(value, str):
                value = value.split("\n")
            if not isinstance(value, (list, tuple)):
                raise ValueError("must list reasons, one per line")
            value = list(dict.fromkeys(" ".join(str(v).split()) for v in value if str(v).strip()))
            if not value or len(value) > 50 or any(len(v) > MAX_REASON for v in value):
                raise ValueError(f"must list 1 to 50 reasons of at most {MAX_REASON} characters")
        else:
            raise Invalid(f"unknown setting {name!r}", {name: "unknown setting"})
    except (ValueError, InvalidOperation) as exc:
        message = str(exc) if isinstance(exc, ValueError) and str(exc) else "is not valid"
        raise Invalid(f"{name} {message}", {name: message}) from None
    return value


def update_settings(session, team, *, actor=None, **changes):
    """Set (or with None clear) settings of a team; returns the effective settings."""
    row = session.scalar(sa.select(TeamCheckSettings).where(TeamCheckSettings.team_id == team.id))
    if row is None:
        row = TeamCheckSettings(team_id=team.id)
        session.add(row)
    before = audit.snapshot(row, FIELDS)  # a new row: every value None, the defaults
    for name, value in changes.items():
        setattr(row, name, _clean(name, value))
    session.flush()
    audit.changed(session, actor, "check_settings", team.id, before, audit.snapshot(row, FIELDS), label=team.name)
    return merged(row)
