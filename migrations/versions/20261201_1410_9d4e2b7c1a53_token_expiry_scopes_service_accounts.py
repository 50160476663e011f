"""API token expiry and scopes; service accounts and the teams they file items for

Revision ID: 9d4e2b7c1a53
Revises: 2ca10efdeebe
Create Date: 2026-12-01 14:10:00.000000+00:00

"""
from datetime import datetime, timedelta, timezone

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9d4e2b7c1a53'
down_revision = '2ca10efdeebe'
branch_labels = None
depends_on = None


def upgrade():
    # Tokens issued before expiry existed get the default 90 days from now, and read and write.
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('scopes', sa.String(length=60), server_default='read write', nullable=False))
    expires = datetime.now(timezone.utc) + timedelta(days=90)
    op.execute(sa.text("UPDATE api_tokens SET expires_at = :expires").bindparams(
        sa.bindparam('expires', expires, type_=sa.DateTime(timezone=True))))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True), nullable=False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_users_role'), type_='check')
        batch_op.create_check_constraint('role', "role IN ('executive', 'supervisor', 'admin', 'service')")
    op.create_table(
        'service_account_teams',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'],
                                name=op.f('fk_service_account_teams_team_id_teams'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_service_account_teams_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'team_id', name=op.f('pk_service_account_teams')),
    )
    with op.batch_alter_table('service_account_teams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_account_teams_team_id'), ['team_id'], unique=False)


def downgrade():
    with op.batch_alter_table('service_account_teams', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_account_teams_team_id'))
    op.drop_table('service_account_teams')
    # Service accounts may have filed items, so they stay, as inactive executives in no team.
    op.execute(sa.text("UPDATE users SET role = 'executive', is_active_user = :no WHERE role = 'service'")
               .bindparams(sa.bindparam('no', False)))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_users_role'), type_='check')
        batch_op.create_check_constraint('role', "role IN ('executive', 'supervisor', 'admin')")
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('scopes')
        batch_op.drop_column('expires_at')
