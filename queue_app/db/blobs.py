"""Content-addressed file storage: each distinct content is stored once, keyed by its SHA-256."""
import hashlib
from functools import lru_cache

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from queue_app.db import batched_rows
from queue_app.models import Blob


@lru_cache(maxsize=4)
def _insert_new_blob(dialect):
    """INSERT that leaves a blob already stored alone (both dialects spell it ON CONFLICT DO NOTHING)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(Blob.__table__).on_conflict_do_nothing(index_elements=["sha256"])


def store_blob(session, data):
    """Return the SHA-256 of `data`, storing the bytes if they are new."""
    digest = hashlib.sha256(data).hexdigest()
    if batched_rows.batching(session):  # bulk import: one plain INSERT, no ORM object holding the bytes
        session.execute(_insert_new_blob(session.get_bind().dialect.name),
                        {"sha256": digest, "size": len(data), "data": data})
        return digest
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, size=len(data), data=data))
        session.flush()
    return digest
