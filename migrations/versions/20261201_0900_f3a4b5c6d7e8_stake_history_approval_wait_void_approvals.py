"""stake history on work items, the SLA clock while waiting for a checker, void approvals, approval due times

Revision ID: f3a4b5c6d7e8
Revises: e1f2a3b4c5d6
Create Date: 2026-12-01 09:00:00.000000+00:00

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'f3a4b5c6d7e8'
down_revision = 'e1f2a3b4c5d6'
branch_labels = None
depends_on = None


def upgrade():
    # The money an item carried before its current values (services.approvals.stake).
    with op.batch_alter_table('work_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stake_history', sa.JSON(), nullable=True))
    # Whether the SLA clock runs while an item waits for its checker: paused unless a policy says so.
    with op.batch_alter_table('sla_policies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approval_wait', sa.String(length=8), server_default='paused', nullable=False))
        batch_op.create_check_constraint('approval_wait', "approval_wait IN ('paused', 'running')")
    # An approval whose item changed before the decision is void; a pending one has a due time.
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_approvals_status'), type_='check')
        batch_op.create_check_constraint('status', "status IN ('pending', 'approved', 'rejected', 'void')")
        batch_op.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('warned_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_approvals_due_at'), ['due_at'], unique=False)
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approval_due_minutes', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_column('approval_due_minutes')
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approvals_due_at'))
        batch_op.drop_column('overdue_at')
        batch_op.drop_column('warned_at')
        batch_op.drop_column('due_at')
        batch_op.drop_constraint(op.f('ck_approvals_status'), type_='check')
        batch_op.create_check_constraint('status', "status IN ('pending', 'approved', 'rejected')")
    with op.batch_alter_table('sla_policies', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_sla_policies_approval_wait'), type_='check')
        batch_op.drop_column('approval_wait')
    with op.batch_alter_table('work_items', schema=None) as batch_op:
        batch_op.drop_column('stake_history')
