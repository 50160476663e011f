"""The assignment board: the unassigned queue of the teams I manage, most urgent first, each
person's load, and assigning or reassigning one item or many at once. Also approvals to decide.

Every route checks the role and the team (services.access); every form carries a CSRF token.
"""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from queue_app.extensions import db
from queue_app.models import Team, User
from queue_app.models.base import utcnow
from queue_app.services import access
from queue_app.services.approvals import decisions
from queue_app.services.assignment import auto, manual
from queue_app.services.assignment import board as assignment_board
from queue_app.services.assignment import capacity as assignment_capacity
from queue_app.services.errors import Conflict, Invalid
from queue_app.services.items import lifecycle
from queue_app.services.people import users
from queue_app.supervisor import bp
from queue_app.supervisor.forms import AssignForm, BulkAssignForm, CheckerForm
from queue_app.web import paging
from queue_app.web.actions import attempt, flash_form_errors, me
from queue_app.web.forms import DecisionForm
from queue_app.web.downloads import csv_response
from queue_app.web.navigation import safe_next

APPROVALS_PAGE = 50
REFUSALS_SHOWN = 20  # refusal messages flashed one by one; the rest are counted
UNASSIGNED_HEADER = ["Reference", "Subject", "Team", "Type", "Priority", "Status", "SLA state", "Next due (UTC)",
                     "First response due (UTC)", "Resolution due (UTC)", "Created (UTC)", "Escalation level",
                     "Requester"]


def managed_teams(user):
    return assignment_board.managed_teams(db.session, user)


def _team_filter():
    """The ?team= filter as an id (None: all my teams); a malformed value gets a clear message (422)."""
    raw = request.args.get("team", "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise Invalid("the team filter must be a team id", {"team": "an id"}) from None


def _cursor():
    """The ?after= keyset cursor as (sla_next_due, id); a malformed one starts at the top."""
    decoded = paging.decode_cursor(request.args.get("after"))
    return None if decoded is None else decoded[1:]


@bp.route("")
@login_required
def index():
    """The assignment board."""
    access.require_role(current_user, "supervisor", "admin")
    team_id = _team_filter()
    now = utcnow()
    board = assignment_board.board(db.session, me(), now, after=_cursor(), team_id=team_id)
    teams = managed_teams(me()) if team_id is not None else board.teams
    # The bulk form's choices: the executives shown, grouped by team when several teams are.
    executives = [(team, [row for row in board.members.get(team.id, []) if row["user"].role == "executive"])
                  for team in board.teams] if board.by_team else \
        [row for row in board.people if row["user"].role == "executive"]
    return render_template(
        "supervisor/index.html", board=board, teams=teams, team_id=team_id, items=board.items,
        next_cursor=paging.encode_cursor(board.next_item) if board.next_item is not None else None,
        people=board.people, executives=executives, members=board.members, now=now, form=AssignForm(),
        bulk_form=BulkAssignForm(), policies=auto.POLICY_LABELS)


def _person_choice(form):
    """The chosen assignee: a User, None for "back to the queue", or a flashed problem (False)."""
    if form.assignee_id.data is None:
        return None
    person = db.session.get(User, form.assignee_id.data)
    if person is None:
        flash("That person does not exist any more.", "error")
        return False
    return person


@bp.route("/assign", methods=["POST"])
@login_required
def bulk_assign():
    """Assign the items ticked on the board (or on a person's list) to one person, in one action.

    Items that may not be assigned are named with the reason; the others are assigned.
    """
    access.require_role(current_user, "supervisor", "admin")
    form = BulkAssignForm()
    back = safe_next(form.next.data, "supervisor.index")
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(back)
    if form.assignee_id.data is None and not form.unassign.data:
        flash("Choose who gets the selected items.", "error")
        return redirect(back)
    if form.assignee_id.data is not None and form.unassign.data:
        flash("Choose a person or the unassigned queue, not both.", "error")
        return redirect(back)
    person = _person_choice(form)
    if person is False:
        return redirect(back)
    try:
        selection = manual.parse_selection(request.form.getlist("item"))
        result = manual.assign_selected(db.session, me(), selection, person, now=utcnow(),
                                            override=bool(form.override.data))
        db.session.commit()
    except (Invalid, Conflict) as exc:
        db.session.rollback()
        flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
        return redirect(back)
    done = len(result.assigned)
    if done:
        noun = f"{done} item{'s' if done != 1 else ''}"
        refs = ", ".join(item.ref for item in result.assigned[:10]) + (" …" if done > 10 else "")
        where = f"assigned to {person.name}" if person is not None else "returned to the unassigned queue"
        flash(f"{noun} {where}: {refs}.", "success")
    if result.refused:
        count = len(result.refused)
        flash(f"{count} item{'s' if count != 1 else ''} not assigned:", "error")
        for ref, reason in result.refused[:REFUSALS_SHOWN]:
            flash(f"{ref}: {reason[:1].upper() + reason[1:]}.", "error")
        if count > REFUSALS_SHOWN:
            flash(f"… and {count - REFUSALS_SHOWN} more.", "error")
    return redirect(back)


@bp.route("/items/<ref>/assign", methods=["POST"])
@login_required
def assign(ref):
    """Assign or reassign one item (the board's row control and the item page's assign form)."""
    item = assignment_item(ref)
    form = AssignForm()
    if form.validate_on_submit():
        person = _person_choice(form)
        if person is not False:
            now = utcnow()
            done = f"{item.ref} assigned to {person.name}." if person else f"{item.ref} is unassigned."
            if attempt(lambda: manual.assign(db.session, item, person, actor=me(), now=now,
                                                 expected_version=form.version.data), done) and person:
                warn_about_load(person, now)
    else:
        flash_form_errors(form)
    return redirect(safe_next(form.next.data, "supervisor.index"))


def assignment_item(ref):
    return lifecycle.get_visible_item(db.session, me(), ref)


def warn_about_load(person, now):
    """Assignment by hand may go beyond capacity or to someone away; say so, it was allowed."""
    load = assignment_capacity.open_loads(db.session, [person.id])[person.id]
    if person.is_out_of_office(now):
        flash(f"Note: {person.name} is out of office.", "info")
    if load > person.capacity:
        flash(f"Note: {person.name} now has {load} open items, over their capacity of {person.capacity}.", "info")


@bp.route("/people/<int:user_id>/items")
@login_required
def person_items(user_id):
    """One person's open items in the teams I manage, to reassign some or all of them."""
    access.require_role(current_user, "supervisor", "admin")
    person = db.session.get(User, user_id)
    if person is None or not users.can_manage_person(me(), person):
        abort(404)
    items, last = assignment_board.person_items(db.session, me(), person, after=_cursor())
    teams = managed_teams(me())
    team_ids = {t.id for t in teams}
    people = [row for row in assignment_board.team_load(db.session, teams, utcnow())
              if row["user"].id != person.id and row["user"].role == "executive"]
    for row in people:
        row["shared"] = [t.name for t in row["user"].teams if t.id in team_ids]
    load = assignment_capacity.open_loads(db.session, [person.id])[person.id]
    return render_template("supervisor/person_items.html", person=person, items=items, people=people, load=load,
                           next_cursor=paging.encode_cursor(last) if last is not None else None, now=utcnow(),
                           bulk_form=BulkAssignForm())


@bp.route("/unassigned.csv")
@login_required
def unassigned_csv():
    """The unassigned queue of my teams (or one team) as CSV, in the board's order."""
    access.require_role(current_user, "supervisor", "admin")
    team_id = _team_filter()
    rows = assignment_board.unassigned_rows(db.session, me(), team_id=team_id)
    suffix = f"_team-{team_id}" if team_id is not None else ""
    return csv_response(f"unassigned{suffix}_{utcnow():%Y-%m-%d}.csv", UNASSIGNED_HEADER,
                        ([r[c] for c in assignment_board.UNASSIGNED_COLUMNS] for r in rows))


# --- approvals ------------------------------------------------------------------------------------

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
    decidable = decisions.decidable_team_ids(db.session, user)
    if user.role == "executive" and not decidable:
        access.require_role(user, "supervisor", "admin")
    rows = decisions.pending_queue(db.session, user, after_id=_approval_cursor(request.args.get("after")),
                                   limit=APPROVALS_PAGE + 1)
    page, more = rows[:APPROVALS_PAGE], len(rows) > APPROVALS_PAGE
    teams = managed_teams(user)
    return render_template(
        "supervisor/approvals.html", approvals=page, next_cursor=page[-1].id if more else None,
        may_decide={a.id: decisions.may_decide_approval(db.session, user, a.work_item, a) for a in page},
        teams=teams, checkers=decisions.checkers_by_team(db.session, teams), form=CheckerForm(),
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
            attempt(lambda: decisions.set_checker(db.session, team, person, actor=me(), enabled=enabled),
                    f"{person.name} {'is now' if enabled else 'is no longer'} a checker of {team.name}.")
    else:
        flash_form_errors(form)
    return redirect(url_for("supervisor.approvals_queue"))

