"""The item history's rows: a check run folded into one row, codes shown as words."""
from datetime import datetime, timezone
from types import SimpleNamespace

from queue_app.web.templating import event_data, history_rows, run_label

AT = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)


def event(id, kind, **data):
    return SimpleNamespace(id=id, kind=kind, at=AT, actor_label="worker", data=data)


def test_the_results_of_one_run_are_one_row_and_another_run_is_another():
    events = [event(1, "created"),
              event(2, "check_result", check="required_fields", status="passed", message="ok", run="v1"),
              event(3, "check_result", check="document_pdf", status="failed", message="bad", run="v1"),
              event(4, "attention_needed", failed_checks=["document_pdf"]),
              event(5, "check_result", check="required_fields", status="passed", message="ok", run="rerun-ab12"),
              event(6, "check_result", check="document_pdf", status="passed", message="ok", run="rerun-ab12")]

    rows = history_rows(events)

    assert [row.kind for row in rows] == ["created", "check_run", "attention_needed", "check_run"]
    assert [e.id for e in rows[1].events] == [2, 3] and rows[1].counts == "1 failed, 1 passed"
    assert rows[3].counts == "2 passed" and rows[3].id == 5


def test_codes_read_as_words(app_ctx):
    assert run_label("v5") == "after change 5" and run_label("rerun-0f3a") == "asked for again"
    shown = str(event_data({"failed_checks": ["document_pdf", "required_fields"]}, "attention_needed"))
    assert "PDF opens, Required fields" in shown and "document_pdf" not in shown
    assert "under 1 min" in str(event_data({"paused_minutes": 0.03}, "sla_resumed"))
    assert "2 h 5 min" in str(event_data({"paused_minutes": 125.2}, "sla_resumed"))
