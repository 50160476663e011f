"""document verdicts, check overrides, and the team's rejection reasons and re-verification lead

Revision ID: d4e8f1a2b3c5
Revises: c7d3a9e5f210
Create Date: 2026-12-07 23:20:00.000000+00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd4e8f1a2b3c5'
down_revision = 'c7d3a9e5f210'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'document_verdicts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('work_item_id', sa.Integer(), nullable=False),
        sa.Column('attachment_id', sa.Integer(), nullable=False),
        sa.Column('verdict', sa.String(length=32), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('decided_by_id', sa.Integer(), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_on', sa.Date(), nullable=True),
        sa.Column('reverification_item_id', sa.Integer(), nullable=True),
        sa.CheckConstraint("verdict IN ('verified', 'rejected', 'resubmission_needed')",
                           name=op.f('ck_document_verdicts_verdict')),
        sa.ForeignKeyConstraint(['attachment_id'], ['attachments.id'],
                                name=op.f('fk_document_verdicts_attachment_id_attachments'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'],
                                name=op.f('fk_document_verdicts_decided_by_id_users'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['reverification_item_id'], ['work_items.id'],
                                name=op.f('fk_document_verdicts_reverification_item_id_work_items'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['work_item_id'], ['work_items.id'],
                                name=op.f('fk_document_verdicts_work_item_id_work_items'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_document_verdicts')),
    )
    with op.batch_alter_table('document_verdicts', schema=None) as batch_op:
        batch_op.create_index('ix_document_verdicts_work_item_id', ['work_item_id', 'attachment_id', 'id'],
                              unique=False)
    op.create_table(
        'check_overrides',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('work_item_id', sa.Integer(), nullable=False),
        sa.Column('checks', sa.JSON(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('decided_by_id', sa.Integer(), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'],
                                name=op.f('fk_check_overrides_decided_by_id_users'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['work_item_id'], ['work_items.id'],
                                name=op.f('fk_check_overrides_work_item_id_work_items'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_check_overrides')),
    )
    with op.batch_alter_table('check_overrides', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_check_overrides_work_item_id'), ['work_item_id'], unique=False)
    with op.batch_alter_table('team_check_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('document_rejection_reasons', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('reverification_days', sa.Integer(), nullable=True))
        batch_op.create_check_constraint('reverification_days', 'reverification_days IS NULL OR reverification_days > 0')


def downgrade():
    with op.batch_alter_table('team_check_settings', schema=None) as batch_op:
        batch_op.drop_constraint('reverification_days', type_='check')
        batch_op.drop_column('reverification_days')
        batch_op.drop_column('document_rejection_reasons')
    with op.batch_alter_table('check_overrides', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_check_overrides_work_item_id'))
    op.drop_table('check_overrides')
    with op.batch_alter_table('document_verdicts', schema=None) as batch_op:
        batch_op.drop_index('ix_document_verdicts_work_item_id')
    op.drop_table('document_verdicts')
