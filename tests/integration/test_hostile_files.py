"""Hostile files (tests/hostile_files.py) on document verification items, through the real checks
worker on the real Redis: each ends with a result a person understands, in seconds and in bounded
memory, the other items' checks go on, and no page about them is a 500.

Redis database 15 of REDIS_URL, flushed around each test (fixtures of test_workers.py).
"""
import re
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import sqlalchemy as sa
from rq.job import Job

from queue_app.models import Attachment, Message, WorkItem
from queue_app.services.checks import runner
from queue_app.services.checks.rules import CHECKS_BY_TYPE, documents, pdf_reader
from tests import hostile_files
from tests.check_files import attach, pdf
from tests.integration.test_checks_workers import check_jobs, new_document_item, statuses
from tests.integration.test_workers import run_burst
from workers.queues import JOB_TIMEOUTS

MB = 1024 * 1024


@pytest.fixture
def doc_team(make_team):
    return make_team(name="Documents", work_types=["document_verification"])


def latest(session, item_id):
    """{check: (status, message)} of the item's latest run."""
    session.expire_all()
    return {r.name: (r.status, r.message) for r in runner.latest_results(session, session.get(WorkItem, item_id))}


def test_each_hostile_file_fails_clearly_on_the_worker_and_the_other_items_pass(session, rconn, deliver_on_commit,
                                                                                doc_team):
    items = {}
    for n, (name, (filename, make, _expected)) in enumerate(hostile_files.CORPUS.items()):
        item = new_document_item(session, doc_team, number=f"H{n:07d}")
        attach(session, item, filename, make())
        items[name] = item.id
    everything = new_document_item(session, doc_team, number="A0000001")  # all of them on one item
    for name, (filename, make, _expected) in hostile_files.CORPUS.items():
        attach(session, everything, f"{name}-{filename}", make())
    normal = new_document_item(session, doc_team, number="N0000001")
    attach(session, normal, "passport.pdf", pdf(pages=2))
    session.commit()
    everything_id, normal_id = everything.id, normal.id
    self_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    tracemalloc.start()
    started = time.monotonic()
    try:
        run_burst(rconn, "checks")
        took = time.monotonic() - started
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    for name, item_id in items.items():
        results = latest(session, item_id)
        assert len(results) == len(CHECKS_BY_TYPE["document_verification"]), (name, results)
        for check, (status, words) in hostile_files.CORPUS[name][2].items():
            assert results[check][0] == status and words in results[check][1], (name, results[check])
        assert all(message for _, message in results.values()), (name, results)
        assert session.get(WorkItem, item_id).needs_attention is True, name
    together = latest(session, everything_id)
    assert together["document_pdf"][0] == "failed" and together["document_file_type"][0] == "failed"
    for name in ("encrypted", "malformed_xref", "javascript", "many_pages", "decompression_bomb", "pdf_html_polyglot"):
        assert f"{name}-" in together["document_pdf"][1], (name, together["document_pdf"][1])
    print(f"\nhostile burst: {took:.1f} s for {len(items) + 2} items; "
          f"document_pdf of all: {together['document_pdf'][1]}")
    # The normal item, in the same burst, is untouched by its neighbours.
    assert set(statuses(session, normal_id).values()) == {"passed"}, statuses(session, normal_id)
    assert session.get(WorkItem, normal_id).needs_attention is False

    # Time: every job ended on its own, in seconds, far inside the queue's limit.
    durations = [(job.ended_at - job.started_at).total_seconds()
                 for job in (Job.fetch(job_id, connection=rconn) for job_id in check_jobs(session))]
    print(f"job seconds: max {max(durations):.2f}, total {sum(durations):.2f}")
    assert len(durations) == len(items) + 2
    assert max(durations) < 15 and sum(durations) < JOB_TIMEOUTS["checks"]
    # Memory: nothing was inflated or walked in the worker. The bomb alone is 2 GB inflated; the worker's
    # Python allocations peaked at tens of MB (the files themselves are a few MB), its RSS barely moved,
    # and the parsing children stayed under their own limit.
    self_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self_before
    reader = pdf_reader._reader  # the worker's PDF reader, which opened every file of the burst
    status = Path(f"/proc/{reader.process.pid}/status").read_text()
    reader_peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024
    print(f"traced peak {traced_peak / MB:.1f} MB, worker RSS growth {self_growth / MB:.1f} MB, "
          f"PDF reader peak {reader_peak / MB:.1f} MB")
    assert traced_peak < 100 * MB and self_growth < 150 * MB
    assert reader_peak < documents.PDF_MEMORY_BYTES


@pytest.fixture
def fake_probe(tmp_path, monkeypatch):
    """Put a reader in place of pdf_probe.py: it takes the real reader's memory limit (`serve MEMORY`),
    reads the first request's header, then does `body`."""
    def install(body, before_request=""):
        script = tmp_path / "probe.py"
        script.write_text(f"import sys\nsys.path.insert(0, {str(documents.PDF_PROBE.parent)!r})\n"
                          "from pdf_probe import limit\nlimit(int(sys.argv[2]), None)\n" + before_request +
                          "sys.stdin.buffer.readline()\n" + body)
        monkeypatch.setattr(documents, "PDF_PROBE", script)
    return install


def test_a_parse_that_runs_away_is_given_up_after_the_time_limit(fake_probe):
    fake_probe("while True:\n    pass\n")
    started = time.monotonic()
    assert documents.pdf_problem(pdf(), seconds=1) == "took over 1 seconds to open: not read further"
    assert time.monotonic() - started < 3


def test_a_parse_that_wants_too_much_memory_is_stopped_by_the_memory_limit(fake_probe):
    fake_probe("data = bytearray(2 * 1024 * 1024 * 1024)\nprint('{\"problem\": null}')\n")
    assert documents.pdf_problem(pdf(), memory_bytes=256 * MB) == \
        "could not be opened within the limits (10 seconds, 256 MB): not read further"


def test_a_parse_that_hangs_is_given_up_after_the_time_limit(fake_probe):
    fake_probe("import time\ntime.sleep(60)\n")
    started = time.monotonic()
    assert documents.pdf_problem(pdf(), seconds=1) == "took over 1 seconds to open: not read further"
    assert time.monotonic() - started < 3


def test_one_reader_opens_file_after_file_and_a_new_one_follows_a_file_that_hung(monkeypatch):
    """The reader is started once per worker process, not per file; a killed one is replaced."""
    pdf_reader.ask(pdf(), max_pages=10, memory_bytes=documents.PDF_MEMORY_BYTES, seconds=10)
    first = pdf_reader._reader.process.pid
    for pages in (1, 2, 3):
        assert documents.pdf_verdict(pdf(pages=pages)) == (None, False)
    assert pdf_reader._reader.process.pid == first
    assert documents.pdf_problem(pdf(pages=3), max_pages=2) == "has 3 pages, over the limit of 2"
    assert documents.pdf_problem(hostile_files.encrypted_pdf()).startswith("is encrypted")
    assert pdf_reader._reader.process.pid == first

    old = pdf_reader._reader
    assert documents.pdf_problem(hostile_files.decompression_bomb_pdf(), seconds=0.01) == \
        "took over 0 seconds to open: not read further"
    assert pdf_reader._reader is None and old.process.poll() is not None  # killed
    assert documents.pdf_verdict(pdf()) == (None, False)
    assert pdf_reader._reader.process.pid != first


def test_a_probe_that_cannot_run_is_an_error_not_a_verdict_on_the_file(session, doc_team, fake_probe):
    fake_probe("raise SystemExit('ModuleNotFoundError: No module named pypdf')\n")
    item = new_document_item(session, doc_team)
    attach(session, item, "passport.pdf", pdf())
    result = runner.run_check(session, item.id, "document_pdf", run_key="broken-setup")
    assert (result.status, result.message) == (
        "error", "The check crashed: RuntimeError: the PDF reader did not run: "
                 "ModuleNotFoundError: No module named pypdf")


def test_an_items_pdfs_share_one_time_budget(session, doc_team, monkeypatch):
    item = new_document_item(session, doc_team)
    for n in range(3):
        attach(session, item, f"scan{n}.pdf", pdf(padding=n + 1))
    monkeypatch.setattr(documents, "PDF_CHECK_SECONDS", 0)
    [result] = runner.run_checks(session, item.id, ["document_pdf"], run_key="budget")
    assert result.status == "failed"
    assert "scan2.pdf: was not opened: the item's other PDFs used up the time allowed" in result.message


def test_pages_about_hostile_files_are_never_a_500(client, auth, session, make_user, make_item, doc_team):
    lena = make_user(email="lena@example.com", teams=[doc_team])
    item = make_item(team=doc_team, type="document_verification", assignee=lena, subject="Passport check")
    for name, (filename, make, _expected) in hostile_files.CORPUS.items():
        attach(session, item, f"{name}-{filename}", make())
    runner.run_checks(session, item.id)
    session.commit()
    ref = item.ref
    files = {a.filename.split("-", 1)[0]: a.id for a in session.scalars(
        sa.select(Attachment).join(Message).where(Message.work_item_id == item.id))}
    auth.login("lena@example.com")

    page = client.get(f"/items/{ref}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "svg_with_script-passport.svg" in html  # listed for download, never shown
    assert f"/attachments/{files['svg_with_script']}/inline" not in html and "<script>fetch" not in html
    for name, attachment_id in files.items():
        download = client.get(f"/items/{ref}/attachments/{attachment_id}")
        assert download.status_code == 200, name
        assert download.headers["Content-Disposition"].startswith("attachment;")
        assert download.headers["X-Content-Type-Options"] == "nosniff"
        inline = client.get(f"/items/{ref}/attachments/{attachment_id}/inline")
        assert inline.status_code == 404, name  # not one of them is shown as a picture
        preview = client.get(f"/items/{ref}/attachments/{attachment_id}/preview")
        pdfs = ("encrypted", "malformed_xref", "javascript", "many_pages", "pdf_html_polyglot")
        assert preview.status_code == (422 if name == "decompression_bomb" else 200 if name in pdfs else 404), name
    bomb = client.get(f"/items/{ref}/attachments/{files['decompression_bomb']}/preview")
    assert "Not previewed: the file has a compressed part that inflates to over 256 MB" in bomb.get_data(as_text=True)
    assert client.get(f"/items/{ref}/attachments/{files['svg_with_script']}").headers["Content-Type"] == \
        "application/octet-stream"
    assert client.get(f"/items/{ref}/attachments/{files['pixel_bomb_png']}").headers["Content-Type"] == "image/png"
    assert "PIL" not in sys.modules  # nothing on the server can decode an image's pixels
