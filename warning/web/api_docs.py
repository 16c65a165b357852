"""The API's description: ``GET /api/v1/openapi.json`` serves the OpenAPI 3.1 document the package ships
(``warning/web/openapi.json``, written by ``warning/web/tools/build_openapi.py``), ``GET /api/docs`` the same as a
plain HTML page made here (no script, no CDN)."""

from __future__ import annotations

import html
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from warning.web.caching import cached_response

DOCS_CACHE = "public, max-age=300"
_PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
                                            "base-uri 'none'; form-action 'none'"}
METHODS = ("get", "post", "patch", "delete", "put")


@lru_cache(maxsize=1)
def openapi_bytes() -> bytes:
    return resources.files("warning").joinpath("web/openapi.json").read_bytes()


def openapi_document() -> dict[str, Any]:
    return dict(orjson.loads(openapi_bytes()))


def _schema_text(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{html.escape(name)}">{html.escape(name)}</a>'
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return "array of " + _schema_text(schema["items"])
    for key in ("oneOf", "allOf"):
        if key in schema:
            return f" {key} ".join(_schema_text(s) for s in schema[key])
    if "enum" in schema:
        return "one of " + ", ".join(html.escape(str(v)) for v in schema["enum"])
    kind = schema.get("type", "")
    return html.escape(kind if isinstance(kind, str) else " | ".join(kind))


@lru_cache(maxsize=1)
def docs_page() -> bytes:
    doc = openapi_document()
    esc = html.escape
    out = ["<!doctype html><html lang=en><head><meta charset=utf-8><title>", esc(doc["info"]["title"]),
           " API</title><style>body{font:14px/1.45 system-ui,sans-serif;max-width:70em;margin:1em auto;padding:0 1em}"
           "code,pre{font-family:ui-monospace,monospace}h3{margin-top:1.6em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left}"
           ".m{font-weight:bold;text-transform:uppercase}</style></head><body>",
           f"<h1>{esc(doc['info']['title'])} <small>{esc(doc['info']['version'])}</small></h1>",
           f"<p>{esc(doc['info']['description'])}</p>",
           '<p>Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).</p>',
           "<h2>Operations</h2>"]
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            o = item[method]
            token = " (token)" if o.get("security") else ""
            out.append(f'<h3 id="{esc(o["operationId"])}"><span class=m>{method}</span> <code>{esc(path)}</code>'
                       f"{token}</h3><p>{esc(o['summary'])}</p>")
            if o.get("description"):
                out.append(f"<p>{esc(o['description'])}</p>")
            if o.get("parameters"):
                out.append("<table><tr><th>parameter</th><th>in</th><th>schema</th><th>what</th></tr>")
                for p in o["parameters"]:
                    out.append(f"<tr><td><code>{esc(p['name'])}</code></td><td>{esc(p['in'])}</td>"
                               f"<td>{_schema_text(p.get('schema'))}</td><td>{esc(p.get('description', ''))}</td></tr>")
                out.append("</table>")
            if "requestBody" in o:
                bodies = ", ".join(f"{esc(ct)}: {_schema_text(c.get('schema'))}"
                                   for ct, c in o["requestBody"]["content"].items())
                out.append(f"<p>Body: {bodies}</p>")
            out.append("<ul>")
            for status, r in o["responses"].items():
                content = ", ".join(f"{esc(ct)} {_schema_text(c.get('schema'))}"
                                    for ct, c in r.get("content", {}).items())
                out.append(f"<li><b>{esc(status)}</b> {esc(r['description'])}{' — ' + content if content else ''}"
                           "</li>")
            out.append("</ul>")
    out.append("<h2>Webhooks</h2>")
    for name, item in doc.get("webhooks", {}).items():
        o = item["post"]
        out.append(f"<h3>{esc(name)}</h3><p>{esc(o['summary'])}</p><p>{esc(o['description'])}</p>")
    out.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        out.append(f'<h3 id="schema-{esc(name)}">{esc(name)}</h3>')
        if schema.get("description"):
            out.append(f"<p>{esc(schema['description'])}</p>")
        out.append(f"<pre>{esc(orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode())}</pre>")
    out.append("</body></html>")
    return "".join(out).encode()


async def openapi_json(request: web.Request) -> web.Response:
    return cached_response(request, openapi_bytes(), content_type="application/json", cache_control=DOCS_CACHE,
                           last_modified=None)


async def api_docs(request: web.Request) -> web.Response:
    return cached_response(request, docs_page(), content_type="text/html", charset="utf-8",
                           cache_control=DOCS_CACHE, last_modified=None, headers=_PAGE_HEADERS)


def add_docs_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    app.router.add_get("/api/docs", api_docs)
