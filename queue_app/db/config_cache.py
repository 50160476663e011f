"""A per-import cache of configuration rows for bulk intake (`flask intake file`).

Filing an email reads the active routing rules, SLA policies and mailboxes, and through
them teams and calendars. Queried per message, that is several statements (and autoflushes)
per message, plus lazy loads of teams and calendars the identity map had already dropped.

Inside `with config_cache(session):` those lists are read once and kept (with strong
references, so their teams and calendars stay loaded) until `reset(session)`, which the
caller does after each commit: each transaction sees the configuration as of its first
read, as it would when querying (intake never changes configuration itself).
Outside the block nothing is cached and every call queries, as before.
"""
from contextlib import contextmanager

_KEY = "backdesk_config_cache"


@contextmanager
def config_cache(session):
    session.info[_KEY] = {}
    try:
        yield
    finally:
        session.info.pop(_KEY, None)


def enabled(session):
    return _KEY in session.info


def reset(session):
    """Forget what was cached (after a commit, so the next transaction reads afresh)."""
    cache = session.info.get(_KEY)
    if cache is not None:
        cache.clear()


def cached(session, name, load):
    """`load()`, or inside config_cache the value it returned the first time in this transaction."""
    cache = session.info.get(_KEY)
    if cache is None:
        return load()
    if name not in cache:
        cache[name] = load()
    return cache[name]
