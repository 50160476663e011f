"""Downloads every blueprint streams the same way: CSV that Excel opens as it is (UTF-8 with a
byte-order mark, one header row, CRLF line ends, times as "YYYY-MM-DD HH:MM:SS" in UTC, cells
that would start a formula (= + - @, tab, CR) prefixed with an apostrophe) and JSON lines;
both a chunk at a time, never the whole file in memory."""
import csv
import io
import json
from datetime import date, datetime, timezone

from flask import Response, stream_with_context

FLUSH_BYTES = 64 * 1024


def csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # Excel would run it as a formula
    return value


def _download(response, filename):
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def csv_response(filename, header, rows):
    """Stream rows as an Excel-friendly CSV download, a chunk at a time."""
    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)  # CRLF line ends, quotes where needed
        buffer.write("\ufeff")
        writer.writerow(header)
        for row in rows:
            writer.writerow([csv_cell(v) for v in row])
            if buffer.tell() > FLUSH_BYTES:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    response = Response(stream_with_context(generate()), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    return _download(response, filename)


def jsonl_response(filename, records):
    """Stream JSON objects as JSON lines (one object per line, UTF-8), a chunk at a time."""
    def generate():
        chunk = []
        size = 0
        for record in records:
            line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
            chunk.append(line)
            size += len(line)
            if size > FLUSH_BYTES:
                yield "".join(chunk)
                chunk, size = [], 0
        yield "".join(chunk)

    response = Response(stream_with_context(generate()), mimetype="application/x-ndjson")
    response.headers["Content-Type"] = "application/x-ndjson; charset=utf-8"
    return _download(response, filename)
