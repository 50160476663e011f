"""Unassigned work of the teams I manage, most urgent first, and who has how much."""
import sqlalchemy as sa
from flask import flash, redirect, render_template, request
from flask_login import current_user, login_required
from sqlalchemy.orm import selectinload

from queue_app.auth.views import safe_next
from queue_app.extensions import db
from queue_app.inbox import paging
from queue_app.inbox.views import attempt, flash_form_errors, me, with_listing_relations
from queue_app.models import Team, User, WorkItem
from queue_app.models.base import utcnow
from queue_app.models.work_item import OPEN_STATUSES
from queue_app.services import access, work_items
from queue_app.supervisor import bp
from queue_app.supervisor.forms import AssignForm


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
