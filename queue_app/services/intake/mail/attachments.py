"""Attachments: content sniffing, safe filenames and the blocked file types.

Separate from the parser because documents that never came by mail (services.items.attachments,
the document checks) are sniffed and limited by the same rules.
"""
import codecs
import re

from queue_app.services.intake.mail.headers import clean_line

DEFAULT_BLOCKED_EXTENSIONS = (".exe", ".bat", ".cmd", ".com", ".scr", ".pif", ".js", ".vbs", ".msi", ".jar",
                              ".ps1", ".dll")
EXECUTABLE_TYPES = ("application/x-msdownload", "application/x-executable")
MAX_FILENAME = 200
# Bidi overrides/isolates are removed from filenames ("evil\u202Efdp.exe" looks like "evilexe.pdf").
_BIDI = {c: None for c in [0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


_OOXML = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
_SNIFF_TEXT_BYTES = 65536


def sniff_content_type(data: bytes, declared: str = "application/octet-stream", filename: str = "") -> str:
    """The content type from the bytes themselves (the declared one is attacker-chosen).

    Only message/rfc822 (and message/global) keep their declared type: they are whole emails.
    """
    declared = (declared or "").split(";")[0].strip().lower()
    if declared in ("message/rfc822", "message/global"):
        return declared
    head = data[:16]
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        ext = _extension(filename)
        return _OOXML.get(ext, "application/zip")
    if head.startswith(b"MZ"):
        return "application/x-msdownload"
    if head.startswith(b"\x7fELF"):
        return "application/x-executable"
    if head.startswith(b"#!"):
        return "text/x-shellscript"
    sample = data[:_SNIFF_TEXT_BYTES]
    if b"\x00" not in sample:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(data) <= _SNIFF_TEXT_BYTES)
            return "text/plain"
        except UnicodeDecodeError:
            pass
    return "application/octet-stream"


def _extension(filename: str) -> str:
    name = (filename or "").lower()
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def safe_filename(name: str, fallback: str) -> str:
    """A filename safe to store and offer for download: no path, no control or bidi characters."""
    name = (name or "").translate(_BIDI)
    name = re.split(r"[/\\]", name)[-1]
    name = clean_line(name, 1000)
    name = re.sub(r'[<>:"|?*]', "_", name).strip(" .")
    if not name:
        return fallback
    if name.split(".")[0].lower() in _WINDOWS_RESERVED:
        name = "_" + name
    if len(name) > MAX_FILENAME:
        ext = _extension(name)
        ext = ext if len(ext) <= 20 else ""
        name = name[:MAX_FILENAME - len(ext)].rstrip(" .") + ext
    return name


def blocked_detail(filename: str, content_type: str, blocked: tuple) -> str | None:
    lowered = filename.lower()
    for ext in blocked:
        if lowered.endswith(ext):
            return f"The attachment {filename!r} has a blocked file type ({ext})."
    if content_type in EXECUTABLE_TYPES:
        return f"The attachment {filename!r} is an executable program ({content_type})."
    return None
