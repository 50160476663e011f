"""Checks in the web UI, the API and the CLI: the checks panel with its re-run button, the
attention box, My queue showing items that need attention first (keyset paging included),
field edits and uploads that re-run the checks, rates and team settings from the CLI."""
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from queue_app.models import Event, OutboxJob, WorkItem
from queue_app.models.base import utcnow
from queue_app.services.checks import runner as checks_runner
from queue_app.services.items import lifecycle
from queue_app.services.people.users import issue_api_token
from queue_app.web import paging as web_paging
from tests.check_files import EXE_LIKE, attach, encrypted_pdf, pdf
from tests.conftest import csrf_token_from

API = "/api/v1"


def text(response):
    return response.get_data(as_text=True)


def reload(session, item):
    session.expire_all()
    return session.get(WorkItem, item.id)


def check_jobs(session):
    session.expire_all()
    return session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == checks_runner.RUN_JOB)
                           .order_by(OutboxJob.id)).all()


@pytest.fixture
def world(session, make_team, make_user):
    docs = make_team(name="Documents", work_types=["document_verification", "return"])
    sup = make_user(email="sup@example.com", name="Sam Supervisor", role="supervisor", teams=[docs])
    ana = make_user(email="ana@example.com", name="Ana Exec", teams=[docs])
    tokens = {u.email: issue_api_token(session, u) for u in (sup, ana)}
    session.commit()
    return type("World", (), dict(docs=docs, sup=sup, ana=ana, tokens=tokens))


def bearer(world, email):
    return {"Authorization": f"Bearer {world.tokens[email]}"}


def test_the_item_page_shows_each_check_the_attention_box_and_links(client, auth, session, world, make_item):
    first = make_item(team=world.docs, type="document_verification", assignee=world.ana)
    second = make_item(team=world.docs, type="document_verification", assignee=world.ana)
    data = encrypted_pdf()
    attach(session, first, "passport.pdf", data)
    attach(session, second, "passport.pdf", data)
    checks_runner.run_checks(session, second.id)
    session.commit()
    auth.login("ana@example.com")

    page = text(client.get(f"/items/{second.ref}"))

    assert 'id="attention"' in page and "1 mandatory check failed" in page
    assert "<strong>PDF opens</strong>: PDF not usable: passport.pdf: is encrypted" in page
    panel = re.search(r'<ul class="checks" id="checks">.*?</ul>', page, re.S).group(0)
    assert re.findall(r'data-check="(\w+)"', panel) == checks_runner.CHECKS_BY_TYPE["document_verification"]
    assert 'class="badge check-badge-failed">failed' in panel and "mandatory" in panel
    assert f'<a href="/items/{first.ref}">{first.ref}</a>' in panel  # the same file is on the first item
    assert "needs attention" in page and 'id="rerun-checks"' in page

    other = text(client.get(f"/items/{first.ref}"))
    assert "not run yet" in other and 'id="attention"' not in other


def test_the_rerun_button_records_the_request_and_enqueues_a_new_run(client, auth, session, world, make_item):
    item = make_item(team=world.docs, type="document_verification")
    session.commit()
    auth.login("ana@example.com")
    page = text(client.get(f"/items/{item.ref}"))

    response = client.post(f"/items/{item.ref}/checks/run", data={"csrf_token": csrf_token_from(page)},
                           follow_redirects=True)

    assert "The checks will run again in a moment" in text(response)
    jobs = check_jobs(session)
    assert len(jobs) == 2 and jobs[-1].args[2].startswith("rerun-")
    event = session.scalar(sa.select(Event).where(Event.kind == "checks_requested"))
    assert event.actor_label == "ana@example.com" and event.data["run"] == jobs[-1].args[2]
    assert client.post(f"/items/{item.ref}/checks/run", data={}).status_code == 400  # no CSRF token, no run


def test_editing_details_on_the_item_page_runs_the_checks_again(client, auth, session, world, make_item):
    item = make_item(team=world.docs, type="document_verification", assignee=world.ana)
    session.commit()
    auth.login("ana@example.com")
    page = text(client.get(f"/items/{item.ref}"))
    assert 'id="fields-form"' in page

    response = client.post(f"/items/{item.ref}/fields", follow_redirects=True, data={
        "csrf_token": csrf_token_from(page), "version": item.version, "field-document_type": "bank_statement",
        "field-document_number": "DE89 3704 0044 0532 0130 00", "field-expires_on": ""})

    assert "Details saved; the checks run again." in text(response)
    item = reload(session, item)
    assert (item.document_type, item.document_number, item.expires_on) == (
        "bank_statement", "DE89 3704 0044 0532 0130 00", None)
    assert len(check_jobs(session)) == 2

    stale = client.post(f"/items/{item.ref}/fields", follow_redirects=True, data={
        "csrf_token": csrf_token_from(page), "version": item.version - 1, "field-document_number": "X"})
    assert "was changed by someone else" in text(stale)


def test_my_queue_shows_items_needing_attention_first(client, auth, session, world, make_item):
    now = utcnow()
    calm_soon = make_item(team=world.docs, assignee=world.ana, subject="calm soon", now=now - timedelta(hours=1))
    flagged_late = make_item(team=world.docs, assignee=world.ana, subject="flagged late", now=now)
    calm_late = make_item(team=world.docs, assignee=world.ana, subject="calm late", now=now + timedelta(minutes=5))
    session.execute(sa.update(WorkItem).where(WorkItem.id == flagged_late.id).values(needs_attention=True))
    session.commit()
    auth.login("ana@example.com")

    page = text(client.get("/"))

    table = re.search(r'<table[^>]*id="my-queue".*?</table>', page, re.S).group(0)
    assert re.findall(r'<tr data-ref="(BO-\d+)"', table) == [flagged_late.ref, calm_soon.ref, calm_late.ref]
    assert '<tr data-ref="%s" class="attention">' % flagged_late.ref in table


def test_attention_first_keyset_paging_neither_skips_nor_repeats(session, world, make_item):
    now = utcnow()
    items = [make_item(team=world.docs, assignee=world.ana, now=now + timedelta(minutes=n % 4)) for n in range(9)]
    flagged = {items[n].id for n in (1, 4, 5, 8)}
    session.execute(sa.update(WorkItem).where(WorkItem.id.in_(flagged)).values(needs_attention=True))
    session.execute(sa.update(WorkItem).where(WorkItem.id == items[5].id).values(sla_next_due=None))
    session.commit()
    query = lifecycle.open_items_query(world.ana).where(WorkItem.assignee_id == world.ana.id)
    expected = [i.id for i in sorted(
        session.scalars(query).all(),
        key=lambda i: (not i.needs_attention, i.sla_next_due is None, i.sla_next_due or now, i.id))]

    seen, cursor, pages = [], None, 0
    while True:
        rows, cursor = web_paging.page(session, query, cursor, size=2, attention_first=True)
        seen += [r.id for r in rows]
        pages += 1
        if cursor is None:
            break
    assert seen == expected and pages == 5
    assert set(seen[:4]) == flagged and seen[3] == items[5].id  # a flagged item without a due time ends its group
    assert web_paging.page(session, query, "garbage", size=2, attention_first=True)[0][0].id == expected[0]


def test_api_lists_checks_with_mandatory_flag_and_run(client, session, world, make_item):
    item = make_item(team=world.docs, type="document_verification")
    checks_runner.run_checks(session, item.id)
    session.commit()

    listed = client.get(f"{API}/items/{item.ref}/checks", headers=bearer(world, "ana@example.com")).get_json()

    by_name = {c["name"]: c for c in listed["checks"]}
    assert by_name["document_attached"]["status"] == "failed" and by_name["document_attached"]["mandatory"] is True
    assert by_name["duplicate_document"]["mandatory"] is False
    assert {c["run"] for c in listed["checks"]} == {f"v{item.version}"}


def test_api_field_update_and_upload_run_the_checks_again(client, session, world, make_item):
    item = make_item(team=world.docs, type="document_verification", assignee=world.ana)
    session.commit()
    headers = bearer(world, "ana@example.com")

    patched = client.patch(f"{API}/items/{item.ref}/fields", headers=headers,
                           json={"fields": {"document_number": "Y7654321"}, "version": item.version})
    assert patched.status_code == 200, text(patched)
    assert patched.get_json()["fields"]["document_number"] == "Y7654321"
    stale = client.patch(f"{API}/items/{item.ref}/fields", headers=headers,
                         json={"fields": {"document_number": "Z1"}, "version": item.version})
    assert stale.status_code == 409
    bad = client.patch(f"{API}/items/{item.ref}/fields", headers=headers, json={"fields": {"expires_on": "soon"}})
    assert bad.status_code == 422 and "fields.expires_on" in bad.get_json()["error"]["fields"]

    uploaded = client.post(f"{API}/items/{item.ref}/attachments", headers=headers,
                           data={"file": (io.BytesIO(pdf()), "passport.pdf", "application/pdf")},
                           content_type="multipart/form-data")
    assert uploaded.status_code == 201, text(uploaded)
    body = uploaded.get_json()
    assert body["content_type"] == "application/pdf" and body["filename"] == "passport.pdf"
    assert len(check_jobs(session)) == 3  # creation, the field change, the file

    exe = client.post(f"{API}/items/{item.ref}/attachments", headers=headers,
                      data={"file": (io.BytesIO(EXE_LIKE), "passport.pdf")}, content_type="multipart/form-data")
    assert exe.status_code == 422
    not_multipart = client.post(f"{API}/items/{item.ref}/attachments", headers=headers, json={"file": "x"})
    assert not_multipart.status_code == 415
    no_file = client.post(f"{API}/items/{item.ref}/attachments", headers=headers, data={"other": "x"},
                          content_type="multipart/form-data")
    assert no_file.status_code == 422


def test_api_rerun_needs_a_visible_item(client, session, world, make_team, make_user, make_item):
    hidden = make_item(team=make_team(name="Elsewhere"), type="general")
    session.commit()

    response = client.post(f"{API}/items/{hidden.ref}/checks/run", headers=bearer(world, "ana@example.com"))

    assert response.status_code == 404
    assert len(check_jobs(session)) == 1


def test_cli_rates_settings_and_run(runner, session, world, make_item):
    result = runner.invoke(args=["checks", "rate", "usd", "eur", "0.92", "--valid-from", "2026-01-01"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "1 USD = 0.92 EUR from 2026-01-01"
    assert runner.invoke(args=["checks", "rates"]).output.strip() == "USD EUR 0.92 from 2026-01-01"
    assert runner.invoke(args=["checks", "rate", "USD", "EUR", "-1"]).exit_code != 0

    result = runner.invoke(args=["checks", "settings", "Documents", "--return-window-days", "14",
                                 "--document-format", "national_id=^ID\\d{6}$"])
    assert result.exit_code == 0, result.output
    assert "return window days: 14" in result.output
    assert "document number format national_id: ^ID\\d{6}$" in result.output
    assert "document number format bank_statement: iban" in result.output
    bad = runner.invoke(args=["checks", "settings", "Documents", "--tolerance-percent", "-3"])
    assert bad.exit_code != 0 and "tolerance_percent" in bad.output

    item = make_item(team=world.docs, type="document_verification")
    session.commit()
    result = runner.invoke(args=["checks", "run", item.ref])
    assert result.exit_code == 0, result.output
    assert "failed   document_attached: No document is attached" in result.output
    assert reload(session, item).needs_attention is True
