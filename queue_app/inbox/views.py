"""My queue and the team queue. Each post makes one service call, commits and redirects.

The item page and its actions are in item_views.py; both share the helpers here."""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from queue_app.extensions import db
from queue_app.inbox import bp, paging
from queue_app.inbox.forms import TakeForm
from queue_app.models import SlaPolicy, Team, WorkItem
from queue_app.services import approvals, work_items
from queue_app.services.errors import Conflict, Invalid, PermissionDenied

STALE = "This item was changed by someone else while you were looking at it. Reload the page and try again."


def attempt(action, success=None, raise_forbidden=False):
    """Run a service call and commit; a refusal becomes a flash message, not an error page
    (unless raise_forbidden: then PermissionDenied goes on to the 403 page)."""
    try:
        action()
        db.session.commit()
    except (Invalid, Conflict, PermissionDenied) as exc:
        db.session.rollback()
        if raise_forbidden and isinstance(exc, PermissionDenied):
            raise
        flash(exc.message[:1].upper() + exc.message[1:], "error")
        return False
    except StaleDataError:
        db.session.rollback()
        flash(STALE, "error")
        return False
    if success:
        flash(success, "success")
    return True


def me():
    """The signed-in User itself (services compare and store it; a proxy would not do)."""
    return current_user._get_current_object()


def flash_form_errors(form):
    for field in form:
        for error in field.errors:
            flash(f"{field.label.text}: {error}" if field.label.text else error, "error")


def with_listing_relations(query):
    """Everything a queue row shows, calendars included: remaining business time needs them."""
    return query.options(selectinload(WorkItem.sla_policy).selectinload(SlaPolicy.calendar),
                         selectinload(WorkItem.team).selectinload(Team.calendar))


@bp.route("/")
@login_required
def index():
    mine = work_items.open_items_query(current_user).where(WorkItem.assignee_id == current_user.id)
    items, next_cursor = paging.page(db.session, with_listing_relations(mine), request.args.get("after"),
                                     attention_first=True)
    team_ids = sorted(current_user.team_ids)
    team_items, team_next = [], None
    if team_ids:
        unassigned = work_items.open_items_query(current_user).where(
            WorkItem.assignee_id.is_(None), WorkItem.team_id.in_(team_ids))
        team_items, team_next = paging.page(db.session, with_listing_relations(unassigned),
                                            request.args.get("team_after"))
    # Executives designated as checkers have an approvals queue too (supervisors reach it from the menu).
    checks_approvals = current_user.role == "executive" and bool(approvals.decidable_team_ids(db.session, me()))
    return render_template("inbox/index.html", items=items, next_cursor=next_cursor, team_items=team_items,
                           team_next=team_next, checks_approvals=checks_approvals)


@bp.route("/items/<ref>/take", methods=["POST"])
@login_required
def take(ref):
    item = work_items.get_visible_item(db.session, me(), ref)
    form = TakeForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
    elif item.assignee_id is not None and item.assignee_id != current_user.id:
        flash(f"{item.ref} was already taken by {item.assignee.name}.", "error")
        return redirect(url_for("inbox.index"))
    else:
        attempt(lambda: work_items.assign(db.session, item, me(), actor=me(),
                                          expected_version=form.version.data),
                f"{item.ref} is now in your queue.")
    return redirect(url_for("inbox.item", ref=item.ref))


