"""requester history: a requester's items by (requester_email, id); order number and account searchable

The single-column index on work_items.requester_email becomes (requester_email, id), which serves
the requester page's keyset (newest first) as well as every lookup by address.
The full-text index of work items gains order_number and account: on SQLite the FTS5 table and
its triggers are rebuilt with the two columns and re-filled from the rows; on PostgreSQL the GIN
expression index is rebuilt over the longer document. The statements are written out here (as in
b1a2c3d4e5f6) so this revision stays as it is whatever queue_app/db/search_index.py becomes.

Revision ID: c7d3a9e5f210
Revises: 8b2f4c6d1e90
Create Date: 2026-12-07 21:30:00.000000+00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c7d3a9e5f210'
down_revision = '8b2f4c6d1e90'
branch_labels = None
depends_on = None


OLD_COLUMNS = ('ref', 'subject', 'description', 'requester_name', 'requester_email')
NEW_COLUMNS = OLD_COLUMNS + ('order_number', 'account')


def _sqlite_statements(columns):
    cols = ', '.join(columns)
    new = ', '.join(f'new.{c}' for c in columns)
    old = ', '.join(f'old.{c}' for c in columns)
    return [
        'DROP TRIGGER IF EXISTS work_items_fts_ai',
        'DROP TRIGGER IF EXISTS work_items_fts_ad',
        'DROP TRIGGER IF EXISTS work_items_fts_au',
        'DROP TABLE IF EXISTS work_items_fts',
        f"CREATE VIRTUAL TABLE work_items_fts USING fts5({cols}, content='work_items', "
        f"content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        f'CREATE TRIGGER work_items_fts_ai AFTER INSERT ON work_items BEGIN '
        f'INSERT INTO work_items_fts(rowid, {cols}) VALUES (new.id, {new}); END',
        f'CREATE TRIGGER work_items_fts_ad AFTER DELETE ON work_items BEGIN '
        f"INSERT INTO work_items_fts(work_items_fts, rowid, {cols}) VALUES ('delete', old.id, {old}); END",
        f'CREATE TRIGGER work_items_fts_au AFTER UPDATE OF {cols} ON work_items BEGIN '
        f"INSERT INTO work_items_fts(work_items_fts, rowid, {cols}) VALUES ('delete', old.id, {old}); "
        f'INSERT INTO work_items_fts(rowid, {cols}) VALUES (new.id, {new}); END',
        "INSERT INTO work_items_fts(work_items_fts) VALUES ('rebuild')",
    ]


def _postgresql_statements(columns):
    document = " || ' ' || ".join(f"coalesce({c}, '')" for c in columns)
    return [
        'DROP INDEX IF EXISTS ix_work_items_fts',
        f"CREATE INDEX ix_work_items_fts ON work_items USING gin (to_tsvector('simple'::regconfig, {document}))",
    ]


def _search_index(columns):
    dialect = op.get_bind().dialect.name
    statements = {'sqlite': _sqlite_statements, 'postgresql': _postgresql_statements}.get(dialect)
    for statement in statements(columns) if statements else []:
        op.execute(statement)


def upgrade():
    with op.batch_alter_table('work_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_work_items_requester_email'))
        batch_op.create_index('ix_work_items_requester_email_id', ['requester_email', 'id'], unique=False)
    _search_index(NEW_COLUMNS)


def downgrade():
    _search_index(OLD_COLUMNS)
    with op.batch_alter_table('work_items', schema=None) as batch_op:
        batch_op.drop_index('ix_work_items_requester_email_id')
        batch_op.create_index(batch_op.f('ix_work_items_requester_email'), ['requester_email'], unique=False)
