"""Per-team settings of the automated checks. A NULL column means "use the default in code"
(services.checks.settings.DEFAULTS), so a row only holds what a team changed."""
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from queue_app.models.base import db, utcnow

if TYPE_CHECKING:
    from queue_app.models import Team


class TeamCheckSettings(db.Model):
    __tablename__ = "team_check_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"), unique=True)
    # The currency of the team's amounts: its approval threshold and absolute tolerance.
    base_currency: Mapped[Optional[str]] = mapped_column(sa.String(3))
    return_window_days: Mapped[Optional[int]]
    tolerance_absolute: Mapped[Optional[Decimal]] = mapped_column(sa.Numeric(14, 2))
    tolerance_percent: Mapped[Optional[Decimal]] = mapped_column(sa.Numeric(6, 3))
    order_number_format: Mapped[Optional[str]] = mapped_column(sa.String(255))
    # {document_type: regular expression, or "iban"}; types left out keep the default format.
    document_number_formats: Mapped[Optional[dict]] = mapped_column(sa.JSON)
    max_document_bytes: Mapped[Optional[int]]
    # Content types (sniffed from the bytes) a file added to an item may have; NULL: the default list.
    allowed_document_types: Mapped[Optional[list]] = mapped_column(sa.JSON)
    # The reasons a verifier may give for rejecting a document; NULL: the default list.
    document_rejection_reasons: Mapped[Optional[list]] = mapped_column(sa.JSON)
    # Open a re-verification item this many days before a verified document expires; NULL: never.
    reverification_days: Mapped[Optional[int]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    team: Mapped["Team"] = relationship()

    __table_args__ = (
        sa.CheckConstraint("return_window_days IS NULL OR return_window_days >= 0", name="return_window_days"),
        sa.CheckConstraint("tolerance_absolute IS NULL OR tolerance_absolute >= 0", name="tolerance_absolute"),
        sa.CheckConstraint("tolerance_percent IS NULL OR tolerance_percent >= 0", name="tolerance_percent"),
        sa.CheckConstraint("max_document_bytes IS NULL OR max_document_bytes > 0", name="max_document_bytes"),
        sa.CheckConstraint("reverification_days IS NULL OR reverification_days > 0", name="reverification_days"),
    )
