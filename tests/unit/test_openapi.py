"""The OpenAPI document the service ships (warning/web/openapi.json): up to date with its builder, every aiohttp
route described, a valid OpenAPI 3.1 document (as schemathesis loads it), and the records it describes accept what
the service makes."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema_rs
import orjson
import pytest

from alerts.delivery import webhook_body
from warning.web.api_docs import docs_page, openapi_document
from warning.web.tools.build_openapi import OUT, render

METHODS = ("GET", "POST", "PATCH", "DELETE", "PUT")


def routes() -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route make_web_app adds (HEAD comes with GET)."""
    from unittest.mock import MagicMock

    from warning.shared.config import Settings
    from warning.web.api import make_web_app

    svc = MagicMock()
    svc.settings = Settings.from_env({}, data_dir=Path("/nonexistent"))
    app = make_web_app(svc, "x" * 40)
    out = set()
    for route in app.router.routes():
        if route.method not in METHODS:
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        out.add((route.method.lower(), re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)))
    return out


def test_the_shipped_document_is_what_the_builder_writes() -> None:
    assert OUT.read_text(encoding="utf-8") == render(), \
        "warning/web/openapi.json is stale: run python -m warning.web.tools.build_openapi"


def test_every_route_is_described_and_nothing_else() -> None:
    doc = openapi_document()
    described = {(m, p) for p, item in doc["paths"].items() for m in item if m in {x.lower() for x in METHODS}}
    assert routes() == described


def test_schemathesis_loads_it_as_openapi_3_1() -> None:
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_dict(openapi_document())
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == sum(len([m for m in item if m in ("get", "post", "patch", "delete")])
                                  for item in openapi_document()["paths"].values())


def test_record_schemas_accept_what_the_service_makes() -> None:
    """The webhook envelope and a WarningEvent made by the grader validate against the published schemas."""
    from tests.unit.test_rules_grading import HEAT, NOW, sig
    from warning.grading import apply_signal

    _, event = apply_signal(None, sig("red", value=40.6), HEAT, NOW)
    assert event is not None
    doc = openapi_document()
    components = doc["components"]["schemas"]

    def validator(name: str) -> jsonschema_rs.Validator:
        return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{name}",
                                            "components": {"schemas": components}})

    validator("WarningEvent").validate(orjson.loads(orjson.dumps(event)))
    validator("WebhookEnvelope").validate(orjson.loads(webhook_body(
        "warning.alert", event, ack_url="http://127.0.0.1:8080/api/v1/acks/eA.k1.eA")))
    validator("Observation").validate({"station_id": "52418", "time": "2026-07-14T06:00:00Z", "tmax_c": 40.6})
    with pytest.raises(jsonschema_rs.ValidationError):
        validator("Observation").validate({"station_id": "52418", "time": "x", "tmax_c": 99})


def test_docs_page_is_plain_html_naming_every_operation() -> None:
    page = docs_page().decode()
    assert "<script" not in page and "http://" not in page.split("</title>")[1].split("<h2>Schemas")[0]
    for item in openapi_document()["paths"].values():
        for o in item.values():
            assert f'id="{o["operationId"]}"' in page
