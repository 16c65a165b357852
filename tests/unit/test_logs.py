import json
import logging

from warning.logs import JsonFormatter, lean_log_records, logging_config


def test_json_lines_carry_ids_as_fields() -> None:
    rec = logging.LogRecord("warning.app", logging.INFO, __file__, 1, "webhook %s", ("delivered",), None)
    rec.__dict__.update(webhook_id="msg_1", subscription_id="sub", warning_id="w", attempt=2)
    out = json.loads(JsonFormatter().format(rec))
    assert out["message"] == "webhook delivered" and out["level"] == "info" and out["time"].endswith("Z")
    assert (out["webhook_id"], out["subscription_id"], out["warning_id"], out["attempt"]) == ("msg_1", "sub", "w", 2)


def test_json_off_a_terminal_text_on_one() -> None:
    assert logging_config("info", json_logs=False) is None
    cfg = logging_config("info", json_logs=True)
    assert cfg is not None and cfg["formatters"]["json"]["()"] == "warning.logs.JsonFormatter"


def test_a_warning_level_field_does_not_replace_the_log_level() -> None:
    rec = logging.LogRecord("warning.app", logging.INFO, __file__, 1, "warning alert", (), None)
    rec.__dict__.update(warning_level="red", hazard="heat")
    out = json.loads(JsonFormatter().format(rec))
    assert (out["level"], out["warning_level"], out["hazard"]) == ("info", "red", "heat")


def test_lean_records_still_carry_every_field_the_json_line_writes() -> None:
    saved = (logging._srcfile, logging.logThreads, logging.logProcesses,  # type: ignore[attr-defined]
             logging.logMultiprocessing)
    try:
        lean_log_records()
        rec = logging.getLogger("warning.app").makeRecord(
            "warning.app", logging.INFO, "f.py", 1, "warning %s", ("alert",), None, extra={"warning_id": "w1"})
        out = json.loads(JsonFormatter().format(rec))
        assert (out["message"], out["warning_id"], out["level"], out["logger"]) == ("warning alert", "w1", "info",
                                                                                    "warning.app")
    finally:
        (logging._srcfile, logging.logThreads, logging.logProcesses,  # type: ignore[attr-defined]
         logging.logMultiprocessing) = saved
