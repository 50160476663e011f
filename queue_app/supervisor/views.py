"""Unassigned work of the teams I manage, most urgent first, who has how much, and approvals to decide."""
import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm import selectinload

from queue_app.auth.views import safe_next
from queue_app.extensions import db
from queue_app.inbox import paging
from queue_app.inbox.forms import DecisionForm
from queue_app.inbox.views import attempt, flash_form_errors, me, with_listing_relations
from queue_app.models import Team, User, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.work_item import OPEN_STATUSES
from queue_app.services import access, approvals, work_items
from queue_app.supervisor import bp
from queue_app.supervisor.forms import AssignForm, CheckerForm

APPROVALS_PAGE = 50


def managed_teams(user):
    teams = db.session.scalars(sa.select(Team).options(selectinload(Team.members)).order_by(Team.name)).all()
    return [team for team in teams if access.manages_team(user, team.id)]


def load_by_person(people, now):
    """{user id: (open, overdue, breached)} over all of each person's open items."""
    if not people:
        return {}
    rows = db.session.execute(
        sa.select(
            WorkItem.assignee_id,
            sa.func.count(),
            sa.func.sum(sa.case((WorkItem.sla_next_due <= now, 1), else_=0)),
            sa.func.sum(sa.case((WorkItem.sla_state == "breached", 1), else_=0)),
        ).where(WorkItem.assignee_id.in_([p.id for p in people]), WorkItem.status.in_(OPEN_STATUSES))
        .group_by(WorkItem.assignee_id)
    )
    return {row[0]: (row[1], row[2] or 0, row[3] or 0) for row in rows}


@bp.route("")
@login_required
def index():
    access.require_role(current_user, "supervisor", "admin")
    teams = managed_teams(current_user)
    team_ids = [t.id for t in teams]
    query = work_items.open_items_query(current_user).where(WorkItem.assignee_id.is_(None),
                                                             WorkItem.team_id.in_(team_ids))
    items, next_cursor = paging.page(db.session, with_listing_relations(query), request.args.get("after"))
    people = sorted({u for t in teams for u in t.members if u.is_active}, key=lambda u: (u.name, u.id))
    now = utcnow()
    load = load_by_person(people, now)
    members = {t.id: [u for u in t.members if u.is_active] for t in teams}
    return render_template("supervisor/index.html", teams=teams, items=items, next_cursor=next_cursor,
                           people=people, load=load, members=members, form=AssignForm())


@bp.route("/items/<ref>/assign", methods=["POST"])
@login_required
def assign(ref):
    item = work_items.get_visible_item(db.session, me(), ref)
    form = AssignForm()
    if form.validate_on_submit():
        assignee = db.session.get(User, form.assignee_id.data) if form.assignee_id.data is not None else None
        if form.assignee_id.data is not None and assignee is None:
            flash("That person does not exist any more.", "error")
        else:
            done = f"{item.ref} assigned to {assignee.name}." if assignee else f"{item.ref} is unassigned."
            attempt(lambda: work_items.assign(db.session, item, assignee, actor=me(),
                                              expected_version=form.version.data), done)
    else:
        flash_form_errors(form)
    return redirect(safe_next(form.next.data, "supervisor.index"))


def _approval_cursor(raw):
    try:
        value = int(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


@bp.route("/approvals")
@login_required
def approvals_queue():
    """Pending approvals of the teams I supervise (or check for), oldest first; I decide here or on the item."""
    user = me()
    decidable = approvals.decidable_team_ids(db.session, user)
    if user.role == "executive" and not decidable:
        access.require_role(user, "supervisor", "admin")
    rows = approvals.pending_queue(db.session, user, after_id=_approval_cursor(request.args.get("after")),
                                   limit=APPROVALS_PAGE + 1)
    page, more = rows[:APPROVALS_PAGE], len(rows) > APPROVALS_PAGE
    teams = managed_teams(user)
    return render_template(
        "supervisor/approvals.html", approvals=page, next_cursor=page[-1].id if more else None,
        may_decide={a.id: approvals.may_decide_approval(db.session, user, a.work_item, a) for a in page},
        teams=teams, checkers=approvals.checkers_by_team(db.session, teams), form=CheckerForm(),
        decision_form=DecisionForm())


@bp.route("/teams/<int:team_id>/checkers", methods=["POST"])
@login_required
def set_checker(team_id):
    team = db.get_or_404(Team, team_id)
    form = CheckerForm()
    if form.validate_on_submit():
        person = db.session.get(User, form.user_id.data)
        if person is None:
            flash("That person does not exist any more.", "error")
        else:
            enabled = form.enabled.data == "1"
            attempt(lambda: approvals.set_checker(db.session, team, person, actor=me(), enabled=enabled),
                    f"{person.name} {'is now' if enabled else 'is no longer'} a checker of {team.name}.")
    else:
        flash_form_errors(form)
    return redirect(url_for("supervisor.approvals_queue"))
