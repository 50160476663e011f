"""HTML of inbound mail: the allow-list sanitiser (nh3) for display and the plain-text rendering.

Separate because it alone decides what markup from outside may reach a browser, and it needs
nothing of MIME or headers.
"""
import html as html_lib
import re
from urllib.parse import unquote

import nh3

_HTML_TAGS = {
    "p", "br", "div", "span", "b", "strong", "i", "em", "u", "s", "sub", "sup", "small", "ul", "ol", "li",
    "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "caption", "tr", "td", "th", "blockquote", "pre",
    "code", "h1", "h2", "h3", "h4", "h5", "h6", "a", "img", "hr",
}
_HTML_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
# Dropped together with everything inside them (not just the tags).
_DROP_WITH_CONTENT = {
    "script", "style", "title", "iframe", "frame", "frameset", "noframes", "noscript", "noembed", "object",
    "embed", "applet", "template", "svg", "math", "select", "textarea", "xmp",
}
_URL_SCHEMES = {"http", "https", "mailto", "cid"}


def sanitise_html(html: str, cid_map: dict[str, str] | None = None) -> str:
    """Safe HTML for display: allow-listed tags/attributes only, and no remote content.

    An <img> keeps its src only when it is a cid: URL whose content-id is in `cid_map`
    (content-id without <> -> URL); every other image loses its src (tracking pixels,
    remote images) but keeps its alt text.
    """
    if not html:
        return ""
    lookup = dict(cid_map or {})
    folded = {str(k).lower(): v for k, v in lookup.items()}

    def attribute_filter(tag, attr, value):
        if tag == "img" and attr == "src":
            value = value.strip()
            if value[:4].lower() != "cid:":
                return None
            cid = unquote(value[4:]).strip().strip("<>")
            url = lookup.get(cid) or folded.get(cid.lower())
            return str(url) if url else None
        return value

    return nh3.clean(html, tags=_HTML_TAGS, clean_content_tags=_DROP_WITH_CONTENT, attributes=_HTML_ATTRIBUTES,
                     attribute_filter=attribute_filter, url_schemes=_URL_SCHEMES,
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


_TEXT_BLOCKS = {"p", "div", "br", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
                "hr", "table", "ul", "ol", "dl", "dt", "dd", "caption", "thead", "tbody", "tfoot", "a"}
_TAG = re.compile(r'<(/?)([a-z0-9]+)((?:\s(?:[^>"]|"[^"]*")*)?)>')
_HREF = re.compile(r'href="([^"]*)"')


def html_to_text(html: str) -> str:
    """A readable plain-text rendering: block elements on their own lines, links as 'text <url>'."""
    if not html:
        return ""
    # nh3 leaves only these tags, attribute-free except a/href, with text entity-escaped,
    # so the regex below sees well-formed markup and every '<' in text is '&lt;'.
    cleaned = nh3.clean(html, tags=_TEXT_BLOCKS, clean_content_tags=_DROP_WITH_CONTENT, attributes={"a": {"href"}},
                        url_schemes={"http", "https", "mailto"}, link_rel=None, strip_comments=True)
    out, in_pre, href, link_start = [], 0, None, 0
    pos = 0
    for match in _TAG.finditer(cleaned):
        _text_chunk(out, cleaned[pos:match.start()], in_pre)
        pos = match.end()
        closing, tag, attrs = match.group(1), match.group(2), match.group(3)
        if tag == "a":
            if not closing:
                found = _HREF.search(attrs)
                href, link_start = (html_lib.unescape(found.group(1)) if found else None), len(out)
            elif href:
                label = "".join(out[link_start:]).strip()
                target = href.removeprefix("mailto:")
                if target and target != label:
                    out.append(f" <{target}>")
                href = None
            continue
        if tag == "pre":
            in_pre += -1 if closing else 1
            in_pre = max(in_pre, 0)
        if tag == "br":
            out.append("\n")
        elif tag == "hr":
            out.append("\n----------\n")
        elif tag in ("td", "th"):
            if not closing and out and not out[-1].endswith(("\n", " ")):
                out.append(" ")
        elif tag == "li":
            if not closing:
                out.append("\n- ")
        elif tag == "tr" and not closing:
            pass
        else:
            out.append("\n")
    _text_chunk(out, cleaned[pos:], in_pre)
    text = "\n".join(line.rstrip() for line in "".join(out).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _text_chunk(out: list, chunk: str, in_pre: int):
    if not chunk:
        return
    if not in_pre:
        chunk = re.sub(r"[ \t\r\n\f]+", " ", chunk)
        if not out or out[-1].endswith(("\n", " ")):
            chunk = chunk.lstrip(" ")
    out.append(html_lib.unescape(chunk).replace("\xa0", " "))
