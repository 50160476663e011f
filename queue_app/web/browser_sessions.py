"""Where this browser keeps the key of its server-side session (services.people.users.start_session)."""
from flask import session

SESSION_KEY = "browser_session_key"


def current_key():
    """This browser's session key, or None when it has none (signed out, or signed in before sessions were kept)."""
    return session.get(SESSION_KEY)
