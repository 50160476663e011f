"""Content-addressed file storage: each distinct content is stored once, keyed by its SHA-256."""
import hashlib

import sqlalchemy as sa

from queue_app.models import Blob
from queue_app.services import audit


def store_blob(session, data):
    """Return the SHA-256 of `data`, storing the bytes if they are new."""
    digest = hashlib.sha256(data).hexdigest()
    if audit.batching(session):  # bulk import: a plain INSERT, no ORM object holding the bytes
        if session.scalar(sa.select(Blob.sha256).where(Blob.sha256 == digest)
                          .execution_options(**audit.READS_NO_BATCHED_ROWS)) is None:
            session.execute(sa.insert(Blob.__table__), {"sha256": digest, "size": len(data), "data": data})
        return digest
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, size=len(data), data=data))
        session.flush()
    return digest
