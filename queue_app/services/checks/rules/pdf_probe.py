"""Opens a PDF in a process of its own, under memory and CPU limits; the PDF check runs this file.

A hostile PDF can cost a parser unbounded memory or time: a compressed stream that inflates to
gigabytes, a broken cross-reference table that sends it searching, a page tree of thousands of
pages. Run apart under RLIMIT_AS and RLIMIT_CPU, the worst such a file can do is end this process,
never the worker, and the check says so. Page contents are never decoded: the file is opened, its
encryption and page count read, and each compressed stream is inflated only to count its size,
the output thrown away and stopped at a limit.

Standard library and pypdf only (run as `python -I pdf_probe.py`). The checks keep one such process
per worker process and send it one file after another (`serve MEMORY_BYTES`: see serve()), so a file
costs its parse and not a Python start; the worker kills it when a file takes longer than its time
limit. Run once (`PAGES MEMORY_BYTES CPU_SECONDS`, the file on stdin) it answers one file under a
CPU limit too. Each answer is {"problem": text or null, "costly": true when opening it costs too much
(a viewer should not try either)}.
"""
import io
import json
import logging
import re
import resource
import sys
import zlib

MAX_INFLATED_STREAM = 256 * 1024 * 1024  # more than any real page image (A4 at 600 dpi in colour is 105 MB)
HTML_START = 1024  # a browser looks for a page's tags in the first bytes; so does this
_HTML = re.compile(rb"<(?:!doctype\s+html|html|head|body|script|iframe|svg)[\s>/]", re.IGNORECASE)
_ACTIVE = re.compile(rb"/(?:JavaScript|JS|Launch)(?![A-Za-z0-9#_.-])")
_STREAM = re.compile(rb"(?<!end)stream\r?\n")
_CHUNK = 1024 * 1024


def limit(memory_bytes, cpu_seconds):
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if cpu_seconds is not None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def inflates_past(data, start, most):
    """True when the zlib stream at `start` inflates to more than `most` bytes (read in 1 MB steps)."""
    inflater = zlib.decompressobj()
    total = 0
    pending = data[start:start + _CHUNK]
    offset = start + _CHUNK
    try:
        while pending:
            total += len(inflater.decompress(pending, _CHUNK))
            if total > most:
                return True
            if inflater.eof:
                return False
            pending = inflater.unconsumed_tail
            if not pending:
                pending = data[offset:offset + _CHUNK]
                offset += _CHUNK
    except zlib.error:  # not a Flate stream, or a damaged one: pypdf has its say below
        return False
    return False


# Deflate codes at best 258 bytes in 2 bits: no stream inflates to more than 1032 times its size.
MAX_DEFLATE_RATIO = 1032


def has_bomb(data):
    """True when a compressed stream inflates past MAX_INFLATED_STREAM. Only a stream with that much
    compressed data after its start can: a scan of a few MB is never inflated here at all."""
    shortest = MAX_INFLATED_STREAM // MAX_DEFLATE_RATIO
    if len(data) <= shortest:
        return False
    return any(inflates_past(data, m.end(), MAX_INFLATED_STREAM) for m in _STREAM.finditer(data)
               if len(data) - m.end() > shortest)


def runs_code_when_opened(reader):
    """A JavaScript or launch action in the catalog: its open action, its additional actions, its name tree.
    (Actions elsewhere are found by the plain search of the bytes in problem().)"""
    root = reader.trailer["/Root"]
    action = root.get("/OpenAction")
    action = action.get_object() if action is not None else None
    if hasattr(action, "get") and action.get("/S") in ("/JavaScript", "/Launch"):
        return True
    names = root.get("/Names")
    return (names is not None and "/JavaScript" in names.get_object()) or "/AA" in root


def declared_pages(reader):
    """The page tree's own /Count, read without walking the tree; None when it is not a number."""
    count = reader.trailer["/Root"]["/Pages"].get_object().get("/Count")
    return count if isinstance(count, int) and count >= 0 else None


def problem(data, max_pages):
    """(problem or None, costly) for the PDF's bytes."""
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.CRITICAL)
    if _HTML.search(data[:HTML_START]):
        return "is also a web page (HTML in its first bytes): ask for a plain PDF", False
    if has_bomb(data):
        return (f"has a compressed part that inflates to over {MAX_INFLATED_STREAM // (1024 * 1024)} MB "
                "(a decompression bomb): not read further"), True
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            return "is encrypted (password protected): ask for an unprotected copy", False
        pages = declared_pages(reader)
        if pages is not None and pages > max_pages:
            return f"has {pages} pages, over the limit of {max_pages}", False
        pages = len(reader.pages)  # walks the tree: the /Count above is only the file's claim
        active = runs_code_when_opened(reader) or bool(_ACTIVE.search(data))
    except MemoryError:
        raise
    except Exception as exc:  # pypdf raises many kinds on damaged files; all mean "cannot be read"
        return f"cannot be opened as a PDF ({exc.__class__.__name__})", False
    if pages > max_pages:
        return f"has {pages} pages, over the limit of {max_pages}", False
    if pages == 0:
        return "has no pages", False
    if active:
        return "contains JavaScript or an action that runs when it is opened: ask for a plain copy", False
    return None, False


def answer(data, max_pages, memory_bytes):
    try:
        found, costly = problem(data, max_pages)
    except MemoryError:
        found, costly = f"needs more than {memory_bytes // (1024 * 1024)} MB of memory to open: not read further", True
    return {"problem": found, "costly": costly}


def serve(memory_bytes):
    """Answer one PDF after another: a JSON header line {"size", "max_pages"}, then the bytes; one JSON
    line back for each. A file that ran out of memory ends the process after its answer (what is left
    of the heap is not to be trusted); the worker starts another."""
    limit(memory_bytes, None)
    read, write = sys.stdin.buffer, sys.stdout
    for line in read:
        header = json.loads(line)
        data = read.read(header["size"])
        reply = answer(data, header["max_pages"], memory_bytes)
        write.write(json.dumps(reply) + "\n")
        write.flush()
        if reply["costly"] and "memory" in (reply["problem"] or ""):
            return


def main(argv):
    if argv[1:2] == ["serve"]:
        serve(int(argv[2]))
        return
    max_pages, memory_bytes, cpu_seconds = (int(a) for a in argv[1:4])
    limit(memory_bytes, cpu_seconds)
    sys.stdout.write(json.dumps(answer(sys.stdin.buffer.read(), max_pages, memory_bytes)))


if __name__ == "__main__":
    main(sys.argv)
