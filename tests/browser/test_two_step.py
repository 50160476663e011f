"""Two-step sign-in in a real browser: a role that requires it sets it up (QR code shown under the
CSP), then signs in with a code."""
import pyotp
import pytest
from playwright.sync_api import expect

from queue_app.models import User
from queue_app.services.people import mfa
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser


def test_a_supervisor_sets_up_two_step_sign_in_and_signs_in_with_a_code(new_page, session, make_user):
    sam = make_user(email="sam@example.com", name="Sam Supervisor", role="supervisor")
    mfa.set_required_roles(session, ["supervisor"], actor=None)
    session.commit()
    page = new_page()
    page.goto("/login")
    page.get_by_label("Email").fill("sam@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Set up two-step sign-in")
    qr = page.locator("#mfa-qr")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.naturalWidth") > 0  # the SVG drew

    session.expire_all()
    totp = pyotp.TOTP(session.get(User, sam.id).mfa_secret)
    page.get_by_label("Code").fill(totp.now())
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="I have saved them, continue").click()
    page.wait_for_url("**/")

    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Email").fill("sam@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    page.get_by_label("Code").fill(totp.at(__import__("time").time() + 30))  # the next step: this one is used
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/")
    expect(page.locator(".whoami")).to_contain_text("Sam Supervisor")
