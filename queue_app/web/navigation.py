"""Where a form sends the person next, kept on this site."""
from urllib.parse import urlsplit

from flask import url_for


def safe_next(target, default="inbox.index"):
    """Only a path on this site: an absolute or protocol-relative URL would be an open redirect."""
    if target and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for(default)
