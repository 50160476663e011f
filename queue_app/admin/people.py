"""Admin pages for people (role, teams, skills, capacity, time zone, active, password; invitations,
resetting two-step sign-in, the roles that require it) and teams.

Same shape as the mailbox pages: a post makes one service call, commits, flashes and
redirects; refused input comes back with the errors next to the fields (status 422).
"""
import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user

from queue_app.admin import bp
from queue_app.admin.forms import (
    ActionForm,
    MfaPolicyForm,
    ServiceAccountForm,
    TeamForm,
    UserForm,
    timezone_choices,
)
from queue_app.admin.views import attach_errors
from queue_app.extensions import db
from queue_app.models import Calendar, Team, User
from queue_app.services.assignment import auto
from queue_app.services.errors import DomainError, Invalid
from queue_app.models.user import SERVICE
from queue_app.services.people import account_links, mfa
from queue_app.services.people import teams as people_teams
from queue_app.services.people import tokens as people_tokens
from queue_app.services.people import users as people_users
from queue_app.web.actions import me
from queue_app.web.forms import ApiTokenForm, RevokeTokenForm
from queue_app.web.browser_sessions import current_key

NO_NAMES = {}


def get_or_404(model, ident):
    record = db.session.get(model, ident)
    if record is None:
        abort(404)
    return record


def save(form, action, names=NO_NAMES):
    """Run a service call and commit; on refusal roll back and show the errors. True when saved."""
    try:
        action()
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        attach_errors(form, exc, names)
        return False
    return True


def invalid_form(form):
    """A posted form WTForms refused (the service was not called): say so once."""
    if form.is_submitted():
        flash("Please correct the marked fields.", "error")


def page(template, form, **context):
    """Render a form page: 422 when a submitted form was refused, so tests and tools can tell."""
    return render_template(template, form=form, **context), 422 if form.is_submitted() else 200


# --- people -------------------------------------------------------------------------------------

def user_form(user=None):
    if request.method == "POST":
        form = UserForm()
    elif user is not None:
        form = UserForm(obj=user)  # then the fields whose data is not the attribute as it is
        # A service account's teams are those it files items for (it is a member of none).
        form.teams.data = [t.id for t in (user.intake_teams if user.is_service else user.teams)]
        form.active.data = user.is_active_user
        form.password.data = None
    else:
        form = UserForm()
    if user is None:
        del form.password  # a new person chooses their own, from the invitation
    form.teams.choices = [(t.id, t.name) for t in db.session.scalars(sa.select(Team).order_by(Team.name))]
    form.timezone.choices = timezone_choices()
    if user is not None and user.is_service:
        form.role.choices = [(SERVICE, "Service account")]
    return form


def token_context(person, form=None):
    """The API tokens part of a person's page: theirs, revoke one, issue one."""
    return {"api_tokens": people_tokens.tokens_of(db.session, person), "token_form_obj": form or ApiTokenForm(),
            "revoke_form": RevokeTokenForm(),
            "token_revoke_url": lambda t: url_for("admin.user_revoke_token", user_id=person.id, token_id=t.id)}


@bp.route("/users")
def user_list():
    return render_template("admin/users.html", people=people_users.list_users(db.session))


@bp.route("/users/new", methods=["GET", "POST"])
def user_new():
    form = user_form()
    if form.validate_on_submit():
        created = {}

        def create():
            if not (form.email.data or "").strip():
                raise Invalid("an email address is needed", {"email": "is required"})
            names = [name for ident, name in form.teams.choices if ident in form.teams.data]
            created["user"] = account_links.invite(
                db.session, email=form.email.data, role=form.role.data, name=form.name.data.strip(), teams=names,
                skills=form.skills.data, capacity=form.capacity.data, timezone=form.timezone.data,
                active=form.active.data, actor=me())

        if save(form, create, {"team": "teams"}):
            flash(f"{created['user'].name} ({created['user'].email}) was added and invited by mail to choose a "
                  "password." if form.active.data else
                  f"{created['user'].email} was added (inactive); send the invitation once they are active.",
                  "success")
            return redirect(url_for("admin.user_list"))
    else:
        invalid_form(form)
    return page("admin/user_edit.html", form, person=None)


@bp.route("/users/new-service", methods=["GET", "POST"])
def service_account_new():
    """A partner system's account: tokens only, items for the teams ticked here."""
    form = ServiceAccountForm()
    form.teams.choices = [(t.id, t.name) for t in db.session.scalars(sa.select(Team).order_by(Team.name))]
    if form.validate_on_submit():
        created = {}

        def create():
            names = [name for ident, name in form.teams.choices if ident in form.teams.data]
            created["user"] = people_users.create_service_account(db.session, name=form.name.data, teams=names,
                                                                  actor=me())

        if save(form, create, {"team": "teams"}):
            flash(f"Service account {created['user'].email} added; issue it a token below.", "success")
            return redirect(url_for("admin.user_edit", user_id=created["user"].id) + "#api-tokens")
    else:
        invalid_form(form)
    return page("admin/service_new.html", form)


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
def user_edit(user_id):
    person = get_or_404(User, user_id)
    form = user_form(person)
    if form.validate_on_submit():
        def update():
            people_users.update_user(db.session, person, actor=me(), name=form.name.data, role=form.role.data,
                              team_ids=form.teams.data, skills=form.skills.data, capacity=form.capacity.data,
                              timezone=form.timezone.data, active=form.active.data)
            if form.password.data:
                keep = current_key() if person.id == current_user.id else None  # an admin's own: this browser stays
                people_users.reset_password(db.session, person, form.password.data, actor=me(), keep_session_key=keep)

        if save(form, update):
            if person.id == current_user.id and form.password.data:
                login_user(person)  # this browser gets the rotated nonce; the other sessions ended
            flash(f"{person.name} saved." + (" Their sessions were ended." if form.password.data else ""), "success")
            return redirect(url_for("admin.user_list"))
    else:
        invalid_form(form)
    return page("admin/user_edit.html", form, person=person, **token_context(person), **access_context(person))


def access_context(person):
    """The sign-in part of a person's page: their invitation and their two-step sign-in."""
    return {"invitation_pending": account_links.invitation_pending(db.session, person),
            "invitation": account_links.latest_invitation(db.session, person), "action_form": ActionForm(),
            "mfa_required": mfa.is_required(db.session, person)}


@bp.route("/users/<int:user_id>/invitation", methods=["POST"])
def user_resend_invitation(user_id):
    """A new invitation link by mail; the earlier ones stop working."""
    person = get_or_404(User, user_id)
    if ActionForm().validate_on_submit():
        try:
            account_links.resend_invitation(db.session, person, actor=me())
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
        else:
            db.session.commit()
            flash(f"A new invitation is on its way to {person.email}.", "success")
    else:
        flash("The form expired; please try again.", "error")
    return redirect(url_for("admin.user_edit", user_id=person.id) + "#sign-in")


@bp.route("/users/<int:user_id>/two-step/reset", methods=["POST"])
def user_reset_mfa(user_id):
    """Remove someone's two-step sign-in (a lost phone); their sessions end."""
    person = get_or_404(User, user_id)
    if ActionForm().validate_on_submit():
        try:
            people_users.reset_mfa(db.session, person, actor=me())
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
            return redirect(url_for("admin.user_edit", user_id=person.id) + "#sign-in")
        db.session.commit()
        flash(f"Two-step sign-in of {person.email} is reset and their sessions have ended.", "success")
    else:
        flash("The form expired; please try again.", "error")
    return redirect(url_for("admin.user_edit", user_id=person.id) + "#sign-in")


@bp.route("/users/two-step", methods=["GET", "POST"])
def user_mfa_policy():
    """Which roles must sign in with two steps."""
    form = MfaPolicyForm()
    if request.method == "GET":
        form.roles.data = mfa.required_roles(db.session)
    if form.validate_on_submit():
        if save(form, lambda: mfa.set_required_roles(db.session, form.roles.data, actor=me())):
            flash("Saved. People of these roles without two-step sign-in set it up at their next sign-in.",
                  "success")
            return redirect(url_for("admin.user_mfa_policy"))
    else:
        invalid_form(form)
    return page("admin/mfa_policy.html", form)


@bp.route("/users/<int:user_id>/tokens", methods=["POST"])
def user_create_token(user_id):
    """Issue a token for someone (a service account gets its tokens here or from the CLI)."""
    person = get_or_404(User, user_id)
    form = ApiTokenForm()
    back = url_for("admin.user_edit", user_id=person.id) + "#api-tokens"
    if form.validate_on_submit():
        try:
            row, secret = people_tokens.issue(db.session, person, form.name.data, scopes=form.scopes.data,
                                              actor=me())
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
        else:
            db.session.commit()
            return render_template("auth/token_created.html", token=row, secret=secret, back_url=back), 201
    else:
        for problems in form.errors.values():
            flash(" ".join(problems), "error")
    return redirect(back)


@bp.route("/users/<int:user_id>/tokens/<int:token_id>/revoke", methods=["POST"])
def user_revoke_token(user_id, token_id):
    person = get_or_404(User, user_id)
    if RevokeTokenForm().validate_on_submit():
        row = people_tokens.get_token(db.session, token_id, owner=person)
        people_tokens.revoke(db.session, row, actor=me())
        db.session.commit()
        flash(f"The token {row.name} of {person.email} is revoked.", "success")
    else:
        flash("The form expired; please try again.", "error")
    return redirect(url_for("admin.user_edit", user_id=person.id) + "#api-tokens")


# --- teams --------------------------------------------------------------------------------------

def team_form(team=None):
    if request.method == "POST":
        form = TeamForm()
    elif team is not None:
        form = TeamForm(obj=team)  # then the fields whose data is not the attribute as it is
        form.calendar.data = team.calendar_id or 0
        form.approval_threshold.data = "" if team.approval_threshold is None else f"{team.approval_threshold}"
    else:
        form = TeamForm()
    form.calendar.choices = [(0, "None (round the clock)")] + [
        (c.id, c.name) for c in db.session.scalars(sa.select(Calendar).order_by(Calendar.name))]
    return form


def save_team(form, team=None):
    saved = {}

    def action():
        saved["team"] = people_teams.save_team(
            db.session, team, name=form.name.data, email=form.email.data, work_types=form.work_types.data,
            auto_assign=form.auto_assign.data, approval_threshold=form.approval_threshold.data,
            calendar_id=form.calendar.data or None, approval_due_minutes=form.approval_due_minutes.data,
            auto_close_days=form.auto_close_days.data, executives_may_pass=form.executives_may_pass.data,
            actor=me())

    return saved["team"] if save(form, action) else None


@bp.route("/teams", methods=["GET", "POST"])
def team_list():
    form = team_form()
    if form.validate_on_submit():
        team = save_team(form)
        if team is not None:
            flash(f"Team {team.name} added. Add people to it on their pages.", "success")
            return redirect(url_for("admin.team_list"))
    else:
        invalid_form(form)
    return page("admin/teams.html", form, teams=people_teams.list_teams(db.session),
                policies=auto.POLICY_LABELS)


@bp.route("/teams/<int:team_id>", methods=["GET", "POST"])
def team_edit(team_id):
    team = get_or_404(Team, team_id)
    form = team_form(team)
    if form.validate_on_submit():
        if save_team(form, team) is not None:
            flash(f"Team {team.name} saved.", "success")
            return redirect(url_for("admin.team_list"))
    else:
        invalid_form(form)
    return page("admin/team_edit.html", form, team=team)
