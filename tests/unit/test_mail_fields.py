"""Fields taken from an email's subject and body: typical English, German, Spanish and French mail,
amounts in both decimal styles, and nothing taken when the mail is ambiguous or the value invalid."""
import re

import pytest

from queue_app.services.intake import mail_fields
from queue_app.services.intake.mail_fields import extract, parse_amount, parse_currency, parse_date


def values(work_type, subject, body=""):
    return extract(work_type, subject, body).values


# --- returns ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("subject, body, expected", [
    ("Return for order ORD-778899", "Hello,\nthe kettle arrived broken.\n", {"order_number": "ORD-778899"}),
    ("Refund", "Order number: 4471-2209\nRefund of €1,234.56 please.",
     {"order_number": "4471-2209", "amount": "1234.56", "currency": "EUR"}),
    ("Rückerstattung für Bestellung ORD-123456", "Guten Tag,\nder Betrag: 1.234,56 € bitte erstatten.",
     {"order_number": "ORD-123456", "amount": "1234.56", "currency": "EUR"}),
    ("Retoure", "Bestell-Nr.: 88123\nBitte erstatten Sie 45,00 EUR.",
     {"order_number": "88123", "amount": "45.00", "currency": "EUR"}),
    ("Devolución del pedido nº 44556", "Hola,\nel importe de 45,50 € por favor.",
     {"order_number": "44556", "amount": "45.50", "currency": "EUR"}),
    ("Réclamation commande ORD-123456", "Bonjour,\nPouvez-vous me rembourser 45,00 EUR ?",
     {"order_number": "ORD-123456", "amount": "45.00", "currency": "EUR"}),
    ("Remboursement", "Numéro de commande : CMD-2026-0042\nMontant : 1 234,56 €",
     {"order_number": "CMD-2026-0042", "amount": "1234.56", "currency": "EUR"}),
    ("Refund please", "The total was £12.50 for order #A1B2C3.",
     {"order_number": "A1B2C3", "amount": "12.50", "currency": "GBP"}),
    ("Refund please", "EUR 45 for order 778899", {"order_number": "778899", "amount": "45", "currency": "EUR"}),
])
def test_a_return_gets_its_order_number_amount_and_currency(subject, body, expected):
    assert values("return", subject, body) == expected


def test_the_same_value_twice_is_one_value():
    found = values("return", "Return for order ORD-778899",
                   "About order ord-778899: the refund of 45,00 € (EUR 45.00) please.")
    assert found == {"order_number": "ORD-778899", "amount": "45.00", "currency": "EUR"}


def test_two_different_values_give_none():
    found = extract("return", "Return for order ORD-111111", "and order ORD-222222; 45,00 € or 50,00 USD?")
    assert found.values == {}
    assert set(found.notes) == {"order_number", "amount", "currency"}
    assert "several different values" in found.notes["order_number"]


def test_words_after_order_are_no_order_number():
    assert values("return", "Your order was damaged", "I ordered 2 weeks ago. Refund 2 items, order from 12/03/2026.") \
        == {}


def test_quoted_reply_lines_are_not_read():
    body = "Thanks, the amount is £12.50.\n\n> On Monday you wrote:\n> order ORD-999999, refund of €80.00\n"
    assert values("return", "Order ORD-111111", body) == {"order_number": "ORD-111111", "amount": "12.50",
                                                          "currency": "GBP"}


def test_a_value_the_api_refuses_is_not_taken():
    found = extract("return", "Refund", "Betrag: 0,00 €")  # a refund must be more than 0, as in the API
    assert "amount" not in found.values and "refused" in found.notes["amount"]
    assert found.values == {"currency": "EUR"}


# --- document verification ---------------------------------------------------------------------------------

@pytest.mark.parametrize("subject, body, expected", [
    ("Please verify my passport", "Passport number: X1234567, expires 31/12/2030",
     {"document_number": "X1234567", "expires_on": "2030-12-31"}),
    ("Ausweis prüfen", "Ausweisnummer: L01X00T47\ngültig bis 31.12.2030",
     {"document_number": "L01X00T47", "expires_on": "2030-12-31"}),
    ("Verificación", "Número de documento: 12345678Z, caduca el 31/12/2030",
     {"document_number": "12345678Z", "expires_on": "2030-12-31"}),
    ("Vérification", "Numéro de document : 18AB12345\nexpire le 31/12/2030",
     {"document_number": "18AB12345", "expires_on": "2030-12-31"}),
    ("Document", "Document no. D-778, expiry date: 2030-06-30", {"document_number": "D-778", "expires_on": "2030-06-30"}),
])
def test_a_document_gets_its_number_and_expiry(subject, body, expected):
    assert values("document_verification", subject, body) == expected


def test_an_impossible_date_is_not_taken():
    assert values("document_verification", "Passport", "passport X1234567 expires 31/02/2030") == \
        {"document_number": "X1234567"}


# --- discrepancy fixes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("subject, body, expected", [
    ("Mismatch on account ACC-10293", "Expected 100.00 EUR, actual 90.00 EUR.",
     {"account": "ACC-10293", "expected_amount": "100.00", "actual_amount": "90.00", "currency": "EUR"}),
    ("Kontoabweichung", "IBAN: DE89 3704 0044 0532 0130 00\nSoll-Betrag: 1.000,00 €\nIst-Betrag: 990,00 €",
     {"account": "DE89370400440532013000", "expected_amount": "1000.00", "actual_amount": "990.00",
      "currency": "EUR"}),
    ("Descuadre", "Cuenta ES91 2100 0418 4502 0005 1332, importe esperado: 50,00 €, importe real: 40,00 €",
     {"account": "ES9121000418450200051332", "expected_amount": "50.00", "actual_amount": "40.00",
      "currency": "EUR"}),
    ("Écart", "BE68 5390 0754 7034 BIC GEBABEBB\nmontant attendu : 1 234,56 €\nmontant réel : 1 200,00 €",
     {"account": "BE68539007547034", "expected_amount": "1234.56", "actual_amount": "1200.00",
      "currency": "EUR"}),
])
def test_a_discrepancy_gets_its_account_amounts_and_currency(subject, body, expected):
    assert values("discrepancy_fix", subject, body) == expected


def test_an_iban_that_fails_mod_97_gives_no_account():
    found = extract("discrepancy_fix", "Wrong booking", "IBAN: DE89 3704 0044 0532 0130 01")
    assert "account" not in found.values
    assert "mod-97" in found.notes["account"]


def test_types_without_extractable_fields_get_nothing():
    assert values("general", "Return for order ORD-778899") == {}
    assert values("escalation", "Order ORD-778899, 45,00 €") == {}


# --- amounts, currencies and dates ----------------------------------------------------------------------

@pytest.mark.parametrize("text, amount, currency", [
    ("1.234,56 €", "1234.56", "EUR"),
    ("€1,234.56", "1234.56", "EUR"),
    ("EUR 45", "45", "EUR"),
    ("45,00 EUR", "45.00", "EUR"),
    ("£12.50", "12.50", "GBP"),
    ("1 234,56 €", "1234.56", "EUR"),
    ("US$ 9.99", "9.99", "USD"),
    ("CHF 1'250.00", "1250.00", "CHF"),
    ("1,234", "1234", None),  # three digits after a single separator: thousands
    ("$45", "45", None),  # which dollar is not said
])
def test_amounts_in_both_decimal_styles(text, amount, currency):
    assert (parse_amount(text), parse_currency(text)) == (amount, currency)


def test_a_malformed_number_is_no_amount():
    assert parse_amount("1.2.3") is None
    assert parse_amount("no number") is None


@pytest.mark.parametrize("text, expected", [
    ("31/12/2030", "2030-12-31"), ("31.12.2030", "2030-12-31"), ("2030-12-31", "2030-12-31"),
    ("1.2.2030", "2030-02-01"), ("31/02/2030", None), ("12/2030", None),
])
def test_dates_day_first_or_iso(text, expected):
    assert parse_date(text) == expected


# --- patterns ----------------------------------------------------------------------------------------------

def test_default_patterns_are_valid_field_patterns():
    for pattern in mail_fields.DEFAULT_PATTERNS:
        assert mail_fields.pattern_problem(pattern.regex) is None, pattern
        assert pattern.field in mail_fields.EXTRACTABLE_FIELDS


@pytest.mark.parametrize("regex, problem", [
    ("order (\\d+", "not a valid regular expression"),
    ("order \\d+", "exactly one capture group"),
    ("(order) (\\d+)", "exactly one capture group"),
    ("", "enter a regular expression"),
    ("(a+)+$", "repeats a group that itself repeats without limit"),
    ("order(?:\\s*(\\w+))*", "repeats a group that itself repeats without limit"),
])
def test_a_pattern_needs_to_compile_with_one_capture_group(regex, problem):
    assert problem in mail_fields.pattern_problem(regex)


def test_bounded_repeats_are_allowed():
    assert mail_fields.pattern_problem(r"(?:[ ]?(\w{4})){2,7}") is None
    assert mail_fields.pattern_problem(r"ref:?\s*((?:\d{3}-)+\d{2})") is None


def test_a_teams_pattern_replaces_the_defaults_for_its_field_only():
    own = {**mail_fields._DEFAULTS, "order_number": ((re.compile(r"auftrag\s+(\d{6})", re.I), None),)}
    found = extract("return", "Auftrag 445566, order ORD-778899", "Betrag: 12,00 €", own)
    assert found.values == {"order_number": "445566", "amount": "12.00", "currency": "EUR"}
