"""Document verification checks against real files made here: PDFs (valid, encrypted, damaged,
without pages), a JPEG named .pdf, an empty file, a TIFF header, an .exe; expiry, number formats
with the IBAN checksum, and the same file seen on another item."""
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from queue_app.models import Event, WorkItem
from queue_app.services.checks import runner, settings
from queue_app.services.checks.rules import iban
from tests.check_files import (
    EXE_LIKE,
    TIFF_HEADER,
    TINY_JPEG,
    attach,
    encrypted_pdf,
    pdf,
    png,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def team(make_team):
    return make_team(name="Documents", work_types=["document_verification"])


@pytest.fixture
def doc_item(session, team, make_item):
    def make(**fields):
        values = {"document_type": "passport", "document_number": "X1234567", "expires_on": "2030-01-01", **fields}
        return make_item(team=team, type="document_verification", fields=values, now=NOW)
    return make


def run(session, item, now=NOW):
    """Run every check of the item in a new run; {name: CheckResult}."""
    results = runner.run_checks(session, item.id, run_key=f"test-{now.isoformat()}-{id(item)}", now=now)
    return {r.name: r for r in results}


def reload(session, item):
    session.expire_all()
    return session.get(WorkItem, item.id)


def test_a_valid_pdf_passes_every_file_check(session, doc_item):
    item = doc_item()
    attach(session, item, "passport.pdf", pdf(pages=2))

    results = run(session, item)

    assert {name: r.status for name, r in results.items()} == {
        "required_fields": "passed", "document_attached": "passed", "document_file_type": "passed",
        "document_pdf": "passed", "document_image": "passed", "document_size": "passed",
        "document_expiry": "passed", "document_number": "passed", "duplicate_document": "passed"}
    assert results["document_file_type"].data["files"][0]["content_type"] == "application/pdf"
    assert results["document_pdf"].data["files"][0]["problem"] is None
    assert reload(session, item).needs_attention is False


def test_an_encrypted_pdf_fails_and_the_item_needs_attention(session, doc_item):
    item = doc_item()
    attach(session, item, "passport.pdf", encrypted_pdf())

    results = run(session, item)

    assert results["document_file_type"].status == "passed"
    assert results["document_pdf"].status == "failed"
    assert "passport.pdf: is encrypted" in results["document_pdf"].message
    item = reload(session, item)
    assert item.needs_attention is True
    event = session.scalar(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == "attention_needed"))
    assert event.data == {"failed_checks": ["document_pdf"]}


def test_a_jpeg_named_pdf_is_judged_by_its_content(session, doc_item):
    item = doc_item()
    attach(session, item, "scan.pdf", TINY_JPEG)

    results = run(session, item)

    file_type = results["document_file_type"]
    assert file_type.status == "warning"
    assert file_type.message == "File name and content disagree: scan.pdf: is named as PDF but the content is JPEG"
    assert file_type.data["files"][0]["content_type"] == "image/jpeg"
    # Not a PDF, so pypdf is not asked to open it.
    assert (results["document_pdf"].status, results["document_pdf"].message) == (
        "passed", "No PDF among the files: nothing to open")
    assert reload(session, item).needs_attention is False


def test_an_empty_file_fails_type_and_size(session, doc_item):
    item = doc_item()
    attach(session, item, "passport.pdf", b"")

    results = run(session, item)

    assert results["document_file_type"].message == \
        "File type not allowed: passport.pdf: is empty, so it is no document at all"
    assert results["document_size"].status == "failed"
    assert results["document_size"].message == "File size out of limits: passport.pdf: is empty"
    assert reload(session, item).needs_attention is True


def test_tiff_png_and_jpeg_are_allowed(session, doc_item):
    item = doc_item()
    attach(session, item, "page1.tif", TIFF_HEADER)
    attach(session, item, "page2.png", png())
    attach(session, item, "page3.jpg", TINY_JPEG)

    results = run(session, item)

    assert results["document_file_type"].status == "passed"
    assert results["document_file_type"].message == "Allowed file type (JPEG, PNG, TIFF)"
    assert [f["content_type"] for f in results["document_file_type"].data["files"]] == [
        "image/tiff", "image/png", "image/jpeg"]


def test_an_executable_named_pdf_is_refused(session, doc_item):
    item = doc_item()
    attach(session, item, "invoice.pdf", EXE_LIKE)

    result = run(session, item)["document_file_type"]

    assert result.status == "failed"
    assert "invoice.pdf: is application/x-msdownload, not one of PDF, PNG, JPEG or TIFF" in result.message


def test_damaged_and_pageless_pdfs_fail(session, doc_item):
    from io import BytesIO

    from pypdf import PdfWriter

    empty = BytesIO()
    PdfWriter().write(empty)
    item = doc_item()
    attach(session, item, "damaged.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog broken")
    attach(session, item, "nothing.pdf", empty.getvalue())

    result = run(session, item)["document_pdf"]

    assert result.status == "failed"
    problems = {f["filename"]: f["problem"] for f in result.data["files"]}
    assert problems["damaged.pdf"].startswith("cannot be opened as a PDF")
    assert problems["nothing.pdf"] == "has no pages"


def test_without_a_document_the_file_checks_cannot_pass(session, doc_item):
    item = doc_item()
    attach(session, item, "logo.png", png(), inline=True)  # an inline email image is not a document

    results = run(session, item)

    assert results["document_attached"].status == "failed"
    for name in ("document_file_type", "document_pdf", "document_size"):
        assert (results[name].status, results[name].message) == (
            "warning", "Not checked: no document is attached yet")
    assert reload(session, item).needs_attention is True


def test_the_size_limit_is_a_team_setting(session, team, doc_item):
    settings.update_settings(session, team, max_document_bytes=1000)
    item = doc_item()
    attach(session, item, "small.pdf", pdf())
    attach(session, item, "big.pdf", pdf(padding=5000))

    result = run(session, item)["document_size"]

    assert result.status == "failed"
    assert result.message.startswith("File size out of limits: big.pdf: is ")
    assert result.message.endswith("bytes, over the limit of 1000")
    assert result.data["max_bytes"] == 1000


@pytest.mark.parametrize("expires, document_type, status, message", [
    ("2026-11-22", "passport", "failed", "The document expired on 2026-11-22"),
    ("2026-12-03", "passport", "warning", "The document expires soon, on 2026-12-03 (in 10 days)"),
    ("2026-12-23", "passport", "warning", "The document expires soon, on 2026-12-23 (in 30 days)"),
    ("2026-12-24", "passport", "passed", "Valid until 2026-12-24"),
    (None, "passport", "failed", "No expiry date: read it from the document"),
    (None, "utility_bill", "passed", "A utility bill has no expiry date"),
    (None, "other", "warning", "No expiry date given"),
])
def test_expiry(session, doc_item, expires, document_type, status, message):
    number = {"passport": "X1234567", "utility_bill": "INV-2026-001", "other": "ANY 1"}[document_type]
    item = doc_item(expires_on=expires, document_type=document_type, document_number=number)

    result = run(session, item)["document_expiry"]

    assert (result.status, result.message) == (status, message)


@pytest.mark.parametrize("document_type, number, status, detail", [
    ("passport", "X1234567", "passed", "The passport number is in the expected format"),
    ("passport", "x12 34 567", "passed", "The passport number is in the expected format"),
    ("passport", "AB-12", "failed", "does not match the format"),
    ("bank_statement", "DE89 3704 0044 0532 0130 00", "passed", "The bank statement number is a valid IBAN"),
    ("bank_statement", "DE89 3704 0044 0532 0130 01", "failed", "fails the mod-97 checksum"),
    ("bank_statement", "GB82 WEST 1234 5698 7654", "failed", "has 20 characters; an IBAN from GB has 22"),
    ("other", "WHATEVER-1", "passed", "No number format is configured for other documents"),
])
def test_document_number_format_per_type(session, doc_item, document_type, number, status, detail):
    item = doc_item(document_type=document_type, document_number=number)

    result = run(session, item)["document_number"]

    assert result.status == status and detail in result.message, result.message


def test_a_team_configures_its_own_document_number_format(session, team, doc_item):
    settings.update_settings(session, team, document_number_formats={"national_id": r"^ID\d{6}$"})
    good = doc_item(document_type="national_id", document_number="ID123456")
    bad = doc_item(document_type="national_id", document_number="X1234567")

    assert run(session, good)["document_number"].status == "passed"
    result = run(session, bad)["document_number"]
    assert result.status == "failed" and r"^ID\d{6}$" in result.message


@pytest.mark.parametrize("value", ["DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "nl91abna0417164300",
                                   "FR14 2004 1010 0505 0001 3M02 606", "CH93 0076 2011 6238 5295 7"])
def test_valid_ibans(value):
    assert iban.problem(value) is None


@pytest.mark.parametrize("value, problem", [
    ("DE89370400440532013001", "fails the mod-97 checksum (a typing error?)"),
    ("GB82WEST1234569876543", "has 21 characters; an IBAN from GB has 22"),
    ("DE8937040044", "is not shaped like an IBAN (2 letters, 2 check digits, then 11-30 letters or digits)"),
    ("1234567890123456", "is not shaped like an IBAN (2 letters, 2 check digits, then 11-30 letters or digits)"),
    ("", "is not shaped like an IBAN (2 letters, 2 check digits, then 11-30 letters or digits)"),
])
def test_invalid_ibans(value, problem):
    assert iban.problem(value) == problem


def test_the_same_file_on_another_item_is_a_warning_linking_to_it(session, doc_item):
    first, second, third = doc_item(), doc_item(), doc_item()
    data = pdf(padding=100)
    attach(session, first, "passport.pdf", data)
    attach(session, second, "resent.pdf", data)
    attach(session, third, "other.pdf", pdf(pages=3))

    result = run(session, second)["duplicate_document"]

    assert result.status == "warning"
    assert result.message == f"The same file is also on {first.ref}"
    assert result.data == {"related_refs": [first.ref]}
    assert run(session, first)["duplicate_document"].data == {"related_refs": [second.ref]}
    assert run(session, third)["duplicate_document"].status == "passed"
    # A warning is advice: it does not make the item need attention.
    assert reload(session, second).needs_attention is False


def test_today_is_the_checks_now_not_the_wall_clock(session, doc_item):
    item = doc_item(expires_on="2027-01-10")

    early = run(session, item, now=NOW)["document_expiry"]
    late = run(session, item, now=NOW + timedelta(days=60))["document_expiry"]

    assert early.status == "passed" and late.status == "failed"
    assert date.fromisoformat(late.data["expires_on"]) == date(2027, 1, 10)
