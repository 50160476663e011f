"""The base form of every page, and forms more than one blueprint shows."""
from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, SelectMultipleField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from queue_app.models.user import SCOPES
from queue_app.services.items.attachments import UploadedFile
from queue_app.web.security import has_control_characters, out_of_range

SCOPE_LABELS = {"read": "Read items", "write": "Change items", "intake": "Create items"}

NOT_ALLOWED = "Contains a character that is not allowed."
OUT_OF_RANGE = "Is out of range."


class Form(FlaskForm):
    """Every form's checks that no field declares: no control characters in any text (tab, CR and LF
    only in multi-line text: PostgreSQL cannot store NUL, and no one types the others) and no
    integer larger than a database column holds. A refusal is a field error like any other."""

    def validate(self, extra_validators=None):
        ok = super().validate(extra_validators)
        for field in self:
            message = _input_problem(field)
            if message:
                field.errors = list(field.errors) + [message]
                ok = False
        return ok


def _input_problem(field):
    if isinstance(field, IntegerField):
        return OUT_OF_RANGE if isinstance(field.data, int) and out_of_range(field.data) else None
    multiline = isinstance(field, TextAreaField)
    values = field.data if isinstance(field.data, (list, tuple)) else [field.data]
    # raw_data too: a select or a number field keeps what was posted there when it is not valid.
    values = [*values, *(field.raw_data or [])]
    if any(isinstance(v, str) and has_control_characters(v, multiline) for v in values):
        return NOT_ALLOWED
    return None


def uploads_of(field):
    """The files of a file field as services.items.attachments takes them; the empty part a browser
    sends for a file input left empty is no file."""
    return [UploadedFile(filename=f.filename, data=f.read(), declared_type=f.mimetype or None)
            for f in (field.data or []) if f is not None and getattr(f, "filename", None)]


class DecisionForm(Form):
    decision = StringField("Decision", validators=[DataRequired()])
    comment = StringField("Comment (needed to reject)", validators=[Optional(), Length(max=2000)])
    next = HiddenField()


class ApiTokenForm(Form):
    """A new API token: a name to recognise it by and what it may do (settings and admin pages)."""

    name = StringField("Name", validators=[DataRequired(message="Give the token a name."), Length(max=120)],
                       description="What uses it, e.g. the partner system's name.")
    scopes = SelectMultipleField("Scopes", choices=[(s, SCOPE_LABELS[s]) for s in SCOPES], default=["read"],
                                 validators=[DataRequired(message="Choose at least one scope.")],
                                 widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())
    create_token = SubmitField("Create token")


class RevokeTokenForm(Form):
    """Only the CSRF token: revoking is a POST from a button."""

    revoke = SubmitField("Revoke")
