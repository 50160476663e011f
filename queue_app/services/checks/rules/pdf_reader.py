"""The PDF reader process of this worker process: pdf_probe.py in `serve` mode, under a memory limit.

Starting Python and importing pypdf costs about 0.15 s; opening a scan, a few milliseconds. So each
worker process keeps one reader and sends it one file after another. A file that takes longer than
its time limit gets the reader killed (the next file starts a new one), and so does a file that runs
it out of memory (it answers, then ends). A forked process (RQ's work horse) never uses the reader
of the process it was forked from: the pipes would be shared with it.
"""
import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = Path(__file__).with_name("pdf_probe.py")

log = logging.getLogger(__name__)


class ReaderGone(Exception):
    """The reader ended before it answered: the limits ended it, or it could not run at all."""

    def __init__(self, returncode, stderr):
        super().__init__(f"the PDF reader ended with {returncode}")
        self.returncode = returncode
        self.stderr = stderr


class Reader:
    def __init__(self, probe, memory_bytes):
        self.probe, self.memory_bytes, self.pid = probe, memory_bytes, os.getpid()
        self.errors = tempfile.TemporaryFile()  # a file, not a pipe: warnings can never fill it and stall the reader
        self.process = subprocess.Popen([sys.executable, "-I", str(probe), "serve", str(memory_bytes)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors)
        self.pending = b""

    def fits(self, probe, memory_bytes):
        return (self.pid == os.getpid() and self.process.poll() is None
                and (self.probe, self.memory_bytes) == (probe, memory_bytes))

    def ask(self, data, max_pages, seconds):
        """The answer for `data`; TimeoutError after `seconds`, ReaderGone if the reader ended."""
        deadline = time.monotonic() + seconds
        try:
            self.process.stdin.write(json.dumps({"size": len(data), "max_pages": max_pages}).encode() + b"\n")
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self.gone() from None
        out = self.process.stdout.fileno()
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(out, 65536)
            if not chunk:
                raise self.gone()
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def gone(self):
        self.process.wait(timeout=5)
        self.errors.seek(0)
        return ReaderGone(self.process.returncode, self.errors.read()[-2000:])

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout, self.errors):
            try:
                stream.close()
            except OSError:
                pass


_reader = None


def ask(data, *, max_pages, memory_bytes, seconds, probe=PROBE):
    """pdf_probe's answer for `data` ({"problem", "costly"}); TimeoutError or ReaderGone otherwise,
    after which the next call starts a new reader."""
    global _reader
    if _reader is not None and not _reader.fits(probe, memory_bytes):
        if _reader.pid == os.getpid():
            _reader.stop()
        _reader = None
    if _reader is None:
        _reader = Reader(probe, memory_bytes)
    try:
        return _reader.ask(data, max_pages, seconds)
    except (TimeoutError, ReaderGone, ValueError):
        reader, _reader = _reader, None
        reader.stop()
        raise
