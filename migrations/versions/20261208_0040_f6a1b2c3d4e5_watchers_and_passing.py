"""watchers and passing: who watches an item; whether a team's executives may pass items to a colleague

Revision ID: f6a1b2c3d4e5
Revises: a7b2c3d4e5f6
Create Date: 2026-12-08 00:00:00.000000+00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f6a1b2c3d4e5'
down_revision = 'a7b2c3d4e5f6'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'watchers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('work_item_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_watchers_user_id_users'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['work_item_id'], ['work_items.id'],
                                name=op.f('fk_watchers_work_item_id_work_items'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_watchers')),
        sa.UniqueConstraint('work_item_id', 'user_id', name=op.f('uq_watchers_work_item_id')),
    )
    with op.batch_alter_table('watchers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_watchers_user_id'), ['user_id'], unique=False)
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('executives_may_pass', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_column('executives_may_pass')
    with op.batch_alter_table('watchers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_watchers_user_id'))
    op.drop_table('watchers')
