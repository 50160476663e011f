"""Mailboxes: the addresses we receive work for. Each one added or changed is recorded in the
audit trail (services.audit), its IMAP password masked."""
import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from queue_app.db import config_cache
from queue_app.models import InboundEmail, Mailbox, Message, Team
from queue_app.models.work_item import PRIORITIES, TYPES
from queue_app.services.audit import record as audit
from queue_app.services.errors import Conflict, Invalid
from queue_app.services.people.users import normalise_email


def sender_for(session, item):
    """The address our mail on `item` comes from, so the customer's answer reaches the team: the
    team's mailbox the requester wrote to, else the team's first active mailbox; None: MAIL_FROM."""
    written_to = session.scalar(
        sa.select(Mailbox.address).join(InboundEmail, InboundEmail.mailbox_id == Mailbox.id)
        .join(Message, Message.inbound_email_id == InboundEmail.id)
        .where(Message.work_item_id == item.id, Mailbox.team_id == item.team_id, Mailbox.active.is_(True))
        .order_by(Message.id).limit(1))
    return written_to or session.scalar(sa.select(Mailbox.address).where(
        Mailbox.team_id == item.team_id, Mailbox.active.is_(True)).order_by(Mailbox.id).limit(1))


def mailbox_settings(mailbox):
    """What the audit trail records of a mailbox: its IMAP password only as set or not, never the value."""
    return audit.snapshot(mailbox, ("address", "type", "priority", "active", *IMAP_SETTINGS),
                          team=mailbox.team.name if mailbox.team is not None else None,
                          imap_password=audit.Secret(mailbox.imap_password))


def create_mailbox(session, *, address, type, team_name, priority="normal", actor=None, **imap):
    address = normalise_email(address)
    errors = {}
    if type not in TYPES:
        errors["type"] = f"must be one of {', '.join(TYPES)}"
    if priority not in PRIORITIES:
        errors["priority"] = f"must be one of {', '.join(PRIORITIES)}"
    team = session.scalar(sa.select(Team).where(Team.name == team_name))
    if team is None:
        errors["team"] = f"no team named {team_name!r}"
    if imap.get("imap_tls", "ssl") not in ("none", "starttls", "ssl"):
        errors["imap_tls"] = "must be one of none, starttls, ssl"
    if errors:
        raise Invalid("invalid mailbox", errors)
    if find_mailbox(session, address) is not None:
        raise Conflict(f"a mailbox {address} exists already", {"address": "already exists"})
    mailbox = Mailbox(address=address, type=type, team=team, team_id=team.id, priority=priority,
                      **{k: v for k, v in imap.items() if v is not None})
    session.add(mailbox)
    session.flush()
    audit.changed(session, actor, "mailbox", mailbox, None, mailbox_settings(mailbox))
    return mailbox


def find_mailbox(session, address):
    return session.scalar(sa.select(Mailbox).where(Mailbox.address == (address or "").strip().lower()))


def active_addresses(session):
    return set(session.scalars(sa.select(Mailbox.address).where(Mailbox.active.is_(True))))


def mailbox_for(session, addresses):
    """The first active mailbox among `addresses` (envelope recipients first, then To/Cc)."""
    wanted = [a.strip().lower() for a in addresses if a]
    if not wanted:
        return None
    if config_cache.enabled(session):  # bulk import: every active mailbox, read once
        found = config_cache.cached(session, "active_mailboxes", lambda: {m.address: m for m in session.scalars(
            sa.select(Mailbox).where(Mailbox.active.is_(True))
            .options(selectinload(Mailbox.team).selectinload(Team.calendar)))})
    else:
        found = {m.address: m for m in session.scalars(
            sa.select(Mailbox).where(Mailbox.address.in_(wanted), Mailbox.active.is_(True)))}
    for address in wanted:
        if address in found:
            return found[address]
    return None


def list_mailboxes(session):
    return session.scalars(sa.select(Mailbox).order_by(Mailbox.address)).all()


IMAP_SETTINGS = ("imap_host", "imap_port", "imap_tls", "imap_user", "imap_password", "imap_folder",
                 "imap_processed_folder")


def update_mailbox(session, mailbox, *, actor=None, **changes):
    """Change a mailbox's defaults, IMAP settings or active flag (its address stays).

    Keys: type, team_name, priority, active and the IMAP settings. A changed IMAP account or
    folder forgets the stored UIDVALIDITY: the UIDs seen so far belong to the old folder.
    """
    allowed = {"type", "team_name", "priority", "active", *IMAP_SETTINGS}
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid(f"cannot change {', '.join(sorted(unknown))}", {k: "cannot be changed" for k in unknown})
    errors = {}
    if "type" in changes and changes["type"] not in TYPES:
        errors["type"] = f"must be one of {', '.join(TYPES)}"
    if "priority" in changes and changes["priority"] not in PRIORITIES:
        errors["priority"] = f"must be one of {', '.join(PRIORITIES)}"
    if "imap_tls" in changes and changes["imap_tls"] not in ("none", "starttls", "ssl"):
        errors["imap_tls"] = "must be one of none, starttls, ssl"
    team = None
    if "team_name" in changes:
        team = session.scalar(sa.select(Team).where(Team.name == changes["team_name"]))
        if team is None:
            errors["team"] = f"no team named {changes['team_name']!r}"
    if errors:
        raise Invalid("invalid mailbox", errors)
    before = mailbox_settings(mailbox)
    account_before = (mailbox.imap_host, mailbox.imap_user, mailbox.imap_folder)
    for key, value in changes.items():
        if key == "team_name":
            mailbox.team, mailbox.team_id = team, team.id
        elif key == "active":
            mailbox.active = bool(value)
        elif key == "imap_folder":
            mailbox.imap_folder = value or "INBOX"
        else:
            setattr(mailbox, key, value)
    if (mailbox.imap_host, mailbox.imap_user, mailbox.imap_folder) != account_before:
        mailbox.imap_uidvalidity = None
    session.flush()
    audit.changed(session, actor, "mailbox", mailbox, before, mailbox_settings(mailbox))
    return mailbox
