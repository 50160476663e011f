"""Forms more than one blueprint shows."""
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length, Optional


class DecisionForm(FlaskForm):
    decision = StringField("Decision", validators=[DataRequired()])
    comment = StringField("Comment (needed to reject)", validators=[Optional(), Length(max=2000)])
    next = HiddenField()
