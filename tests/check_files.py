"""Real files for the document checks, made in the tests, and a way to hang them on an item.

attach() stores a file as an email attachment would be (an inbound message), without the
refusals of services.items.attachments, so the checks can meet files intake would never keep.
"""
import io
import struct
import zlib

from pypdf import PdfWriter

from queue_app.db.blobs import store_blob
from queue_app.models import Attachment, Message
from queue_app.services.intake.mail.attachments import sniff_content_type

# A 1x1 grey baseline JPEG, 159 bytes: JFIF header, a flat quantisation table, the frame, one-code
# Huffman tables for DC and AC, and a scan of two bits (DC difference 0, end of block).
TINY_JPEG = (
    b"\xff\xd8"
    + b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + b"\xff\xdb\x00\x43\x00" + b"\x01" * 64
    + b"\xff\xc0\x00\x0b\x08\x00\x01\x00\x01\x01\x01\x11\x00"
    + b"\xff\xc4\x00\x14\x00\x01" + b"\x00" * 15 + b"\x00"
    + b"\xff\xc4\x00\x14\x10\x01" + b"\x00" * 15 + b"\x00"
    + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    + b"\x3f"
    + b"\xff\xd9"
)
# A little-endian TIFF header pointing at an empty image file directory.
TIFF_HEADER = b"II*\x00\x08\x00\x00\x00" + b"\x00\x00" + b"\x00\x00\x00\x00"
# What a Windows program starts with.
EXE_LIKE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 50 + b"This program cannot be run in DOS mode."


def pdf(pages=1, padding=0):
    """A valid PDF of blank pages; `padding` bytes of metadata make it as large as wanted."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    if padding:
        writer.add_metadata({"/Padding": "x" * padding})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypted_pdf():
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png():
    """A 1x1 white PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff")) + \
        chunk(b"IEND", b"")


def attach(session, item, filename, data, *, inline=False, sender="customer@example.com"):
    """Store `data` as an attachment of a new inbound message on the item; returns the Attachment."""
    message = Message(work_item_id=item.id, kind="inbound", from_address=sender, body_text="See attached.")
    session.add(message)
    session.flush()
    attachment = Attachment(message_id=message.id, filename=filename,
                            content_type=sniff_content_type(data, "application/octet-stream", filename),
                            size=len(data), sha256=store_blob(session, data), is_inline=inline)
    session.add(attachment)
    session.flush()
    return attachment
