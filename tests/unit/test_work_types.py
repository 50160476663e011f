"""Type-specific field validation: one rule set for API, form and checks."""
from datetime import date
from decimal import Decimal

import pytest

from queue_app.services.errors import Invalid
from queue_app.services.items.work_types import FIELDS, fields_of, validate_fields


@pytest.mark.parametrize("work_type,raw,bad_field", [
    ("return", {}, "order_number"),
    ("return", {"order_number": "ORD-1", "purchase_date": "01/11/2026"}, "purchase_date"),
    ("return", {"order_number": "x"}, "order_number"),
    ("return", {"order_number": "ORD-1", "amount": "12.345"}, "amount"),
    ("return", {"order_number": "ORD-1", "currency": "EURO"}, "currency"),
    ("document_verification", {"document_number": "X1"}, "document_type"),
    ("document_verification", {"document_type": "selfie"}, "document_type"),
    ("document_verification", {"document_type": "passport", "expires_on": "2030-02-30"}, "expires_on"),
    ("discrepancy_fix", {"account": "A-1", "expected_amount": "10.00", "currency": "EUR"}, "actual_amount"),
    ("discrepancy_fix", {"account": "A-1", "expected_amount": "ten", "actual_amount": "1", "currency": "EUR"},
     "expected_amount"),
    ("discrepancy_fix", {"account": "A-1", "expected_amount": "NaN", "actual_amount": "1", "currency": "EUR"},
     "expected_amount"),
    ("escalation", {"related_ref": "123"}, "related_ref"),
    ("escalation", {"severity": "apocalyptic"}, "severity"),
    ("general", {"order_number": "ORD-1"}, "order_number"),
])
def test_each_type_rejects_bad_fields_naming_them(work_type, raw, bad_field):
    with pytest.raises(Invalid) as err:
        validate_fields(work_type, raw)
    assert f"fields.{bad_field}" in err.value.fields


def test_valid_values_are_parsed():
    values = validate_fields("discrepancy_fix", {"account": "ACC-1", "expected_amount": "100", "actual_amount": 95,
                                                 "currency": "usd"})
    assert values == {"account": "ACC-1", "expected_amount": Decimal("100"), "actual_amount": Decimal("95"),
                      "currency": "USD"}
    assert validate_fields("return", {"order_number": "ORD-1", "purchase_date": "2026-01-31"})["purchase_date"] == \
        date(2026, 1, 31)
    assert validate_fields("escalation", {"related_ref": "bo-000012"})["related_ref"] == "BO-000012"


def test_floats_are_refused_to_keep_money_exact():
    with pytest.raises(Invalid, match="invalid fields") as err:
        validate_fields("return", {"order_number": "ORD-1", "amount": 0.1})
    assert "decimal string" in err.value.fields["fields.amount"]


def test_missing_required_fields_allowed_when_not_required():
    assert validate_fields("return", {}, require=False)["order_number"] is None


def test_unknown_type_and_non_object_fields():
    with pytest.raises(Invalid):
        validate_fields("refund", {})
    with pytest.raises(Invalid):
        validate_fields("return", ["order_number"])


def test_fields_of_serialises_every_field_of_the_type(make_item):
    item = make_item(type="return")
    out = fields_of(item)
    assert set(out) == {spec.name for spec in FIELDS["return"]}
    assert out["amount"] == "49.90" and out["purchase_date"] == "2026-11-01"
