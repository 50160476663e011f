"""Notification preferences in a real browser: a kind set to the app only writes no email, and the
bell counts it; marking it read clears the bell."""
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from queue_app.models import Notification, OutboxJob
from queue_app.services.assignment import manual
from queue_app.services.people import notifications
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def world(session, make_team, make_user, make_item):
    team = make_team(name="Returns", work_types=["return", "general"])
    sam = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor", teams=[team])
    ana = make_user(email="ana@example.com", name="Ana Exec", teams=[team])
    item = make_item(team=team, type="general", subject="Kettle refund")
    session.commit()
    return type("World", (), dict(team=team, sam=sam, ana=ana, item=item))


def test_an_email_off_kind_writes_no_mail_and_shows_on_the_bell(app, page, shot, session, world, tmp_path,
                                                                monkeypatch):
    from workers.mail_out import send_notification

    monkeypatch.setitem(app.config, "INSTANCE_DIR", str(tmp_path))
    monkeypatch.setitem(app.config, "SMTP_HOST", None)
    sign_in(page, "ana@example.com")
    expect(page.locator(".bell-count")).to_have_count(0)
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("An item is assigned to me").select_option(label="In the app only")
    page.get_by_role("button", name="Save notification settings").click()
    expect(page.locator(".flash-success")).to_contain_text("Notification settings saved.")
    page.screenshot(path=shot("notification-settings.png"), full_page=True)

    session.expire_all()
    manual.assign(session, world.item, world.ana, actor=world.sam)
    session.commit()
    for (note_id,) in session.execute(sa.select(OutboxJob.args).where(OutboxJob.job_path == notifications.SEND_JOB)):
        send_notification(note_id)  # what the mail worker would run: there is none for Ana
    assert not list((tmp_path / "outbox").glob("*.eml"))
    [note] = session.scalars(sa.select(Notification)).all()
    assert (note.kind, note.send_status) == ("assigned", "in_app")

    page.reload()
    expect(page.locator(".bell-count")).to_have_text("1")
    page.locator("#bell").click()
    expect(page.locator("#notification-list")).to_contain_text(f"[{world.item.ref}] assigned to you")
    page.get_by_role("button", name="Mark all read").click()
    expect(page.locator(".bell-count")).to_have_count(0)
    expect(page.locator(".notification.read")).to_have_count(1)
