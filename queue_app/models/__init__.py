"""Every model, imported here so Alembic autogenerate sees every table.

Model modules name each other's classes (in relationship annotations) only for type
checkers, importing them from this package under TYPE_CHECKING: no model module imports
another for a relationship, so they form no import cycle (lint-imports counts those imports).
"""
from queue_app.models.account_link import AccountLink
from queue_app.models.approval import Approval, team_checkers
from queue_app.models.audit import AuditChainHead, AuditSeal, ConfigChange
from queue_app.models.blob import Blob
from queue_app.models.calendar import Calendar
from queue_app.models.canned_response import CannedResponse
from queue_app.models.draft import DRAFT_BOXES, Draft
from queue_app.models.check_result import CheckResult
from queue_app.models.checklist import ChecklistStep, ChecklistTick
from queue_app.models.check_settings import TeamCheckSettings
from queue_app.models.event import Event
from queue_app.models.exchange_rate import ExchangeRate
from queue_app.models.inbound_email import InboundEmail
from queue_app.models.mail_field_pattern import MailFieldPattern
from queue_app.models.mailbox import Mailbox
from queue_app.models.message import Attachment, Message
from queue_app.models.mfa import MfaRequirement, RecoveryCode
from queue_app.models.notification import Notification
from queue_app.models.outbox import OutboxJob
from queue_app.models.routing_rule import RoutingRule
from queue_app.models.sla_escalation import SlaEscalation
from queue_app.models.sla_policy import SlaPolicy
from queue_app.models.tag import ItemTag
from queue_app.models.team import Team, team_members
from queue_app.models.user import ApiToken, User
from queue_app.models.user_session import UserSession
from queue_app.models.verification import CheckOverride, DocumentVerdict
from queue_app.models.watcher import Watcher
from queue_app.models.work_item import WorkItem

__all__ = [
    "AccountLink",
    "ApiToken",
    "Approval",
    "Attachment",
    "AuditChainHead",
    "AuditSeal",
    "Blob",
    "CheckOverride",
    "Calendar",
    "CannedResponse",
    "CheckResult",
    "ChecklistStep",
    "ChecklistTick",
    "ConfigChange",
    "DRAFT_BOXES",
    "DocumentVerdict",
    "Draft",
    "Event",
    "ExchangeRate",
    "InboundEmail",
    "ItemTag",
    "MailFieldPattern",
    "Mailbox",
    "Message",
    "MfaRequirement",
    "Notification",
    "OutboxJob",
    "RecoveryCode",
    "RoutingRule",
    "SlaEscalation",
    "SlaPolicy",
    "Team",
    "TeamCheckSettings",
    "User",
    "UserSession",
    "Watcher",
    "WorkItem",
    "team_checkers",
    "team_members",
]
