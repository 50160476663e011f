"""The quarantine (emails that could not be filed) and the mailboxes. Admins only.

Views stay thin: each post makes one service call, commits, flashes the outcome and redirects.
"""
import email.policy
from datetime import datetime, timezone
from email.parser import BytesHeaderParser

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy.orm import defer, selectinload

from queue_app.admin import bp
from queue_app.admin.forms import ActionForm, MailboxEditForm, MailboxForm, ReleaseForm
from queue_app.extensions import db, login_manager
from queue_app.models import InboundEmail, Mailbox, Team
from queue_app.services import access
from queue_app.services.errors import DomainError
from queue_app.services.intake import filing
from queue_app.services.intake import mailboxes as intake_mailboxes
from queue_app.services.intake import quarantine as intake_quarantine
from queue_app.services.reporting import admin_overview
from queue_app.web.actions import flash_form_errors, me

PAGE_SIZE = 50
# Headers live at the top of a message; reading only this much keeps a 25 MB email cheap to list.
PEEK_BYTES = 64 * 1024
MAX_HEADERS = 200
MAX_HEADER_CHARS = 2000
# The nav shows "999+" rather than counting a huge quarantine on every admin page.
COUNT_CAP = 999


def open_to_supervisors(view):
    """Marks an admin page that supervisors reach too; such a view checks role and team itself."""
    view.open_to_supervisors = True
    return view


@bp.before_request
def admins_only():
    """Every admin page: sign in first, then admins only (everyone else gets 403), except the
    pages marked open_to_supervisors."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if getattr(current_app.view_functions.get(request.endpoint), "open_to_supervisors", False):
        return None
    access.require_role(current_user, "admin")


@bp.context_processor
def admin_nav():
    if not current_user.is_authenticated or current_user.role != "admin":
        return {}  # the 403 page of a refused request shows no count
    capped = sa.select(InboundEmail.id).where(InboundEmail.status == "quarantined").limit(COUNT_CAP + 1).subquery()
    count = db.session.scalar(sa.select(sa.func.count()).select_from(capped))
    return {"quarantine_count": f"{COUNT_CAP}+" if count > COUNT_CAP else count}


# --- reading headers of possibly broken mail ------------------------------------------------

def _clean(text):
    """Text safe to render: no lone surrogates (undecodable bytes) or control characters, bounded length."""
    text = str(text).encode("utf-8", "replace").decode("utf-8")
    text = "".join(c if c >= " " or c == "\t" else " " for c in text)
    return text[:MAX_HEADER_CHARS]


def peek_headers(raw):
    """The (name, value) header pairs of raw email bytes, as far as they can be read.

    Garbage in gives fewer headers out, never an exception: this page exists for the mail
    the parser choked on.
    """
    if not raw:
        return []
    policy = email.policy.default
    try:
        message = BytesHeaderParser(policy=policy).parsebytes(bytes(raw[:PEEK_BYTES]))
        raw_items = list(message.raw_items())[:MAX_HEADERS]
    except Exception:  # noqa: BLE001 - any parser failure just means "no readable headers"
        return []
    pairs = []
    for name, value in raw_items:
        try:
            shown = str(policy.header_fetch_parse(name, value))
        except Exception:  # noqa: BLE001 - a malformed header is shown as it came
            shown = value
        pairs.append((_clean(name), _clean(shown)))
    return pairs


def peek_summary(raw):
    """The first From, To, Subject and Date, lower-cased names as keys."""
    summary = {}
    for name, value in peek_headers(raw):
        key = name.lower()
        if key in ("from", "to", "subject", "date") and key not in summary:
            summary[key] = value
    return summary


def reason_text(inbound):
    return filing.QUARANTINE_REASONS.get(inbound.reason or "", inbound.reason or "")


# --- quarantine -------------------------------------------------------------------------

def encode_cursor(inbound):
    return f"{inbound.received_at.astimezone(timezone.utc):%Y%m%dT%H%M%S.%fZ}_{inbound.id}"


def decode_cursor(cursor):
    try:
        when, ident = (cursor or "").split("_", 1)
        return datetime.strptime(when, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc), int(ident)
    except ValueError:
        return None


@bp.route("/")
def index():
    """The admin landing page: what needs an admin now, each with a link to where it is dealt with."""
    return render_template("admin/index.html", overview=admin_overview.overview(db.session))


@bp.route("/quarantine")
def quarantine():
    """Newest first, keyset-paged on (received_at, id) over the (status, received_at) index."""
    head = sa.func.substr(InboundEmail.raw, 1, PEEK_BYTES, type_=sa.LargeBinary)
    query = (sa.select(InboundEmail, head).options(defer(InboundEmail.raw), selectinload(InboundEmail.mailbox))
             .where(InboundEmail.status == "quarantined"))
    cursor = decode_cursor(request.args.get("after"))
    if cursor is not None:
        when, ident = cursor
        query = query.where(sa.or_(InboundEmail.received_at < when,
                                   sa.and_(InboundEmail.received_at == when, InboundEmail.id < ident)))
    rows = db.session.execute(query.order_by(InboundEmail.received_at.desc(), InboundEmail.id.desc())
                              .limit(PAGE_SIZE + 1)).all()
    next_cursor = encode_cursor(rows[PAGE_SIZE - 1][0]) if len(rows) > PAGE_SIZE else None
    entries = [{"inbound": inbound, "headers": peek_summary(raw_head), "reason_text": reason_text(inbound)}
               for inbound, raw_head in rows[:PAGE_SIZE]]
    return render_template("admin/quarantine.html", entries=entries, next_cursor=next_cursor)


def get_inbound(inbound_id):
    inbound = db.session.get(InboundEmail, inbound_id)
    if inbound is None:
        abort(404)
    return inbound


def mailbox_choices():
    boxes = intake_mailboxes.list_mailboxes(db.session)
    return [(0, "Choose a mailbox…")] + [
        (m.id, f"{m.address} ({m.team.name}){'' if m.active else ' — inactive'}") for m in boxes]


@bp.route("/quarantine/<int:inbound_id>")
def quarantined(inbound_id):
    inbound = get_inbound(inbound_id)
    release_form = ReleaseForm()
    release_form.mailbox_id.choices = mailbox_choices()
    return render_template("admin/quarantined.html", inbound=inbound, headers=peek_headers(inbound.raw),
                           reason_text=reason_text(inbound), release_form=release_form, action_form=ActionForm())


@bp.route("/quarantine/<int:inbound_id>/raw")
def raw_email(inbound_id):
    """The bytes exactly as received, as a download: never rendered by the browser."""
    inbound = get_inbound(inbound_id)
    if inbound.raw is None:
        abort(404, "The raw bytes of a duplicate are kept once, on the first copy.")
    response = make_response(bytes(inbound.raw))
    response.headers["Content-Type"] = "message/rfc822"
    response.headers["Content-Disposition"] = f'attachment; filename="inbound-{inbound.id}.eml"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def act(action):
    """Run one quarantine action and commit; a refusal becomes a flash message. Returns the outcome or None."""
    try:
        outcome = action()
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
        return None
    return outcome


def describe(outcome):
    """The outcome in words, with the category to flash it under."""
    item = outcome.item
    if outcome.status == "created":
        return f"Filed as {item.ref}.", "success"
    if outcome.status == "followup":
        return f"Added to {item.ref} as a follow-up.", "success"
    if outcome.status == "duplicate":
        return f"A copy of an email already filed{f' as {item.ref}' if item else ''}; counted as a duplicate.", "info"
    if outcome.status == "quarantined":
        inbound = outcome.inbound
        detail = f" ({inbound.detail})" if inbound.detail and inbound.detail != reason_text(inbound) else ""
        return f"Still quarantined: {reason_text(inbound)}{detail}.", "error"
    return f"The message is now {outcome.status}.", "info"


def after_action(inbound, outcome):
    if outcome is None or outcome.status == "quarantined":
        return redirect(url_for("admin.quarantined", inbound_id=inbound.id))
    return redirect(url_for("admin.quarantine"))


@bp.route("/quarantine/<int:inbound_id>/retry", methods=["POST"])
def retry(inbound_id):
    inbound = get_inbound(inbound_id)
    form = ActionForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(url_for("admin.quarantined", inbound_id=inbound.id))
    outcome = act(lambda: intake_quarantine.retry(db.session, inbound, actor=me()))
    if outcome is not None:
        flash(*describe(outcome))
    return after_action(inbound, outcome)


@bp.route("/quarantine/<int:inbound_id>/release", methods=["POST"])
def release(inbound_id):
    inbound = get_inbound(inbound_id)
    form = ReleaseForm()
    form.mailbox_id.choices = mailbox_choices()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(url_for("admin.quarantined", inbound_id=inbound.id))
    mailbox = db.session.get(Mailbox, form.mailbox_id.data)
    outcome = act(lambda: intake_quarantine.release(db.session, inbound, actor=me(), mailbox=mailbox))
    if outcome is not None:
        flash(*describe(outcome))
    return after_action(inbound, outcome)


@bp.route("/quarantine/<int:inbound_id>/discard", methods=["POST"])
def discard(inbound_id):
    inbound = get_inbound(inbound_id)
    form = ActionForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(url_for("admin.quarantined", inbound_id=inbound.id))
    outcome = act(lambda: intake_quarantine.discard(db.session, inbound, actor=me()))
    if outcome is not None:
        flash(f"Discarded message #{inbound.id}; it stays on record with its raw bytes.", "success")
    return after_action(inbound, outcome)


# --- mailboxes --------------------------------------------------------------------------

def team_choices():
    return [("", "Choose a team…")] + [(t.name, t.name) for t in
                                        db.session.scalars(sa.select(Team).order_by(Team.name))]


MAILBOX_FIELD_NAMES = {"team_name": "team", "email": "address"}


def attach_errors(form, exc, names=MAILBOX_FIELD_NAMES):
    """Put the service's field errors next to their inputs; flash the rest."""
    leftover = []
    for key, problem in exc.fields.items():
        field = form._fields.get(names.get(key, key))
        if field is not None:
            field.errors = list(field.errors) + [problem[:1].upper() + problem[1:]]
        else:
            leftover.append(f"{key}: {problem}")
    flash(exc.message[:1].upper() + exc.message[1:] + (f" ({'; '.join(leftover)})" if leftover else "")
          + ". Please correct the marked fields.", "error")


def imap_values(form):
    """The IMAP inputs, empty text as None (so a model default applies)."""
    values = {name: (getattr(form, name).data or None) for name in
              ("imap_host", "imap_port", "imap_tls", "imap_user", "imap_folder", "imap_processed_folder")}
    for name in ("imap_host", "imap_user", "imap_folder", "imap_processed_folder"):
        if values[name] is not None:
            values[name] = values[name].strip() or None
    return values


@bp.route("/mailboxes", methods=["GET", "POST"])
def mailbox_list():
    form = MailboxForm()
    form.team.choices = team_choices()
    if form.validate_on_submit():
        try:
            box = intake_mailboxes.create_mailbox(db.session, address=form.address.data, type=form.type.data,
                                                  team_name=form.team.data, priority=form.priority.data,
                                                  imap_password=form.imap_password.data or None, actor=me(),
                                                  **imap_values(form))
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            attach_errors(form, exc)
        else:
            flash(f"Mailbox {box.address} added for {box.team.name}.", "success")
            return redirect(url_for("admin.mailbox_list"))
    elif form.is_submitted():
        flash("Please correct the marked fields.", "error")
    boxes = db.session.scalars(sa.select(Mailbox).options(selectinload(Mailbox.team)).order_by(Mailbox.address)).all()
    status = 422 if form.is_submitted() else 200
    return render_template("admin/mailboxes.html", form=form, mailboxes=boxes), status


@bp.route("/mailboxes/<int:mailbox_id>", methods=["GET", "POST"])
def mailbox_edit(mailbox_id):
    box = db.session.get(Mailbox, mailbox_id)
    if box is None:
        abort(404)
    if request.method == "POST":
        form = MailboxEditForm()
    else:
        form = MailboxEditForm(obj=box, team=box.team.name)
        form.imap_password.data = None  # the stored password never goes back to the browser
    form.team.choices = team_choices()
    if form.validate_on_submit():
        changes = dict(active=form.active.data, type=form.type.data, team_name=form.team.data,
                       priority=form.priority.data, **imap_values(form))
        if form.clear_password.data:
            changes["imap_password"] = None
        elif form.imap_password.data:
            changes["imap_password"] = form.imap_password.data
        try:
            intake_mailboxes.update_mailbox(db.session, box, actor=me(), **changes)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            attach_errors(form, exc)
        else:
            flash(f"Mailbox {box.address} saved{'' if box.active else ' (inactive)'}.", "success")
            return redirect(url_for("admin.mailbox_list"))
    elif form.is_submitted():
        flash("Please correct the marked fields.", "error")
    status = 422 if form.is_submitted() else 200
    return render_template("admin/mailbox_edit.html", form=form, mailbox=box), status
