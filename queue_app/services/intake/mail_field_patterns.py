"""A team's mail field patterns as admins edit them (services.intake.mail_fields reads them).

Invariants: everything is checked before anything changes (Invalid names the field); a pattern
is a valid regular expression with exactly one capture group, for a field a pattern can fill;
patterns are deactivated, not deleted, so the audit trail keeps what was used; every change is
recorded in the audit trail (services.audit).
"""
import sqlalchemy as sa

from queue_app.models import MailFieldPattern, Team
from queue_app.services.audit import record as audit
from queue_app.services.errors import Invalid, NotFound
from queue_app.services.intake import mail_fields
from queue_app.services.items.work_types import FIELDS

MAX_PATTERN = 1000
MAX_POSITION = 1_000_000
PATTERN_FIELDS = ("field", "pattern", "active", "position")


def list_patterns(session, team_id):
    return session.scalars(sa.select(MailFieldPattern).where(MailFieldPattern.team_id == team_id)
                           .order_by(MailFieldPattern.position, MailFieldPattern.id)).all()


def get_pattern(session, team_id, pattern_id):
    pattern = session.get(MailFieldPattern, pattern_id)
    if pattern is None or pattern.team_id != team_id:
        raise NotFound(f"no mail field pattern {pattern_id} in this team")
    return pattern


def settings(session, pattern):
    """What the audit trail records of a pattern."""
    team = session.get(Team, pattern.team_id)
    return audit.snapshot(pattern, PATTERN_FIELDS, team=team.name if team is not None else None)


def save_pattern(session, team, pattern=None, *, field, regex, active=True, position=100, actor=None):
    """Create (pattern None) or update one of `team`'s patterns; returns it."""
    errors = {}
    if field not in mail_fields.EXTRACTABLE_FIELDS:
        errors["field"] = f"must be one of {', '.join(mail_fields.EXTRACTABLE_FIELDS)}"
    regex = (regex or "").strip() if isinstance(regex, str) else regex
    problem = mail_fields.pattern_problem(regex)
    if problem is not None:
        errors["pattern"] = problem
    elif len(regex) > MAX_PATTERN:
        errors["pattern"] = f"at most {MAX_PATTERN} characters"
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= MAX_POSITION:
        errors["position"] = f"a whole number from 0 to {MAX_POSITION:,}"
    if errors:
        raise Invalid("the pattern was not saved", errors)
    before = settings(session, pattern) if pattern is not None else None
    if pattern is None:
        pattern = MailFieldPattern(team_id=team.id)
        session.add(pattern)
    pattern.field, pattern.pattern, pattern.active, pattern.position = field, regex, bool(active), position
    session.flush()
    audit.changed(session, actor, "mail_field_pattern", pattern, before, settings(session, pattern),
                  label=f"{team.name}: {field}")
    return pattern


def deactivate(session, pattern, *, actor=None):
    """Switch a pattern off (the team falls back to the defaults for a field it has no other pattern for)."""
    if not pattern.active:
        return pattern
    team = session.get(Team, pattern.team_id)
    before = settings(session, pattern)
    pattern.active = False
    session.flush()
    audit.changed(session, actor, "mail_field_pattern", pattern, before, settings(session, pattern),
                  label=f"{team.name}: {pattern.field}")
    return pattern


def try_patterns(session, team, work_type, subject, body):
    """What filing an email with this subject and body would take for a `work_type` item of the
    team (mail_fields.Found: the values and why others were not taken)."""
    if work_type not in FIELDS:
        raise Invalid("unknown work type", {"work_type": f"must be one of {', '.join(FIELDS)}"})
    return mail_fields.extract(work_type, subject, body, mail_fields.team_patterns(session, team.id))
