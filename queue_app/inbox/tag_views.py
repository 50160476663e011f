"""Tags on the item page: add some (comma-separated), remove one. Plain POST forms, so they work
without JavaScript; each makes one service call, commits and goes back to the item."""
from flask_login import login_required
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length

from queue_app.extensions import db
from queue_app.inbox import bp
from queue_app.inbox.item_views import back_to
from queue_app.models.tag import MAX_TAG
from queue_app.services.items import lifecycle, tags
from queue_app.web.actions import attempt, flash_form_errors, me
from queue_app.web.forms import Form


class AddTagsForm(Form):
    tags = StringField("Add tags", description="Comma-separated, e.g. vip, fraud check",
                       validators=[DataRequired(message="Type a tag to add."), Length(max=1000)])
    submit = SubmitField("Add")


class RemoveTagForm(Form):
    tag = StringField("Tag", validators=[DataRequired(), Length(max=MAX_TAG * 4)])


@bp.context_processor
def tag_card():
    """`tag_card(item)` for the item page's Tags card (templates/inbox/_item_tags.html)."""
    def card(item):
        return {"tags": tags.tags_on(db.session, item), "may_tag": tags.may_tag(me(), item)}
    return {"tag_card": card}


@bp.route("/items/<ref>/tags", methods=["POST"])
@login_required
def add_tags(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = AddTagsForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    attempt(lambda: tags.change(db.session, item, actor=me(), add=tags.split(form.tags.data)),
            success="Tags saved.", raise_forbidden=True)
    return back_to(item)


@bp.route("/items/<ref>/tags/remove", methods=["POST"])
@login_required
def remove_tag(ref):
    item = lifecycle.get_visible_item(db.session, me(), ref)
    form = RemoveTagForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
        return back_to(item)
    attempt(lambda: tags.change(db.session, item, actor=me(), remove=[form.tag.data]),
            success=f"Tag {form.tag.data.strip()} removed.", raise_forbidden=True)
    return back_to(item)
