"""Forms on the item page. Each carries its CSRF token; the forms that change the item carry the
item version and the last history event the person saw (see services.items.changes)."""
from flask import request
from flask_wtf.file import MultipleFileField
from wtforms import IntegerField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
)
from wtforms.widgets import HiddenInput

from queue_app.models.work_item import PRIORITIES, TYPES
from queue_app.services.items.lifecycle import MAX_BODY
from queue_app.web.forms import Form, uploads_of
from queue_app.web.security import out_of_range
from queue_app.web.templating import label


class NoteForm(Form):
    note = TextAreaField("Internal note", validators=[DataRequired(message="Write the note first."),
                                                      Length(max=MAX_BODY)],
                         description="Visible to colleagues only; never sent to the requester.")
    submit = SubmitField("Add note")


class DraftForm(Form):
    """A reply or note being typed, kept as the person's draft (posted by the item page as they type)."""

    body = TextAreaField("Draft", validators=[Length(max=MAX_BODY)])


class VersionedForm(Form):
    """The version and the last event the person saw, so a change made meanwhile is shown to them
    instead of overwritten. seen_event is optional: a form from an older page compares versions only."""

    version = IntegerField(widget=HiddenInput(), validators=[InputRequired()])
    seen_event = IntegerField(widget=HiddenInput(), validators=[Optional(), NumberRange(min=0)])


class ReplyForm(VersionedForm):
    """A reply only conflicts with changes to the item's state, owner or details, not with a new note."""

    version = IntegerField(widget=HiddenInput(), validators=[Optional()])
    reply = TextAreaField("Reply to the requester", validators=[DataRequired(message="Write the reply first."),
                                                               Length(max=MAX_BODY)])
    submit = SubmitField("Send reply")


class StatusForm(VersionedForm):
    status = StringField("New status", validators=[DataRequired()])
    comment = StringField("Comment (optional)", validators=[Optional(), Length(max=2000)])


class RerunForm(Form):
    submit = SubmitField("Run checks again")


class FieldsForm(VersionedForm):
    """The type-specific fields are built from work_types.FIELDS in the template (named field-<name>)."""

    submit = SubmitField("Save details")


class TakeForm(VersionedForm):
    submit = SubmitField("Take")


class TakeNextForm(Form):
    """No fields but the CSRF token: the server picks the item."""

    submit = SubmitField("Take next")


class ClassifyForm(VersionedForm):
    """Type, priority and (for a supervisor of the item's team) team; the SLA follows the change.

    The team select is only rendered for those who manage the team, so team_id is optional:
    left out, the team stays. Its choices depend on the viewer, so the template builds it.
    """

    type = SelectField("Type", choices=[(t, label(t)) for t in TYPES], id="classify-type")
    priority = SelectField("Priority", choices=[(p, label(p)) for p in PRIORITIES], id="classify-priority")
    team_id = IntegerField("Team", validators=[Optional()], id="classify-team")
    submit = SubmitField("Save classification")


class ChecklistForm(Form):
    """The item's checklist: a box `step` per step ticked now, and `shown`/`was` the steps the page
    showed and which of them were ticked then. Built in the template from the item's steps."""

    submit = SubmitField("Save checklist")

    def changes(self):
        """{step_id: ticked} for the steps whose box differs from what the page showed."""
        def ids(name):
            digits = [v for v in request.form.getlist(name) if v.isascii() and v.isdigit() and len(v) <= 10]
            return {int(v) for v in digits if not out_of_range(int(v))}

        ticked, was = ids("step"), ids("was")
        return {step_id: step_id in ticked for step_id in sorted(ids("shown"))
                if (step_id in ticked) != (step_id in was)}


class UploadForm(Form):
    """Files for the item (several at once); the service judges each one (services.items.attachments)."""

    files = MultipleFileField("Files", id="upload-files")
    submit = SubmitField("Upload")

    def uploads(self):
        return uploads_of(self.files)


class VerdictForm(Form):
    """One document's verdict in the verification workspace (the reason list is the team's)."""

    verdict = StringField("Verdict", validators=[DataRequired(message="Choose a verdict.")])
    reason = StringField("Reason", validators=[Optional(), Length(max=200)])
    note = TextAreaField("Note (optional)", validators=[Optional(), Length(max=2000)])
    submit = SubmitField("Record verdict")


class OverrideForm(Form):
    reason = TextAreaField("Why these failures are acceptable",
                           validators=[DataRequired(message="Give the reason for the override."),
                                       Length(max=2000)])
    submit = SubmitField("Override failed checks")


# --- handing on and watching (inbox.people_views) -----------------------------------------

class HandBackForm(VersionedForm):
    reason = TextAreaField("Reason", validators=[DataRequired(message="Say why you hand it back."),
                                                 Length(max=2000)], id="hand-back-reason",
                           description="Kept in the history, for whoever takes it next.")
    submit = SubmitField("Hand back to the queue")


class PassForm(VersionedForm):
    to = SelectField("Pass to", coerce=int, validators=[InputRequired(message="Choose a colleague.")], id="pass-to")
    note = TextAreaField("Note (optional)", validators=[Optional(), Length(max=2000)], id="pass-note")
    submit = SubmitField("Pass")


class WatchForm(Form):
    """No fields but the CSRF token: watch or unwatch the item."""
