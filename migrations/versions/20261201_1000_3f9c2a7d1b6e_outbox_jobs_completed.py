"""outbox jobs completed

Revision ID: 3f9c2a7d1b6e
Revises: f3a4b5c6d7e8
Create Date: 2026-12-01 10:00:00.000000+00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3f9c2a7d1b6e'
down_revision = 'f3a4b5c6d7e8'
branch_labels = None
depends_on = None

IN_FLIGHT = sa.text("completed_at IS NULL AND failed_at IS NULL")


def upgrade():
    # An outbox job is complete when its job has run (completed_at, written by the job in the
    # transaction of its effect), no longer when it was handed to RQ (enqueued_at). The
    # reconciler re-hands jobs handed over but not completed; the partial index holds only those.
    with op.batch_alter_table('outbox_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True))
    # Rows handed over before this revision were done by the old rule; which of them really ran is
    # not recorded anywhere, so they count as completed rather than all running again after the deploy.
    op.execute("UPDATE outbox_jobs SET completed_at = enqueued_at WHERE enqueued_at IS NOT NULL")
    with op.batch_alter_table('outbox_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_jobs_in_flight', ['enqueued_at'], unique=False,
                              sqlite_where=IN_FLIGHT, postgresql_where=IN_FLIGHT)


def downgrade():
    with op.batch_alter_table('outbox_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_jobs_in_flight')
        batch_op.drop_column('failed_at')
        batch_op.drop_column('completed_at')
