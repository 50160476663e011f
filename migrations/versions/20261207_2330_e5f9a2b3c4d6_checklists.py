"""checklists: steps per team and work type, and the steps ticked on each item

Revision ID: e5f9a2b3c4d6
Revises: d4e8f1a2b3c5
Create Date: 2026-12-07 23:30:00.000000+00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5f9a2b3c4d6'
down_revision = 'd4e8f1a2b3c5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'checklist_steps',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('work_type', sa.String(length=40), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('text', sa.String(length=500), nullable=False),
        sa.Column('mandatory', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'],
                                name=op.f('fk_checklist_steps_team_id_teams'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_checklist_steps')),
    )
    with op.batch_alter_table('checklist_steps', schema=None) as batch_op:
        batch_op.create_index('ix_checklist_steps_team_id', ['team_id', 'work_type', 'position'], unique=False)

    op.create_table(
        'checklist_ticks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('work_item_id', sa.Integer(), nullable=False),
        sa.Column('step_id', sa.Integer(), nullable=False),
        sa.Column('ticked_by_id', sa.Integer(), nullable=False),
        sa.Column('ticked_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['step_id'], ['checklist_steps.id'],
                                name=op.f('fk_checklist_ticks_step_id_checklist_steps'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['ticked_by_id'], ['users.id'], name=op.f('fk_checklist_ticks_ticked_by_id_users')),
        sa.ForeignKeyConstraint(['work_item_id'], ['work_items.id'],
                                name=op.f('fk_checklist_ticks_work_item_id_work_items'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_checklist_ticks')),
        sa.UniqueConstraint('work_item_id', 'step_id', name=op.f('uq_checklist_ticks_work_item_id')),
    )
    with op.batch_alter_table('checklist_ticks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checklist_ticks_step_id'), ['step_id'], unique=False)


def downgrade():
    with op.batch_alter_table('checklist_ticks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checklist_ticks_step_id'))
    op.drop_table('checklist_ticks')
    with op.batch_alter_table('checklist_steps', schema=None) as batch_op:
        batch_op.drop_index('ix_checklist_steps_team_id')
    op.drop_table('checklist_steps')
