"""full-text search index over work items and messages

SQLite: FTS5 external-content tables work_items_fts and messages_fts, kept current by triggers
on work_items and messages, filled from the existing rows. PostgreSQL: GIN expression indexes
on to_tsvector('simple', ...), which index the existing rows as they are built.
The statements are those db.create_all() runs (then queue_app/services/search.py, now queue_app/db/search_index.py), written out here
so this revision stays as it is whatever that module becomes.

Revision ID: b1a2c3d4e5f6
Revises: 16585e9bff31
Create Date: 2026-11-29 01:00:00.000000+00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b1a2c3d4e5f6'
down_revision = '16585e9bff31'
branch_labels = None
depends_on = None


CREATE = {'postgresql': ['CREATE INDEX IF NOT EXISTS ix_work_items_fts ON work_items USING gin '
                "(to_tsvector('simple'::regconfig, coalesce(ref, '') || ' ' || coalesce(subject, '') || ' ' || "
                "coalesce(description, '') || ' ' || coalesce(requester_name, '') || ' ' || "
                "coalesce(requester_email, '')))",
                'CREATE INDEX IF NOT EXISTS ix_messages_fts ON messages USING gin '
                "(to_tsvector('simple'::regconfig, coalesce(body_text, '')))"],
 'sqlite': ['CREATE VIRTUAL TABLE IF NOT EXISTS work_items_fts USING fts5(ref, subject, description, '
            "requester_name, requester_email, content='work_items', content_rowid='id', tokenize='unicode61 "
            "remove_diacritics 2')",
            'CREATE TRIGGER IF NOT EXISTS work_items_fts_ai AFTER INSERT ON work_items BEGIN INSERT INTO '
            'work_items_fts(rowid, ref, subject, description, requester_name, requester_email) VALUES (new.id, '
            'new.ref, new.subject, new.description, new.requester_name, new.requester_email); END',
            'CREATE TRIGGER IF NOT EXISTS work_items_fts_ad AFTER DELETE ON work_items BEGIN INSERT INTO '
            'work_items_fts(work_items_fts, rowid, ref, subject, description, requester_name, requester_email) '
            "VALUES ('delete', old.id, old.ref, old.subject, old.description, old.requester_name, "
            'old.requester_email); END',
            'CREATE TRIGGER IF NOT EXISTS work_items_fts_au AFTER UPDATE OF ref, subject, description, '
            'requester_name, requester_email ON work_items BEGIN INSERT INTO work_items_fts(work_items_fts, rowid, '
            "ref, subject, description, requester_name, requester_email) VALUES ('delete', old.id, old.ref, "
            'old.subject, old.description, old.requester_name, old.requester_email); INSERT INTO '
            'work_items_fts(rowid, ref, subject, description, requester_name, requester_email) VALUES (new.id, '
            'new.ref, new.subject, new.description, new.requester_name, new.requester_email); END',
            "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(body_text, content='messages', "
            "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
            'CREATE TRIGGER IF NOT EXISTS messages_fts_ai AFTER INSERT ON messages BEGIN INSERT INTO '
            'messages_fts(rowid, body_text) VALUES (new.id, new.body_text); END',
            'CREATE TRIGGER IF NOT EXISTS messages_fts_ad AFTER DELETE ON messages BEGIN INSERT INTO '
            "messages_fts(messages_fts, rowid, body_text) VALUES ('delete', old.id, old.body_text); END",
            'CREATE TRIGGER IF NOT EXISTS messages_fts_au AFTER UPDATE OF body_text ON messages BEGIN INSERT INTO '
            "messages_fts(messages_fts, rowid, body_text) VALUES ('delete', old.id, old.body_text); INSERT INTO "
            'messages_fts(rowid, body_text) VALUES (new.id, new.body_text); END']}

POPULATE = {'postgresql': [],
 'sqlite': ["INSERT INTO work_items_fts(work_items_fts) VALUES ('rebuild')",
            "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')"]}

DROP = {'postgresql': ['DROP INDEX IF EXISTS ix_work_items_fts', 'DROP INDEX IF EXISTS ix_messages_fts'],
 'sqlite': ['DROP TRIGGER IF EXISTS work_items_fts_ai',
            'DROP TRIGGER IF EXISTS work_items_fts_ad',
            'DROP TRIGGER IF EXISTS work_items_fts_au',
            'DROP TRIGGER IF EXISTS messages_fts_ai',
            'DROP TRIGGER IF EXISTS messages_fts_ad',
            'DROP TRIGGER IF EXISTS messages_fts_au',
            'DROP TABLE IF EXISTS work_items_fts',
            'DROP TABLE IF EXISTS messages_fts']}


def upgrade():
    dialect = op.get_bind().dialect.name
    for statement in CREATE.get(dialect, []) + POPULATE.get(dialect, []):
        op.execute(statement)


def downgrade():
    for statement in DROP.get(op.get_bind().dialect.name, []):
        op.execute(statement)
