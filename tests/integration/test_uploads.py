"""Files added by people: the item page's upload (with and without the upload script), the
front-office form's documents and the API, all through services.items.attachments."""
import io
import re

import pytest
import sqlalchemy as sa

from queue_app.models import Attachment, Event, Message, OutboxJob, WorkItem
from queue_app.services.checks import runner as checks_runner
from queue_app.services.checks import settings as check_settings
from queue_app.services.items import lifecycle
from queue_app.services.people.users import issue_api_token
from tests.check_files import EXE_LIKE, pdf, png
from tests.conftest import csrf_token_from

API = "/api/v1"


def text(response):
    return response.get_data(as_text=True)


def check_jobs(session, item):
    session.expire_all()
    return [job for job in session.scalars(sa.select(OutboxJob).where(OutboxJob.job_path == checks_runner.RUN_JOB)
                                           .order_by(OutboxJob.id)) if job.args[0] == item.id]


def added_events(session, item):
    session.expire_all()
    return session.scalars(sa.select(Event).where(Event.work_item_id == item.id, Event.kind == "attachment_added")
                           .order_by(Event.id)).all()


def attachments_of(session, item):
    session.expire_all()
    return session.scalars(sa.select(Attachment).join(Message).where(Message.work_item_id == item.id)
                           .order_by(Attachment.id)).all()


@pytest.fixture
def world(session, make_team, make_user, make_item):
    docs = make_team(name="Documents", work_types=["document_verification", "return"])
    other = make_team(name="Returns", work_types=["return"])
    sup = make_user(email="sup@example.com", name="Sam Supervisor", role="supervisor", teams=[docs])
    ana = make_user(email="ana@example.com", name="Ana Exec", teams=[docs])
    ben = make_user(email="ben@example.com", name="Ben Colleague", teams=[docs])
    olga = make_user(email="olga@example.com", name="Olga Elsewhere", teams=[other])
    item = make_item(team=docs, type="document_verification", assignee=ana)
    token = issue_api_token(session, ana)
    check_settings.update_settings(session, docs, max_document_bytes=20_000)
    session.commit()
    return type("World", (), dict(docs=docs, other=other, sup=sup, ana=ana, ben=ben, olga=olga, item=item,
                                  token=token))


def signed_in(auth, email):
    auth.login(email)
    return auth.client


def token_of(client, ref):
    return csrf_token_from(text(client.get(f"/items/{ref}")))


def post_files(client, ref, files, *, token=None, json=False):
    data = {"files": [(io.BytesIO(body), name) for name, body in files]}
    if token is not False:
        data["csrf_token"] = token or token_of(client, ref)
    headers = {"Accept": "application/json"} if json else {}
    return client.post(f"/items/{ref}/attachments", data=data, content_type="multipart/form-data",
                       headers=headers)


def test_the_item_page_offers_the_upload_box_with_the_teams_limits(auth, world):
    client = signed_in(auth, "ana@example.com")

    page = text(client.get(f"/items/{world.item.ref}"))

    assert 'id="upload-form"' in page and 'enctype="multipart/form-data"' in page
    assert 'name="files" multiple' in page
    assert "PDF, PNG, JPEG, TIFF; at most 19.5 KB each and 30 MB in one upload" in page
    assert "/static/upload.js" in page and "/static/css/upload.css" in page


def test_several_files_at_once_each_refusal_said_and_the_rest_added(auth, session, world):
    client = signed_in(auth, "ana@example.com")
    jobs_before = len(check_jobs(session, world.item))

    response = post_files(client, world.item.ref, [
        ("passport.pdf", pdf()), ("photo.png", png()), ("notes.txt", b"just some text"),
        ("scan.pdf", pdf(padding=30_000)), ("setup.pdf", EXE_LIKE), ("empty.pdf", b"")])

    assert response.status_code == 302
    page = text(client.get(response.headers["Location"]))
    assert "Added 2 files: passport.pdf, photo.png. The checks run again." in page
    assert "notes.txt was not added: the content is text/plain; the team accepts PDF, PNG, JPEG, TIFF." in page
    assert "scan.pdf was not added: the file is 29.7 KB, over the team&#39;s limit of 19.5 KB." in page
    assert "setup.pdf was not added: executable programs are not accepted." in page
    assert "empty.pdf was not added: the file is empty." in page
    files = attachments_of(session, world.item)
    assert [(a.filename, a.content_type) for a in files] == [("passport.pdf", "application/pdf"),
                                                             ("photo.png", "image/png")]
    assert files[0].message.kind == "note" and files[0].message.author_id == world.ana.id
    assert files[0].message_id == files[1].message_id  # one note for the upload
    assert f'id="attachment-{files[0].id}"' in page and f'id="attachment-{files[1].id}"' in page
    events = added_events(session, world.item)
    assert [(e.data["filename"], e.actor_id) for e in events] == [("passport.pdf", world.ana.id),
                                                                  ("photo.png", world.ana.id)]
    assert events[0].data["sha256"] == files[0].sha256 and events[1].data["size"] == len(png())
    jobs = check_jobs(session, world.item)
    assert len(jobs) == jobs_before + 1  # one run for the whole upload, after the commit
    assert jobs[-1].args == [world.item.id, session.get(WorkItem, world.item.id).version]


def test_the_upload_script_gets_json_and_the_messages_wait_on_the_page(auth, session, world):
    client = signed_in(auth, "ana@example.com")

    response = post_files(client, world.item.ref, [("a.pdf", pdf()), ("b.exe", EXE_LIKE)], json=True)

    assert response.status_code == 200
    body = response.get_json()
    assert body["redirect"] == f"/items/{world.item.ref}"
    assert [f["filename"] for f in body["added"]] == ["a.pdf"]
    assert body["refused"] == [{"filename": "b.exe", "reason": "executable programs are not accepted"}]
    page = text(client.get(body["redirect"]))
    assert "Added a.pdf. The checks run again." in page and "b.exe was not added" in page

    refused = post_files(client, world.item.ref, [("c.txt", b"text")], json=True)
    assert refused.status_code == 422 and refused.get_json()["added"] == []


def test_an_executable_is_refused_by_its_content_whatever_its_name(auth, session, world):
    client = signed_in(auth, "ana@example.com")

    response = post_files(client, world.item.ref, [("invoice.pdf", EXE_LIKE)])

    page = text(client.get(response.headers["Location"]))
    assert "invoice.pdf was not added: executable programs are not accepted." in page
    assert attachments_of(session, world.item) == [] and added_events(session, world.item) == []


def test_upload_needs_the_csrf_token(auth, session, world):
    client = signed_in(auth, "ana@example.com")

    response = post_files(client, world.item.ref, [("passport.pdf", pdf())], token=False)
    as_json = post_files(client, world.item.ref, [("passport.pdf", pdf())], token="forged", json=True)

    assert response.status_code == 400 and "The form was refused" in text(response)
    assert as_json.status_code == 400 and as_json.get_json()["error"]["code"] == "csrf_failed"
    assert attachments_of(session, world.item) == []


def test_who_may_upload(auth, client, session, world):
    ref = world.item.ref
    olga = signed_in(auth, "olga@example.com")  # another team: the item does not exist for her
    refused = olga.post(f"/items/{ref}/attachments", content_type="multipart/form-data",
                        data={"csrf_token": _any_token(olga), "files": [(io.BytesIO(pdf()), "p.pdf")]})
    assert refused.status_code == 404 and attachments_of(session, world.item) == []
    auth.logout()

    ben = signed_in(auth, "ben@example.com")  # same team, not the assignee: may read, not work
    page = text(ben.get(f"/items/{ref}"))
    assert 'id="upload-form"' not in page
    response = post_files(ben, ref, [("p.pdf", pdf())])
    assert "Only the assignee or a supervisor of the team can do this" in text(ben.get(response.headers["Location"]))
    auth.logout()

    sup = signed_in(auth, "sup@example.com")  # a supervisor of the team may
    post_files(sup, ref, [("p.pdf", pdf())])
    assert [a.filename for a in attachments_of(session, world.item)] == ["p.pdf"]


def _any_token(client):
    return csrf_token_from(text(client.get("/")))


def test_a_closed_item_refuses_files(auth, session, world):
    item = session.get(WorkItem, world.item.id)
    lifecycle.change_status(session, item, "closed", actor=world.sup)
    session.commit()
    client = signed_in(auth, "ana@example.com")

    page = text(client.get(f"/items/{item.ref}"))
    assert 'id="upload-form"' not in page and "is closed: reopen it to add files" in page
    response = post_files(client, item.ref, [("passport.pdf", pdf())], token=_any_token(client))

    assert f"{item.ref} is closed; reopen it before adding files" in text(client.get(response.headers["Location"]))
    assert attachments_of(session, item) == []


def test_no_file_chosen_is_a_message(auth, session, world):
    client = signed_in(auth, "ana@example.com")

    response = client.post(f"/items/{world.item.ref}/attachments", content_type="multipart/form-data",
                           data={"csrf_token": token_of(client, world.item.ref),
                                 "files": [(io.BytesIO(b""), "")]})

    assert "Choose at least one file to upload." in text(client.get(response.headers["Location"]))


def test_a_request_over_the_app_limit_is_a_clear_413(app, auth, world):
    client = signed_in(auth, "ana@example.com")
    token = token_of(client, world.item.ref)
    saved = app.config["MAX_CONTENT_LENGTH"]
    app.config["MAX_CONTENT_LENGTH"] = 50_000
    try:
        page = post_files(client, world.item.ref, [("big.pdf", pdf(padding=60_000))], token=token)
        as_json = post_files(client, world.item.ref, [("big.pdf", pdf(padding=60_000))], token=token, json=True)
    finally:
        app.config["MAX_CONTENT_LENGTH"] = saved

    assert page.status_code == 413 and "The request is too large (limit 48.8 KB)." in text(page)
    assert as_json.status_code == 413 and as_json.get_json()["error"]["code"] == "too_large"


def test_submit_with_documents(auth, session, world):
    client = signed_in(auth, "olga@example.com")  # front office files for any team
    form = text(client.get("/submit"))
    assert 'enctype="multipart/form-data"' in form and 'name="files"' in form

    response = client.post("/submit", content_type="multipart/form-data", data={
        "csrf_token": csrf_token_from(form), "type": "general", "subject": "Change of address",
        "requester_email": "carla@customer.example.com",
        "files": [(io.BytesIO(pdf()), "delivery note.pdf"), (io.BytesIO(b"MZ" + EXE_LIKE), "tool.exe")]})

    assert response.status_code == 302, text(response)
    item = session.scalar(sa.select(WorkItem).where(WorkItem.subject == "Change of address"))
    confirmation = text(client.get(response.headers["Location"]))
    assert "delivery note.pdf" in confirmation
    assert f"tool.exe was not added to {item.ref}: executable programs are not accepted." in confirmation
    [attachment] = attachments_of(session, item)
    assert (attachment.filename, attachment.content_type) == ("delivery note.pdf", "application/pdf")
    [event] = added_events(session, item)
    assert event.actor_id == world.olga.id and event.data["filename"] == "delivery note.pdf"
    assert len(check_jobs(session, item)) == 2  # the new item's run, and the one after its files


def test_submit_without_documents_still_works(auth, session, world):
    client = signed_in(auth, "olga@example.com")
    form = text(client.get("/submit"))

    response = client.post("/submit", content_type="multipart/form-data", data={
        "csrf_token": csrf_token_from(form), "type": "general", "subject": "No files",
        "requester_email": "carla@customer.example.com", "files": [(io.BytesIO(b""), "")]})

    assert response.status_code == 302, text(response)
    item = session.scalar(sa.select(WorkItem).where(WorkItem.subject == "No files"))
    assert attachments_of(session, item) == []


def test_the_api_upload_goes_through_the_same_rules(client, session, world):
    headers = {"Authorization": f"Bearer {world.token}"}
    url = f"{API}/items/{world.item.ref}/attachments"

    ok = client.post(url, headers=headers, content_type="multipart/form-data",
                     data={"file": (io.BytesIO(png()), "photo.png", "image/png")})
    too_big = client.post(url, headers=headers, content_type="multipart/form-data",
                          data={"file": (io.BytesIO(pdf(padding=30_000)), "big.pdf")})
    wrong_type = client.post(url, headers=headers, content_type="multipart/form-data",
                             data={"file": (io.BytesIO(b"plain text"), "notes.txt")})
    empty = client.post(url, headers=headers, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(b""), "empty.pdf")})

    assert ok.status_code == 201 and ok.get_json()["content_type"] == "image/png"
    assert too_big.status_code == 422 and "over the team's limit" in too_big.get_json()["error"]["message"]
    assert wrong_type.status_code == 422 and wrong_type.get_json()["error"]["fields"]["file"].startswith(
        "the content is text/plain")
    assert empty.status_code == 422 and "empty" in empty.get_json()["error"]["message"]
    assert [e.data["filename"] for e in added_events(session, world.item)] == ["photo.png"]


def test_a_team_may_allow_other_types(auth, session, world):
    check_settings.update_settings(session, world.docs, allowed_document_types="application/pdf, text/plain")
    session.commit()
    client = signed_in(auth, "ana@example.com")

    response = post_files(client, world.item.ref, [("notes.txt", b"plain text"), ("photo.png", png())])

    page = text(client.get(response.headers["Location"]))
    assert "Added notes.txt." in page and "photo.png was not added: the content is image/png; the team accepts " \
                                          "PDF, text/plain." in page
    with pytest.raises(Exception) as refused:
        check_settings.update_settings(session, world.docs, allowed_document_types=["application/x-msdownload"])
    assert "cannot be allowed" in str(refused.value)


def test_submit_refused_asks_for_the_files_again(auth, session, world):
    client = signed_in(auth, "olga@example.com")
    form = text(client.get("/submit"))

    response = client.post("/submit", content_type="multipart/form-data", data={
        "csrf_token": csrf_token_from(form), "type": "general", "subject": "",
        "requester_email": "carla@customer.example.com", "files": [(io.BytesIO(pdf()), "scan.pdf")]})

    assert response.status_code == 422
    assert "Choose the documents again" in text(response)
    assert session.scalar(sa.select(sa.func.count()).select_from(Attachment)) == 0


def test_the_api_refuses_files_from_a_colleague_who_does_not_work_the_item(client, session, world):
    token = issue_api_token(session, world.ben)
    session.commit()

    response = client.post(f"{API}/items/{world.item.ref}/attachments", content_type="multipart/form-data",
                           headers={"Authorization": f"Bearer {token}"},
                           data={"file": (io.BytesIO(pdf()), "passport.pdf")})

    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"


def test_the_cli_sets_and_shows_the_allowed_document_types(runner, world):
    result = runner.invoke(args=["checks", "settings", "Documents", "--allowed-document-types",
                                 "application/pdf,image/gif"])
    assert result.exit_code == 0, result.output
    assert "allowed document types: application/pdf, image/gif" in result.output

    bad = runner.invoke(args=["checks", "settings", "Documents", "--allowed-document-types", "text/html"])
    assert bad.exit_code != 0 and "cannot be allowed: text/html" in bad.output

    back = runner.invoke(args=["checks", "settings", "Documents", "--allowed-document-types", ""])
    assert "allowed document types: application/pdf, image/png, image/jpeg, image/tiff" in back.output


def test_odd_names_and_claimed_types_are_stored_safely(auth, session, world):
    client = signed_in(auth, "ana@example.com")
    token = token_of(client, world.item.ref)

    client.post(f"/items/{world.item.ref}/attachments", content_type="multipart/form-data", data={
        "csrf_token": token,
        "files": [(io.BytesIO(pdf()), "..\\..\\evil\u202efdp.exe\x00.pdf", "application/pdf\x00; x=1"),
                  (io.BytesIO(png()), "...", "image/png" + "x" * 200)]})

    first, second = attachments_of(session, world.item)
    assert (first.filename, first.content_type) == ("evilfdp.exe.pdf", "application/pdf")
    assert first.declared_content_type is None
    assert (second.filename, second.declared_content_type) == ("document", None)


def test_plain_images_are_previewed_in_the_thread_unless_flagged(auth, session, world):
    client = signed_in(auth, "ana@example.com")
    post_files(client, world.item.ref, [("photo.png", png()), ("passport.pdf", pdf())])
    photo, passport = attachments_of(session, world.item)
    flagged = Message(work_item_id=world.item.id, kind="inbound", from_address="stranger@example.net",
                      body_text="see this", flagged_for_review=True)
    session.add(flagged)
    session.flush()
    session.add(Attachment(message_id=flagged.id, filename="odd.png", content_type="image/png", size=photo.size,
                           sha256=photo.sha256))
    session.commit()

    page = text(client.get(f"/items/{world.item.ref}"))

    previews = re.findall(r'<img class="attachment-thumb" src="([^"]+)" alt="([^"]+)"', page)
    assert previews == [(f"/items/{world.item.ref}/attachments/{photo.id}/inline", "Preview of photo.png")]
    shown = client.get(previews[0][0])
    assert shown.status_code == 200 and shown.headers["Content-Type"] == "image/png"
    assert shown.data == png()


def test_a_claimed_type_never_decides(auth, session, world):
    check_settings.update_settings(session, world.docs, allowed_document_types="application/pdf,text/plain")
    session.commit()
    client = signed_in(auth, "ana@example.com")

    response = post_files(client, world.item.ref, [("mail.eml", EXE_LIKE)], json=True)
    client.post(f"/items/{world.item.ref}/attachments", content_type="multipart/form-data",
                headers={"Accept": "application/json"},
                data={"csrf_token": token_of(client, world.item.ref),
                      "files": [(io.BytesIO(b"Subject: hi\r\n\r\nplain words"), "mail.eml", "message/rfc822")]})

    assert response.get_json()["refused"][0]["reason"] == "executable programs are not accepted"
    [stored] = attachments_of(session, world.item)
    assert (stored.content_type, stored.declared_content_type) == ("text/plain", "message/rfc822")
