"""The type-specific fields of each work type, and their validation.

One definition serves the API, the intake form and the required-fields check, so a
rule cannot differ between entry points. Values come in as strings (JSON, form
posts, emails) and go out as Python values ready for the WorkItem columns.
"""
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from queue_app.services.errors import Invalid

REF_PATTERN = re.compile(r"^BO-\d{6,}$")
DOCUMENT_TYPES = ("passport", "national_id", "driving_licence", "utility_bill", "bank_statement", "company_registration", "other")
SEVERITIES = ("low", "medium", "high", "critical")
MAX_AMOUNT = Decimal("999999999999.99")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # string | text | date | decimal | currency | choice | ref
    required: bool = False
    label: str = ""
    choices: tuple = ()
    pattern: str = ""
    max_length: int = 255
    positive: bool = False  # a decimal that must be more than 0 (a refund)
    help: str = field(default="", compare=False)

    @property
    def title(self):
        return self.label or self.name.replace("_", " ").capitalize()


FIELDS = {
    "return": (
        FieldSpec("order_number", "string", required=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9\-/]{2,31}$",
                  max_length=32, help="3-32 letters, digits, '-' or '/'"),
        FieldSpec("purchase_date", "date"),
        FieldSpec("amount", "decimal", positive=True, help="the refund: more than 0"),
        FieldSpec("currency", "currency"),
        FieldSpec("reason", "text", max_length=4000),
    ),
    "document_verification": (
        FieldSpec("document_type", "choice", required=True, choices=DOCUMENT_TYPES),
        FieldSpec("document_number", "string", pattern=r"^[A-Za-z0-9][A-Za-z0-9 \-/]{1,63}$", max_length=64),
        FieldSpec("expires_on", "date"),
    ),
    "discrepancy_fix": (
        FieldSpec("account", "string", required=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9\-/.]{0,63}$", max_length=64),
        FieldSpec("expected_amount", "decimal", required=True),
        FieldSpec("actual_amount", "decimal", required=True),
        FieldSpec("currency", "currency", required=True),
    ),
    "escalation": (
        FieldSpec("related_ref", "ref", label="Related reference"),
        FieldSpec("severity", "choice", choices=SEVERITIES),
    ),
    "general": (),
}

ALL_FIELD_NAMES = sorted({spec.name for specs in FIELDS.values() for spec in specs})


def specs_for(work_type):
    try:
        return FIELDS[work_type]
    except KeyError:
        raise Invalid(f"unknown work type {work_type!r}", {"type": f"must be one of {', '.join(FIELDS)}"}) from None


def _parse(spec, value):
    """Parse one raw value; raise ValueError with a message for the person who typed it."""
    if spec.kind in ("string", "text"):
        if not isinstance(value, str):
            raise ValueError("must be a string")
        value = value.strip()
        if len(value) > spec.max_length:
            raise ValueError(f"must be at most {spec.max_length} characters")
        if spec.pattern and not re.fullmatch(spec.pattern, value):
            raise ValueError(f"is not in the expected format ({spec.help or 'letters and digits'})")
        return value
    if spec.kind == "date":
        if isinstance(value, date):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a date string YYYY-MM-DD")
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("must be a date in the form YYYY-MM-DD") from None
    if spec.kind == "decimal":
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError('must be a decimal string such as "12.50" (not a JSON float)')
        if isinstance(value, Decimal):
            amount = value
        elif isinstance(value, (int, str)):
            try:
                amount = Decimal(str(value).strip())
            except InvalidOperation:
                raise ValueError('must be a decimal number such as "12.50"') from None
        else:
            raise ValueError('must be a decimal string such as "12.50"')
        if not amount.is_finite():
            raise ValueError("must be a finite number")
        if amount.as_tuple().exponent < -2:
            raise ValueError("must have at most 2 decimal places")
        if abs(amount) > MAX_AMOUNT:
            raise ValueError("is too large")
        if spec.positive and amount <= 0:
            raise ValueError("must be more than 0")
        return amount
    if spec.kind == "currency":
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value.strip()):
            raise ValueError("must be a 3-letter ISO 4217 code such as EUR")
        return value.strip().upper()
    if spec.kind == "choice":
        if value not in spec.choices:
            raise ValueError(f"must be one of {', '.join(spec.choices)}")
        return value
    if spec.kind == "ref":
        if not isinstance(value, str) or not REF_PATTERN.fullmatch(value.strip().upper()):
            raise ValueError("must be a work item reference such as BO-000123")
        return value.strip().upper()
    raise AssertionError(f"unknown field kind {spec.kind}")


def _blank(value):
    return value is None or (isinstance(value, str) and value.strip() == "")


def validate_fields(work_type, raw, *, require=True):
    """Return {name: parsed value} for the type's fields, or raise Invalid naming each bad field.

    With require=False (email intake, where a person has not filled a form) missing
    required fields are allowed; the required-fields check reports them instead.
    """
    specs = specs_for(work_type)
    raw = raw or {}
    if not isinstance(raw, dict):
        raise Invalid("fields must be an object", {"fields": "must be an object"})
    known = {spec.name for spec in specs}
    errors = {name: f"is not a field of a {work_type} item" for name in raw if name not in known}
    values = {}
    for spec in specs:
        value = raw.get(spec.name)
        if _blank(value):
            if spec.required and require:
                errors[spec.name] = "is required"
            values[spec.name] = None
            continue
        try:
            values[spec.name] = _parse(spec, value)
        except ValueError as exc:
            errors[spec.name] = f"{spec.title} {exc}"
    if errors:
        raise Invalid(f"invalid fields for a {work_type} item", {f"fields.{k}": v for k, v in errors.items()})
    return values


def problems_with_item_fields(item):
    """What the required-fields check reports: missing or malformed fields on a stored item."""
    problems = {}
    for spec in FIELDS[item.type]:
        value = getattr(item, spec.name)
        if _blank(value):
            if spec.required:
                problems[spec.name] = "is missing"
            continue
        try:
            _parse(spec, value)
        except ValueError as exc:
            problems[spec.name] = str(exc)
    return problems


def _plain(value):
    if isinstance(value, (date, Decimal)):
        return value.isoformat() if isinstance(value, date) else f"{value:.2f}"
    return value


def plain_fields(values):
    """Parsed field values ({name: value}) as JSON-ready values (dates ISO, decimals as strings)."""
    return {name: _plain(value) for name, value in values.items()}


def fields_of(item):
    """The item's type-specific fields as JSON-ready values (dates ISO, decimals as strings)."""
    return plain_fields({spec.name: getattr(item, spec.name) for spec in FIELDS[item.type]})


def type_label(value):
    """A work type (or any snake_case value) as words: "document_verification" -> "document verification"."""
    return value.replace("_", " ")
