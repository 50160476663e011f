"""Assigning items. The choices depend on the items' teams, so the selects are built in the templates."""
from wtforms import BooleanField, HiddenField, IntegerField, SubmitField
from wtforms.validators import InputRequired, Optional
from wtforms.widgets import HiddenInput

from queue_app.web.forms import Form


class AssignForm(Form):
    assignee_id = IntegerField("Assign to", validators=[Optional()])
    version = IntegerField(widget=HiddenInput(), validators=[InputRequired()])
    next = HiddenField()
    submit = SubmitField("Assign")


class BulkAssignForm(Form):
    """Many items (the ticked `item` checkboxes, read by the view) to one person, or back to the queue."""

    assignee_id = IntegerField("Assign the selected items to", validators=[Optional()])
    unassign = BooleanField("Return them to the unassigned queue")
    override = BooleanField("Assign even over capacity, during an absence or without the skill")
    next = HiddenField()
    submit = SubmitField("Assign selected")


class CheckerForm(Form):
    """Designate a team member as a checker (enabled=1) or stop (enabled=0)."""

    user_id = IntegerField(validators=[InputRequired()])
    enabled = HiddenField(validators=[InputRequired()])
