"""mail field patterns per team, and which fields of an item were taken from its email

Revision ID: 2ca10efdeebe
Revises: a7c3e9d2f104
Create Date: 2026-12-01 12:00:00.000000+00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '2ca10efdeebe'
down_revision = 'a7c3e9d2f104'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'mail_field_patterns',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('field', sa.String(length=40), nullable=False),
        sa.Column('pattern', sa.String(length=1000), nullable=False),
        sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'],
                                name=op.f('fk_mail_field_patterns_team_id_teams'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_field_patterns')),
    )
    with op.batch_alter_table('mail_field_patterns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_field_patterns_team_id'), ['team_id'], unique=False)
    # A plain ADD COLUMN (no table rebuild on SQLite, so the search index's triggers stay).
    op.add_column('work_items', sa.Column('fields_from_email', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('work_items', schema=None) as batch_op:
        batch_op.drop_column('fields_from_email')
    with op.batch_alter_table('mail_field_patterns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_field_patterns_team_id'))
    op.drop_table('mail_field_patterns')

