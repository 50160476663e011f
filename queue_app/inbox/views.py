"""My queue, the team queue, "take next", search and the requester page. Each post makes one service call, commits and redirects.

The item page and its actions are in item_views.py."""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm import selectinload

from queue_app.extensions import db
from queue_app.inbox import bp
from queue_app.inbox.forms import TakeForm, TakeNextForm
from queue_app.models import WorkItem
from queue_app.services.approvals import decisions
from queue_app.services.assignment import worklists
from queue_app.services.errors import Invalid
from queue_app.services.items import lifecycle, requesters, state, tags
from queue_app.services.items import search as items_search
from queue_app.web import paging
from queue_app.web.actions import attempt, flash_form_errors, me
from queue_app.web.security import has_control_characters
from queue_app.web.templating import viewer_zone

TEAM_PAGE_SIZE = 25  # the team queue under My queue: "take next" takes from its top anyway
def _queues(args, flt, stamp=None):
    """Both queues' current pages (My queue filtered by `flt`) and the change stamp. The rows load
    only the columns they show, and both pages share one query for teams and one for SLA policies
    (their calendars included: remaining business time needs them)."""
    zone = viewer_zone()
    mine = worklists.listed(worklists.my_queue_query(current_user, flt, zone=zone))
    items, next_cursor = paging.page(db.session, mine, args.get("after"), attention_first=True)
    team_items, team_next = [], None
    unassigned = worklists.team_queue_query(current_user, flt.tag)
    if unassigned is not None:
        team_items, team_next = paging.page(db.session, worklists.listed(unassigned), args.get("team_after"),
                                            size=TEAM_PAGE_SIZE)
    worklists.with_row_relations(db.session, current_user, items, team_items)
    return dict(items=items, next_cursor=next_cursor, team_items=team_items, team_next=team_next, flt=flt,
                tags=tags.tags_of(db.session, [*items, *team_items]),
                saved_views=worklists.SAVED_VIEWS, filter_choices=worklists.FILTERS,
                stamp=stamp or worklists.change_stamp(db.session, current_user))


def _filter_or_error(args):
    """(filter, error message): a bad filter value is reported and the unfiltered queue shown."""
    try:
        return worklists.parse_filter(args), None
    except Invalid as exc:
        return worklists.QueueFilter(), exc.message


@bp.route("/")
@login_required
def index():
    flt, error = _filter_or_error(request.args)
    context = _queues(request.args if error is None else {}, flt)
    # Executives designated as checkers have an approvals queue too (supervisors reach it from the menu).
    checks_approvals = current_user.role == "executive" and bool(decisions.decidable_team_ids(db.session, me()))
    return render_template("inbox/index.html", filter_error=error, checks_approvals=checks_approvals,
                           take_next_form=TakeNextForm(), **context), 400 if error else 200


@bp.route("/queue/refresh")
@login_required
def refresh():
    """The queues fragment for polling: 204 (nothing to swap) while the change stamp is the one the
    page already shows, so an idle page costs two indexed aggregate queries per poll."""
    flt, error = _filter_or_error(request.args)
    if error is not None:
        return "", 204
    stamp = worklists.change_stamp(db.session, current_user)
    if request.args.get("stamp") == stamp:
        return "", 204
    return render_template("inbox/_queues.html", **_queues(request.args, flt, stamp))


@bp.route("/take-next", methods=["POST"])
@login_required
def take_next():
    form = TakeNextForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(url_for("inbox.index"))
    taken = []
    if attempt(lambda: taken.append(worklists.take_next(db.session, me()))) and taken[0] is not None:
        item = taken[0]
        flash(f"{item.ref} is now in your queue.", "success")
        return redirect(url_for("inbox.item", ref=item.ref))
    if taken and taken[0] is None:
        flash("There is nothing left in your teams' queue that you can take"
              + (" with your skills." if current_user.skills else "."), "info")
    return redirect(url_for("inbox.index"))


@bp.route("/search", endpoint="search")
@login_required
def search_page():
    text = request.args.get("q", "")
    tag = request.args.get("tag", "")
    results, error, item_tags = None, None, {}
    if text.strip() or tag.strip():
        item = items_search.find_ref(db.session, me(), text) if not tag.strip() else None
        if item is not None:
            return redirect(url_for("inbox.item", ref=item.ref))
        try:
            results = items_search.search(db.session, me(), text, request.args.get("before"), tag=tag,
                                    options=(selectinload(WorkItem.team), selectinload(WorkItem.assignee)))
            item_tags = tags.tags_of(db.session, results.items)
        except Invalid as exc:
            error = exc.message[:1].upper() + exc.message[1:]
    elif "q" in request.args:
        error = "Type one or more words to search for."
    return render_template("inbox/search.html", q=text, tag=tag.strip(), results=results, error=error,
                           tags=item_tags), 400 if error else 200


def _before_id(value):
    """The `before` of a page link: an item id, or None for the first page; anything else is a 400."""
    if value in (None, ""):
        return None
    if not value.isdigit() or not 0 < int(value) < 2 ** 53:
        abort(400, "The page link is not valid.")
    return int(value)


@bp.route("/requesters/<path:email>", endpoint="requester")
@login_required
def requester_page(email):
    """A requester's items in the teams the viewer may see, open and closed, newest first."""
    if has_control_characters(email):
        abort(400, "The address contains a character that is not allowed.")
    before = _before_id(request.args.get("before"))
    items = requesters.items_page(db.session, me(), email, before, requesters.PAGE_SIZE + 1,
                                  options=(selectinload(WorkItem.team), selectinload(WorkItem.assignee)))
    person = requesters.profile(db.session, me(), email)
    next_before = items[requesters.PAGE_SIZE - 1].id if len(items) > requesters.PAGE_SIZE else None
    return render_template("inbox/requester.html", person=person, items=items[:requesters.PAGE_SIZE],
                           next_before=next_before)


@bp.route("/items/<ref>/take", methods=["POST"])
@login_required
def take(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = TakeForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
    elif item.assignee_id is not None and item.assignee_id != current_user.id:
        flash(f"{item.ref} was already taken by {item.assignee.name}.", "error")
        return redirect(url_for("inbox.index"))
    else:
        attempt(lambda: state.assign(db.session, item, me(), actor=me(),
                                          expected_version=form.version.data),
                f"{item.ref} is now in your queue.")
    return redirect(url_for("inbox.item", ref=item.ref))


