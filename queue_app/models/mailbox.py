"""Mailboxes: the addresses we receive work for, with their defaults and optional IMAP account."""
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, utcnow

if TYPE_CHECKING:
    from queue_app.models import Team


class Mailbox(db.Model):
    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(sa.String(255), unique=True)  # lower-case
    type: Mapped[str] = mapped_column(sa.String(32), default="general")
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id"))
    priority: Mapped[str] = mapped_column(sa.String(16), default="normal")
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # IMAP polling (optional): the account this mailbox's mail is fetched from.
    imap_host: Mapped[Optional[str]] = mapped_column(sa.String(255))
    imap_port: Mapped[Optional[int]]
    imap_tls: Mapped[str] = mapped_column(sa.String(16), default="ssl", server_default="ssl")
    imap_user: Mapped[Optional[str]] = mapped_column(sa.String(255))
    imap_password: Mapped[Optional[str]] = mapped_column(sa.String(255))
    imap_folder: Mapped[str] = mapped_column(sa.String(255), default="INBOX", server_default="INBOX")
    imap_processed_folder: Mapped[Optional[str]] = mapped_column(sa.String(255))  # move here, else mark seen
    imap_uidvalidity: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped["Team"] = relationship()
