"""Assigning an item. The choices depend on the item's team, so the select is built in the template."""
from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, SubmitField
from wtforms.validators import InputRequired, Optional
from wtforms.widgets import HiddenInput


class AssignForm(FlaskForm):
    assignee_id = IntegerField("Assign to", validators=[Optional()])
    version = IntegerField(widget=HiddenInput(), validators=[InputRequired()])
    next = HiddenField()
    submit = SubmitField("Assign")


class CheckerForm(FlaskForm):
    """Designate a team member as a checker (enabled=1) or stop (enabled=0)."""

    user_id = IntegerField(validators=[InputRequired()])
    enabled = HiddenField(validators=[InputRequired()])
