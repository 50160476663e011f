"""Attachments: content sniffing, safe filenames and the blocked file types.

Separate from the parser because documents that never came by mail (services.items.attachments,
the document checks) are sniffed and limited by the same rules.
"""
import codecs
import re
import struct

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
# An SVG is a picture that can carry scripts: it is told apart from plain text so it is never taken for one.
_SVG = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!doctype\s+svg[^>]*>\s*)?"
                  rb"<svg[\s>/]",
                  re.IGNORECASE | re.DOTALL)
# Decoded, an image costs width x height x 4 bytes: beyond this it is refused, whatever the file's size.
# (A4 scanned at 600 dpi is about 35 megapixels.)
MAX_IMAGE_PIXELS = 100_000_000
_JPEG_FRAMES = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}
_JPEG_HEADER_BYTES = 1024 * 1024


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
            return "image/svg+xml" if _SVG.match(sample[:4096]) else "text/plain"
        except UnicodeDecodeError:
            pass
    return "application/octet-stream"


def image_size(data: bytes, content_type: str):
    """(width, height) as the image's header declares them, read without decoding anything; None
    when the header cannot be read (or for a type not read here, such as TIFF)."""
    if content_type == "image/png" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if content_type == "image/gif" and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if content_type == "image/jpeg":
        at = 2
        while at + 9 <= min(len(data), _JPEG_HEADER_BYTES) and data[at] == 0xFF:
            marker = data[at + 1]
            if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill bytes, markers without length
                at += 1 if marker == 0xFF else 2
                continue
            if marker in _JPEG_FRAMES:
                height, width = struct.unpack(">HH", data[at + 5:at + 9])
                return width, height
            at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    return None


def image_problem(data: bytes, content_type: str) -> str | None:
    """Why a PNG, JPEG or GIF must not be shown (damaged header, absurd size), or None. Other types: None."""
    if content_type not in ("image/png", "image/jpeg", "image/gif"):
        return None
    size = image_size(data, content_type)
    if size is None:
        return "is damaged: its header cannot be read"
    width, height = size
    if not width or not height:
        return f"is damaged: its header declares {width} x {height} pixels"
    if width * height > MAX_IMAGE_PIXELS:
        return (f"declares {width} x {height} pixels, over the limit of {MAX_IMAGE_PIXELS // 1_000_000} "
                "megapixels: it is never opened or shown here")
    return None


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
