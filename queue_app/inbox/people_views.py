"""The item page's people actions: hand the item back to the team's queue, pass it to a colleague,
watch or unwatch it. Each post makes one service call, commits and goes back to the item page
(or, after handing it on, to the inbox: the item is not theirs any more). /watching lists what
the person watches."""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy.orm import selectinload

from queue_app.extensions import db
from queue_app.inbox import bp
from queue_app.inbox.forms import HandBackForm, PassForm, WatchForm
from queue_app.inbox.item_views import back_to
from queue_app.models import User, WorkItem
from queue_app.services import access
from queue_app.services.assignment import handing
from queue_app.services.errors import PermissionDenied
from queue_app.services.items import lifecycle, watchers
from queue_app.web.actions import attempt, flash_form_errors, me


@bp.app_template_global()
def people_panel(item):
    """What templates/inbox/_item_people.html shows for the signed-in person."""
    user = me()
    try:
        access.require_work(user, item)
        may_hand_back = item.is_open and item.assignee_id is not None
    except PermissionDenied:
        may_hand_back = False
    pass_form = None
    if handing.may_pass(user, item):
        pass_form = PassForm(formdata=None)
        pass_form.to.choices = [(u.id, u.name or u.email) for u in handing.colleagues(item, user)]
    return {"hand_back_form": HandBackForm(formdata=None) if may_hand_back else None, "pass_form": pass_form,
            "watch_form": WatchForm(formdata=None), "watching": watchers.is_watching(db.session, user, item),
            "watchers": watchers.count(db.session, item)}


@bp.route("/items/<ref>/hand-back", methods=["POST"])
@login_required
def hand_back(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = HandBackForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    if attempt(lambda: handing.hand_back(db.session, item, actor=me(), reason=form.reason.data,
                                         expected_version=form.version.data),
               f"{item.ref} is back in {item.team.name}'s queue."):
        return redirect(url_for("inbox.index"))
    return back_to(item)


@bp.route("/items/<ref>/pass", methods=["POST"])
@login_required
def pass_item(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = PassForm()
    form.to.choices = [(u.id, u.name or u.email) for u in handing.colleagues(item, me())]
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    colleague = db.session.get(User, form.to.data)
    if attempt(lambda: handing.pass_to(db.session, item, colleague, actor=me(), note=form.note.data,
                                       expected_version=form.version.data),
               f"{item.ref} was passed to {colleague.name or colleague.email}."):
        return redirect(url_for("inbox.index"))
    return back_to(item)


@bp.route("/items/<ref>/watch", methods=["POST"])
@login_required
def watch(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    if WatchForm().validate_on_submit():
        attempt(lambda: watchers.watch(db.session, item, actor=me()),
                "You are watching this item: you will be told when it changes.")
    else:
        flash("The form expired; please try again.", "error")
    return back_to(item)


@bp.route("/items/<ref>/unwatch", methods=["POST"])
@login_required
def unwatch(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    if WatchForm().validate_on_submit():
        attempt(lambda: watchers.unwatch(db.session, item, actor=me()), "You no longer watch this item.")
    else:
        flash("The form expired; please try again.", "error")
    return back_to(item)


WATCHING_PAGE = 50


@bp.route("/watching")
@login_required
def watching():
    """The items the signed-in person watches, the most recently watched first."""
    before = request.args.get("before", "")
    if before and not (before.isdigit() and 0 < int(before) < 2 ** 31):
        abort(400, "The page link is not valid.")
    rows = watchers.watched_items(db.session, me(), before=int(before) if before else None,
                                  limit=WATCHING_PAGE + 1,
                                  options=(selectinload(WorkItem.team), selectinload(WorkItem.assignee)))
    next_before = rows[WATCHING_PAGE - 1][0] if len(rows) > WATCHING_PAGE else None
    return render_template("inbox/watching.html", items=[item for _, item in rows[:WATCHING_PAGE]],
                           next_before=next_before)
