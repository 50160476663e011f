"""The verification workspace: verdicts per document, the request for a new document and the
document that answers it (upload and email), the gate on resolving as verified with failed
checks, a supervisor's override, and the re-verification timer before expiry."""
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from queue_app.models import CheckResult, DocumentVerdict, Event, Message, OutboxJob, WorkItem
from queue_app.services.checks import runner
from queue_app.services.checks import settings as check_settings
from queue_app.services.errors import Invalid, NotFound, PermissionDenied
from queue_app.services.intake import filing, mailboxes
from queue_app.services.items import attachments as item_files
from queue_app.services.items import lifecycle, state, verification
from queue_app.services.people.users import issue_api_token
from tests.check_files import attach, pdf, png
from tests.conftest import csrf_token_from
from tests.integration.test_intake import mail

DOCS_BOX = "documents@backdesk.example.com"
REQUESTER = "customer@example.com"
PASSPORT = {"document_type": "passport", "document_number": "C01X00T47", "expires_on": "2031-05-01"}


@pytest.fixture
def world(session, make_team, make_user, make_item):
    docs = make_team(name="Documents", work_types=["document_verification"])
    other = make_team(name="Returns", work_types=["return"])
    sup = make_user(email="sup@example.com", name="Sam Supervisor", role="supervisor", teams=[docs])
    ana = make_user(email="ana@example.com", name="Ana Exec", teams=[docs])
    ben = make_user(email="ben@example.com", name="Ben Colleague", teams=[docs])
    olga = make_user(email="olga@example.com", name="Olga Elsewhere", teams=[other])
    mailboxes.create_mailbox(session, address=DOCS_BOX, type="document_verification", team_name="Documents",
                             priority="normal")
    item = make_item(team=docs, type="document_verification", assignee=ana, fields=PASSPORT)
    scan = attach(session, item, "passport.pdf", pdf(), sender=REQUESTER)
    session.commit()
    return type("World", (), dict(docs=docs, other=other, sup=sup, ana=ana, ben=ben, olga=olga, item=item, scan=scan))


def events(session, item, kind):
    session.expire_all()
    return session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == kind)
                           .order_by(Event.id)).all()


def fail_a_mandatory_check(session, item):
    """What the checks runner leaves when the expiry check failed: the result and the flag."""
    session.add(CheckResult(work_item_id=item.id, name="document_expiry", status="failed",
                            message="The document expired", run_key=f"v{item.version}"))
    session.flush()
    runner.refresh_needs_attention(session, item)
    session.commit()


# --- verdicts -------------------------------------------------------------------------------

def test_a_verdict_is_appended_with_its_event_and_the_latest_is_current(session, world):
    verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="rejected",
                                reason="Illegible or cut off", note="The photo page is blurred")
    session.commit()
    verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="verified")
    session.commit()

    rows = session.scalars(sa.select(DocumentVerdict).order_by(DocumentVerdict.id)).all()
    assert [(r.verdict, r.reason) for r in rows] == [("rejected", "Illegible or cut off"), ("verified", None)]
    assert verification.workspace(session, world.item).verdicts[world.scan.id].verdict == "verified"
    assert [(e.data["verdict"], e.data["filename"], e.actor_id) for e in events(session, world.item, "document_verdict")] \
        == [("rejected", "passport.pdf", world.ana.id), ("verified", "passport.pdf", world.ana.id)]


@pytest.mark.parametrize("reason, problem", [(None, "choose a reason"), ("Looks off", "choose a reason"),
                                             ("Expired ", None)])
def test_a_rejection_names_a_reason_from_the_teams_list(session, world, reason, problem):
    if problem is None:
        verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="rejected",
                                    reason=reason)
        assert session.scalar(sa.select(DocumentVerdict.reason)) == "Expired"
        return
    with pytest.raises(Invalid) as refused:
        verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="rejected",
                                    reason=reason)
    assert refused.value.fields == {"reason": problem}


def test_the_team_keeps_its_own_reasons(session, world):
    check_settings.update_settings(session, world.docs, document_rejection_reasons="Wrong customer\n\nNo photo page\n")
    assert verification.workspace(session, world.item).reasons == ("Wrong customer", "No photo page")
    with pytest.raises(Invalid):
        verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="rejected",
                                    reason="Expired")
    verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="rejected",
                                reason="No photo page")


def test_verdicts_are_refused_to_others_on_other_items_and_on_closed_items(session, world, make_item):
    with pytest.raises(NotFound):  # another team's item is not there for her
        verification.record_verdict(session, world.item, world.scan.id, actor=world.olga, verdict="verified")
    with pytest.raises(PermissionDenied):  # a supervisor's team, but not the item's assignee
        verification.record_verdict(session, world.item, world.scan.id, actor=world.ben, verdict="verified")
    other = make_item(team=world.docs, type="document_verification", assignee=world.ana, fields=PASSPORT)
    elsewhere = attach(session, other, "licence.pdf", pdf())
    with pytest.raises(NotFound):  # a document of another item
        verification.record_verdict(session, world.item, elsewhere.id, actor=world.ana, verdict="verified")
    with pytest.raises(Invalid):
        verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="fine")
    returns_item = make_item(team=world.other, type="return", assignee=world.olga)
    with pytest.raises(Invalid) as refused:
        verification.record_verdict(session, returns_item, world.scan.id, actor=world.olga, verdict="verified")
    assert "not a document verification" in refused.value.message
    state.change_status(session, world.item, "resolved", actor=world.ana)
    with pytest.raises(Invalid) as refused:
        verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="verified")
    assert "reopen it" in refused.value.message


# --- resubmission needed, and the document that answers it ---------------------------------

def request_new_document(session, world):
    verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="resubmission_needed",
                                reason="Illegible or cut off", note="Please photograph it in daylight.")
    session.commit()
    session.expire_all()
    return session.scalar(sa.select(Message).where(Message.work_item_id == world.item.id,
                                                   Message.kind == "outbound").order_by(Message.id.desc()))


def test_resubmission_needed_emails_the_templated_request_on_the_thread_and_waits_for_the_customer(session, world):
    inbound = session.scalar(sa.select(Message).where(Message.work_item_id == world.item.id, Message.kind == "inbound"))
    inbound.message_id = "<scan-1@customer.example.com>"
    session.commit()

    request = request_new_document(session, world)

    assert request.to_addresses == REQUESTER and request.in_reply_to == "<scan-1@customer.example.com>"
    assert request.subject.startswith(f"[{world.item.ref}]")
    assert "passport.pdf" in request.body_text and "illegible or cut off" in request.body_text
    assert "photograph it in daylight" in request.body_text
    sends = session.scalars(sa.select(OutboxJob.args).where(OutboxJob.job_path == "workers.mail_out.send_message"))
    assert [request.id] in list(sends)
    assert world.item.status == "pending_customer"
    assert verification.workspace(session, world.item).waiting_for_document
    [asked] = events(session, world.item, "resubmission_requested")
    assert asked.data["message_id"] == request.id


def test_a_request_needs_a_requester_to_ask(session, world):
    world.item.requester_email = None
    session.commit()
    with pytest.raises(Invalid) as refused:
        verification.record_verdict(session, world.item, world.scan.id, actor=world.ana,
                                    verdict="resubmission_needed")
    assert refused.value.fields == {"requester_email": "missing"}


def test_an_uploaded_document_brings_the_item_back_once(session, world):
    request_new_document(session, world)

    item_files.add_files(session, world.item, actor=world.ana,
                         files=[item_files.UploadedFile("passport-new.pdf", pdf())])
    session.commit()

    assert world.item.status == "open"
    [back] = events(session, world.item, "new_document_received")
    assert back.data == {"filenames": ["passport-new.pdf"]}
    assert events(session, world.item, "status_changed")[-1].data["comment"] == "new document received"
    item_files.add_files(session, world.item, actor=world.ana, files=[item_files.UploadedFile("back.png", png())])
    session.commit()
    assert len(events(session, world.item, "new_document_received")) == 1  # the request was answered


def test_the_requesters_emailed_document_brings_the_item_back(session, world):
    request = request_new_document(session, world)

    raw = mail(f"Re: {request.subject}", sender=f"Customer <{REQUESTER}>", to=DOCS_BOX, body="Here it is.\n",
               attachments=[("passport-again.pdf", pdf(), "application/pdf")], In_Reply_To=request.message_id)
    inbound = filing.receive(session, raw, source="smtp")
    outcome = filing.process(session, inbound)
    session.commit()

    assert (outcome.status, outcome.item.id) == ("followup", world.item.id)
    session.expire_all()
    assert session.get(WorkItem, world.item.id).status == "open"
    [back] = events(session, world.item, "new_document_received")
    assert back.data == {"filenames": ["passport-again.pdf"]} and back.actor_label == REQUESTER


def test_a_strangers_or_a_text_only_reply_does_not_answer_the_request(session, world):
    request = request_new_document(session, world)
    for sender, files in ((f"Someone <stranger@elsewhere.example.com>", [("fake.pdf", pdf(), "application/pdf")]),
                          (f"Customer <{REQUESTER}>", [])):
        raw = mail(f"Re: {request.subject}", sender=sender, to=DOCS_BOX, attachments=files,
                   In_Reply_To=request.message_id)
        filing.process(session, filing.receive(session, raw, source="smtp"))
        session.commit()
    session.expire_all()
    assert session.get(WorkItem, world.item.id).status == "pending_customer"
    assert events(session, world.item, "new_document_received") == []


# --- the gate: resolving as verified with failed checks ------------------------------------

def test_failed_mandatory_checks_block_resolving_as_verified_on_every_path(session, world, client, auth):
    fail_a_mandatory_check(session, world.item)

    with pytest.raises(Invalid) as refused:
        lifecycle.change_status(session, world.item, "resolved", actor=world.ana)
    assert refused.value.fields == {"status": "checks failed"} and "document expiry" in refused.value.message
    session.rollback()

    token = issue_api_token(session, world.ana)
    session.commit()
    response = client.post(f"/api/v1/items/{world.item.ref}/status", json={"status": "resolved"},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 422 and "cannot be resolved as verified" in response.get_json()["error"]["message"]

    auth.login(world.ana.email)
    page = client.get(f"/items/{world.item.ref}").get_data(as_text=True)
    assert 'id="verification-blocked"' in page and 'id="override"' not in page  # an executive cannot override
    response = client.post(f"/items/{world.item.ref}/status", follow_redirects=True, data={
        "csrf_token": csrf_token_from(page), "status": "resolved", "version": world.item.version})
    assert "cannot be resolved as verified" in response.get_data(as_text=True)
    session.expire_all()
    assert session.get(WorkItem, world.item.id).status != "resolved"


def test_a_rejection_may_be_resolved_with_failed_checks(session, world):
    fail_a_mandatory_check(session, world.item)
    verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="rejected",
                                reason="Expired")
    lifecycle.change_status(session, world.item, "resolved", actor=world.ana)
    assert world.item.status == "resolved"


def test_a_supervisors_override_covers_the_failures_it_names_and_no_later_one(session, world):
    fail_a_mandatory_check(session, world.item)
    with pytest.raises(PermissionDenied):
        verification.override_failed_checks(session, world.item, actor=world.ana, reason="I know the customer")
    with pytest.raises(Invalid):
        verification.override_failed_checks(session, world.item, actor=world.sup, reason="  ")

    verification.override_failed_checks(session, world.item, actor=world.sup,
                                        reason="Renewal confirmed by the passport office on the phone")
    session.commit()
    [overridden] = events(session, world.item, "checks_overridden")
    assert overridden.data == {"checks": ["document_expiry"],
                               "reason": "Renewal confirmed by the passport office on the phone"}
    assert overridden.actor_id == world.sup.id

    # A check that fails after the override is not covered by it.
    session.add(CheckResult(work_item_id=world.item.id, name="document_number", status="failed",
                            message="bad number", run_key="rerun-1"))
    session.commit()
    with pytest.raises(Invalid):
        lifecycle.change_status(session, world.item, "resolved", actor=world.ana)
    session.rollback()
    session.add(CheckResult(work_item_id=world.item.id, name="document_number", status="passed",
                            message="fine", run_key="rerun-2"))
    session.commit()
    lifecycle.change_status(session, world.item, "resolved", actor=world.ana)
    assert world.item.status == "resolved"


def test_the_real_checks_flag_an_item_without_its_document(session, world, make_item):
    bare = make_item(team=world.docs, type="document_verification", assignee=world.ana, fields=PASSPORT)
    session.commit()
    runner.run_checks(session, bare.id)
    session.commit()
    assert bare.needs_attention
    with pytest.raises(Invalid) as refused:
        lifecycle.change_status(session, bare, "resolved", actor=world.ana)
    assert "document attached" in refused.value.message


def test_the_override_form_on_the_item_page(session, world, client, auth):
    fail_a_mandatory_check(session, world.item)
    auth.login(world.sup.email)
    page = client.get(f"/items/{world.item.ref}").get_data(as_text=True)
    assert 'id="override"' in page
    response = client.post(f"/items/{world.item.ref}/checks/override", follow_redirects=True,
                           data={"csrf_token": csrf_token_from(page), "reason": "Checked by phone"})
    assert "Failed checks overridden" in response.get_data(as_text=True)
    assert len(events(session, world.item, "checks_overridden")) == 1


# --- the workspace on the item page ----------------------------------------------------------

def test_the_workspace_records_a_verdict_from_the_item_page(session, world, client, auth):
    auth.login(world.ana.email)
    page = client.get(f"/items/{world.item.ref}").get_data(as_text=True)
    assert 'id="verification"' in page and "Illegible or cut off" in page
    url = f"/items/{world.item.ref}/documents/{world.scan.id}/verdict"

    response = client.post(url, follow_redirects=True, data={"csrf_token": csrf_token_from(page), "verdict": "rejected"})
    assert "Choose the reason for the rejection" in response.get_data(as_text=True)
    response = client.post(url, data={"verdict": "verified"})
    assert response.status_code == 400  # no CSRF token
    response = client.post(url, follow_redirects=True, data={"csrf_token": csrf_token_from(page), "verdict": "verified"})
    assert "Document marked verified" in response.get_data(as_text=True)
    assert [v.verdict for v in session.scalars(sa.select(DocumentVerdict))] == ["verified"]


def test_another_teams_executive_cannot_see_or_judge_the_documents(session, world, client, auth):
    auth.login(world.olga.email)
    page = client.get("/").get_data(as_text=True)
    response = client.post(f"/items/{world.item.ref}/documents/{world.scan.id}/verdict",
                           data={"csrf_token": csrf_token_from(page), "verdict": "verified"})
    assert response.status_code in (403, 404)
    assert session.scalars(sa.select(DocumentVerdict)).all() == []


# --- re-verification before expiry ---------------------------------------------------------

def test_a_verified_expiring_document_schedules_one_reverification_item(session, world):
    check_settings.update_settings(session, world.docs, reverification_days=30)
    session.commit()
    verdict = verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="verified")
    session.commit()

    [timer] = session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == verification.REVERIFY_JOB)).all()
    assert timer.args == [verdict.id]
    assert timer.run_at == datetime(2031, 4, 1, 9, 0, tzinfo=timezone.utc)

    new = verification.open_reverification(session, verdict.id)
    session.commit()
    assert verification.open_reverification(session, verdict.id) is None  # the timer ran twice: one item
    assert (new.type, new.team_id, new.requester_email, new.document_type) == \
        ("document_verification", world.docs.id, REQUESTER, "passport")
    assert "2031-05-01" in new.subject and world.item.ref in new.subject
    assert events(session, world.item, "reverification_opened")[0].data == {"ref": new.ref}
    assert session.scalar(sa.select(sa.func.count()).select_from(WorkItem)) == 2


def test_a_superseded_verdict_opens_nothing_and_teams_without_the_setting_schedule_nothing(session, world):
    verdict = verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="verified")
    session.commit()
    assert session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == verification.REVERIFY_JOB)).all() == []

    verification.record_verdict(session, world.item, world.scan.id, actor=world.ana, verdict="rejected",
                                reason="Signs of tampering")
    session.commit()
    assert verification.open_reverification(session, verdict.id) is None


def test_reverification_days_are_checked(session, world):
    for bad in ("0", "-3", "4000", "soon"):
        with pytest.raises(Invalid):
            check_settings.update_settings(session, world.docs, reverification_days=bad)
    assert check_settings.update_settings(session, world.docs, reverification_days="14").reverification_days == 14
    assert check_settings.update_settings(session, world.docs, reverification_days="").reverification_days is None


# --- the API ---------------------------------------------------------------------------------

def test_the_api_lists_documents_records_verdicts_and_overrides(session, world, client):
    ana, sup = issue_api_token(session, world.ana), issue_api_token(session, world.sup)
    session.commit()

    def call(method, path, token, **kw):
        return client.open(f"/api/v1/items/{world.item.ref}{path}", method=method,
                           headers={"Authorization": f"Bearer {token}"}, **kw)

    listed = call("GET", "/documents", ana).get_json()
    assert [(d["filename"], d["verdict"]) for d in listed["documents"]] == [("passport.pdf", None)]
    assert "Expired" in listed["rejection_reasons"] and listed["failed_checks"] == []

    refused = call("POST", f"/documents/{world.scan.id}/verdict", ana, json={"verdict": "rejected"})
    assert refused.status_code == 422 and refused.get_json()["error"]["fields"] == {"reason": "choose a reason"}
    made = call("POST", f"/documents/{world.scan.id}/verdict", ana, json={"verdict": "rejected", "reason": "Expired"})
    assert made.status_code == 201
    assert (made.get_json()["verdict"], made.get_json()["decided_by"]) == ("rejected", "ana@example.com")
    assert call("POST", "/documents/999999/verdict", ana, json={"verdict": "verified"}).status_code == 404

    fail_a_mandatory_check(session, world.item)
    assert call("POST", "/checks/override", ana, json={"reason": "fine"}).status_code == 403
    overridden = call("POST", "/checks/override", sup, json={"reason": "Confirmed by phone"})
    assert overridden.status_code == 201 and overridden.get_json()["checks"] == ["document_expiry"]
    assert call("GET", "/documents", ana).get_json()["overridden"] is True


def test_the_api_says_a_return_has_no_documents_to_judge(session, world, client, make_item):
    returns_item = make_item(team=world.other, type="return", assignee=world.olga)
    token = issue_api_token(session, world.olga)
    session.commit()
    response = client.get(f"/api/v1/items/{returns_item.ref}/documents", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 422 and "not a document verification" in response.get_json()["error"]["message"]
