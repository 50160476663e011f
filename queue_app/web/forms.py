"""Forms more than one blueprint shows."""
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectMultipleField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from queue_app.models.user import SCOPES

SCOPE_LABELS = {"read": "Read items", "write": "Change items", "intake": "Create items"}


class DecisionForm(FlaskForm):
    decision = StringField("Decision", validators=[DataRequired()])
    comment = StringField("Comment (needed to reject)", validators=[Optional(), Length(max=2000)])
    next = HiddenField()


class ApiTokenForm(FlaskForm):
    """A new API token: a name to recognise it by and what it may do (settings and admin pages)."""

    name = StringField("Name", validators=[DataRequired(message="Give the token a name."), Length(max=120)],
                       description="What uses it, e.g. the partner system's name.")
    scopes = SelectMultipleField("Scopes", choices=[(s, SCOPE_LABELS[s]) for s in SCOPES], default=["read"],
                                 validators=[DataRequired(message="Choose at least one scope.")],
                                 widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())
    create_token = SubmitField("Create token")


class RevokeTokenForm(FlaskForm):
    """Only the CSRF token: revoking is a POST from a button."""

    revoke = SubmitField("Revoke")
