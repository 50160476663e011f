"""Hostile files, made in the tests (no binaries in the repository): one function per file.

Each is what a stranger could mail us as a "document": files that lie about what they are, that
are built to exhaust a parser's memory or time, or that carry something that runs.
"""
import io
import struct
import zlib
from functools import cache

from tests.check_files import encrypted_pdf

ONE_MB = 1024 * 1024
PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"


def raw_pdf(objects, *, header=b"%PDF-1.7\n", root=1):
    """A PDF of the given object bodies (numbered from 1), with a correct cross-reference table."""
    out = bytearray(header)
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref)
    return bytes(out)


def stream(data, entries=b""):
    return b"<< /Length %d %s>>\nstream\n" % (len(data), entries) + data + b"\nendstream"


def malformed_xref_pdf():
    """The table points into nothing, startxref past the end, and the objects are garbled: there is
    nothing left to rebuild the file from."""
    return (b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\nendobj\n2 0 ob << /Kids [3 0 R /Count\n"
            b"xref\n0 3\n0000000000 65535 f \n00000zzzzz 00000 n \n9999999999 00000 n \n"
            b"trailer\n<< /Size 3 /Root 7 0 R >>\nstartxref\n99999999\n%%EOF\n")


def javascript_pdf():
    """Runs a script when opened: an OpenAction of type JavaScript, and the same in the name tree."""
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R /Names << /JavaScript 5 0 R >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        PAGE,
        b"<< /Type /Action /S /JavaScript /JS (app.alert\\('opened'\\); this.exportDataObject\\({}\\);) >>",
        b"<< /Names [(a) 4 0 R] >>",
    ])


def many_pages_pdf(pages=5000):
    """`pages` real pages in one flat page tree (about 300 KB)."""
    kids = b" ".join(b"%d 0 R" % (3 + n) for n in range(pages))
    return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>",
                    b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages]
                   + [PAGE] * pages)


@cache
def zeros_deflated(megabytes):
    """A zlib stream of `megabytes` MB of zeros, about 1 KB per MB: one deflated MB repeated (a full
    flush makes each block stand alone), then the checksum of the whole."""
    chunk = bytes(ONE_MB)
    packer = zlib.compressobj(9)
    head = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(megabytes):
        checksum = zlib.adler32(chunk, checksum)
    tail = packer.flush(zlib.Z_FINISH)[:-4]  # the packer's own checksum counts only two chunks
    return head + block * (megabytes - 1) + tail + struct.pack(">I", checksum)


def decompression_bomb_pdf(megabytes=2048):
    """A page whose content stream inflates to `megabytes` MB (2 GB from about 2 MB)."""
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        stream(zeros_deflated(megabytes), b"/Filter /FlateDecode "),
    ])


def pdf_html_polyglot():
    """A valid one-page PDF that is also a web page with a script, for anything that sniffs HTML."""
    page = b"<!DOCTYPE html><html><body><script>fetch('/api/v1/items').then(r => r.text())</script></body></html>"
    return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE],
                   header=b"%PDF-1.7\n%" + page + b"\n")


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pixel_bomb_png(width=100_000, height=100_000):
    """A valid PNG header declaring 10 gigapixels (40 GB decoded), with a few rows of real data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(bytes(4 * width + 1) * 4)) + png_chunk(b"IEND", b""))


def svg_with_script():
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" onload="alert(document.cookie)">'
            b'<script>fetch("/api/v1/items")</script><text x="10" y="50">Passport</text></svg>\n')


def zip_named_pdf():
    """A ZIP archive (holding a script) under a .pdf name."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("passport.pdf.js", "WScript.Shell.Run('calc')")
    return out.getvalue()


def empty_file():
    return b""


# name attached as, the bytes, and what the item's checks must say about it: {check: (status, words)}
CORPUS = {
    "encrypted": ("passport.pdf", encrypted_pdf, {"document_pdf": ("failed", "is encrypted")}),
    "malformed_xref": ("passport.pdf", malformed_xref_pdf,
                       {"document_pdf": ("failed", "cannot be opened as a PDF")}),
    "javascript": ("passport.pdf", javascript_pdf, {"document_pdf": ("failed", "contains JavaScript")}),
    "many_pages": ("statement.pdf", many_pages_pdf,
                   {"document_pdf": ("failed", "has 5000 pages, over the limit of 500")}),
    "decompression_bomb": ("passport.pdf", decompression_bomb_pdf,
                           {"document_pdf": ("failed", "inflates to over 256 MB (a decompression bomb)")}),
    "pdf_html_polyglot": ("passport.pdf", pdf_html_polyglot, {"document_pdf": ("failed", "is also a web page")}),
    "pixel_bomb_png": ("passport.png", pixel_bomb_png,
                       {"document_image": ("failed", "declares 100000 x 100000 pixels")}),
    "svg_with_script": ("passport.svg", svg_with_script,
                        {"document_file_type": ("failed", "is image/svg+xml, not one of PDF, PNG, JPEG or TIFF")}),
    "zip_named_pdf": ("passport.pdf", zip_named_pdf,
                      {"document_file_type": ("failed", "is application/zip, not one of PDF, PNG, JPEG or TIFF")}),
    "empty": ("passport.pdf", empty_file, {"document_size": ("failed", "passport.pdf: is empty"),
                                           "document_file_type": ("failed", "passport.pdf: is empty")}),
}
