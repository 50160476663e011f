"""The hostile corpus (tests/hostile_files.py) against the pieces that judge it without a worker:
type sniffing, image headers read without decoding, and the PDF probe in its child process."""
import zlib

import pytest

from queue_app.services.checks import runner
from queue_app.services.checks.rules import documents
from queue_app.services.intake.mail.attachments import image_problem, image_size, sniff_content_type
from tests import hostile_files
from tests.check_files import TINY_JPEG, attach, pdf, png


@pytest.mark.parametrize("name", list(hostile_files.CORPUS))
def test_every_hostile_file_is_sniffed_from_its_bytes(name):
    filename, make, _expected = hostile_files.CORPUS[name]
    expected = {"pixel_bomb_png": "image/png", "svg_with_script": "image/svg+xml",
                "zip_named_pdf": "application/zip", "empty": "text/plain"}.get(name, "application/pdf")
    assert sniff_content_type(make(), "application/pdf", filename) == expected


@pytest.mark.parametrize("data, expected", [
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    (b"\xef\xbb\xbf<?xml version='1.0'?>\n<!-- made by hand -->\n<!DOCTYPE svg PUBLIC '-//W3C//DTD SVG 1.1//EN'>\n<svg>",
     "image/svg+xml"),
    (b"A note about <svg> files.", "text/plain"),
    (b"<html><script>x</script></html>", "text/plain"),
])
def test_an_svg_is_told_apart_from_plain_text(data, expected):
    assert sniff_content_type(data, "text/plain", "x.txt") == expected


def test_image_sizes_come_from_the_header_alone():
    assert image_size(png(), "image/png") == (1, 1)
    assert image_size(TINY_JPEG, "image/jpeg") == (1, 1)
    assert image_size(b"GIF89a\x20\x03\x58\x02", "image/gif") == (800, 600)
    assert image_size(hostile_files.pixel_bomb_png(), "image/png") == (100_000, 100_000)
    assert image_problem(png(), "image/png") is None and image_problem(TINY_JPEG, "image/jpeg") is None
    assert image_problem(hostile_files.pixel_bomb_png(), "image/png") == (
        "declares 100000 x 100000 pixels, over the limit of 100 megapixels: it is never opened or shown here")
    assert image_problem(hostile_files.pixel_bomb_png(0, 10), "image/png") == \
        "is damaged: its header declares 0 x 10 pixels"
    assert image_problem(b"\xff\xd8\xff\xd9", "image/jpeg") == "is damaged: its header cannot be read"
    assert image_problem(b"II*\x00", "image/tiff") is None  # not read here, not shown in the page


def test_the_pixel_bomb_fails_the_image_check_and_a_real_image_passes(session, make_team, make_item):
    team = make_team(name="Documents", work_types=["document_verification"])
    item = make_item(team=team, type="document_verification")
    attach(session, item, "photo.jpg", TINY_JPEG)
    attach(session, item, "scan.png", hostile_files.pixel_bomb_png())
    result = runner.run_check(session, item.id, "document_image", run_key="bomb")
    assert (result.status, result.message) == ("failed", "Image not usable: scan.png: declares 100000 x 100000 "
                                               "pixels, over the limit of 100 megapixels: it is never opened or "
                                               "shown here")
    assert [f["problem"] is None for f in result.data["files"]] == [True, False]


def test_the_bomb_really_inflates_to_two_gigabytes_from_two_megabytes():
    data = hostile_files.zeros_deflated(2048)
    assert len(data) < 3 * 1024 * 1024
    inflater, total, pending = zlib.decompressobj(), 0, data
    while pending:
        total += len(inflater.decompress(pending, 64 * 1024 * 1024))
        pending = inflater.unconsumed_tail
    assert inflater.eof and total == 2048 * 1024 * 1024


def test_a_page_count_over_the_limit_is_read_without_walking_the_pages():
    assert documents.pdf_problem(hostile_files.many_pages_pdf(501)) == "has 501 pages, over the limit of 500"
    assert documents.pdf_problem(hostile_files.many_pages_pdf(500)) is None
    assert documents.pdf_problem(pdf(pages=3), max_pages=2) == "has 3 pages, over the limit of 2"


def test_a_pdf_with_a_recoverable_xref_still_opens():
    """Only a broken table is not hostile: pypdf (and pdf.js) rebuild it from the objects."""
    good = hostile_files.raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                                  hostile_files.PAGE])
    head, tail = good.split(b"xref\n", 1)
    wrong = head + b"xref\n0 4\n0000000000 65535 f \n" + b"0000000999 00000 n \n" * 3 + b"trailer" + \
        tail.split(b"trailer", 1)[1]
    assert documents.pdf_problem(wrong) is None


def test_streams_too_short_to_inflate_past_the_limit_are_not_inflated(monkeypatch):
    """Deflate inflates at most 1032 times: a scan of a few MB cannot hold a bomb, so none of its
    streams is inflated; a real bomb still is."""
    from queue_app.services.checks.rules import pdf_probe

    inflated = []
    real = pdf_probe.inflates_past
    monkeypatch.setattr(pdf_probe, "inflates_past", lambda *args: inflated.append(args[1]) or real(*args))
    assert not pdf_probe.has_bomb(pdf(padding=200_000))
    assert inflated == []
    assert pdf_probe.has_bomb(hostile_files.decompression_bomb_pdf())
    assert inflated
