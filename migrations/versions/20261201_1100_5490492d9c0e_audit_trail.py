"""audit trail: configuration changes and sign-ins, and the hash chain sealing them with item events

Revision ID: 5490492d9c0e
Revises: 3f9c2a7d1b6e
Create Date: 2026-12-01 11:00:00.000000+00:00

Existing events are not sealed by the upgrade: the first seal after it (after any commit, the
scheduler's, or `flask audit seal`) links them all, in id order.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5490492d9c0e'
down_revision = '3f9c2a7d1b6e'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'audit_entries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor_id', sa.Integer(), nullable=True),
        sa.Column('actor_label', sa.String(length=255), nullable=False),
        sa.Column('action', sa.String(length=40), nullable=False),
        sa.Column('object_type', sa.String(length=40), nullable=False),
        sa.Column('object_id', sa.Integer(), nullable=True),
        sa.Column('object_label', sa.String(length=255), nullable=False),
        sa.Column('before', sa.JSON(), nullable=True),
        sa.Column('after', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_audit_entries_actor_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entries')),
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_at', ['at'], unique=False)
        batch_op.create_index('ix_audit_entries_object_type_id', ['object_type', 'id'], unique=False)

    op.create_table(
        'audit_seals',
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('entry_table', sa.String(length=20), nullable=False),
        sa.Column('entry_id', sa.Integer(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_seals')),
        sa.UniqueConstraint('entry_table', 'entry_id', name=op.f('uq_audit_seals_entry_table')),
    )

    op.create_table(
        'audit_chain_head',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('last_seq', sa.Integer(), nullable=False),
        sa.Column('last_hash', sa.String(length=64), nullable=False),
        sa.Column('events_sealed_to', sa.Integer(), nullable=False),
        sa.Column('changes_sealed_to', sa.Integer(), nullable=False),
        sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint('id = 1', name=op.f('ck_audit_chain_head_single_row')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain_head')),
    )


def downgrade():
    op.drop_table('audit_chain_head')
    op.drop_table('audit_seals')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_object_type_id')
        batch_op.drop_index('ix_audit_entries_at')
    op.drop_table('audit_entries')
