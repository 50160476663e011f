"""Content-addressed file storage: each distinct content is stored once, keyed by its SHA-256."""
import hashlib

from queue_app.models import Blob


def store_blob(session, data):
    """Return the SHA-256 of `data`, storing the bytes if they are new."""
    digest = hashlib.sha256(data).hexdigest()
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, size=len(data), data=data))
        session.flush()
    return digest
