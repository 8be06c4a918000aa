"""The API's documentation page (``/docs``), rendered here from the OpenAPI schema.

FastAPI's own page loads Swagger UI from a CDN, so it is blank offline, and this server is
meant to run on a laptop without internet. This page needs nothing but the schema: each
endpoint, its summary, its form fields with their descriptions, and a curl line to copy.
"""

from __future__ import annotations

from html import escape

_STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code,pre{background:#f3f3f3;border-radius:4px;padding:.1rem .3rem}pre{padding:.6rem;overflow-x:auto}
.m{font-weight:700;color:#fff;border-radius:4px;padding:.1rem .4rem;margin-right:.4rem}
.get{background:#2f7d32}.post{background:#1e5aa8}td{padding:.2rem .6rem;vertical-align:top}"""


def _fields(schema: dict, spec: dict) -> dict[str, dict]:
    """The properties of a (possibly referenced) request-body schema."""
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = spec.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], {})
    return schema.get("properties", {})


def _endpoint(path: str, method: str, op: dict, spec: dict) -> str:
    body = op.get("requestBody", {}).get("content", {})
    form = next(iter(body.values()), {}).get("schema", {}) if body else {}
    fields = _fields(form, spec)
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{escape(f.get('description', ''))}</td></tr>"
        for name, f in fields.items())
    curl = " ".join(["curl", *(["-X", method.upper()] if method != "get" else []),
                     *(f"-F {name}=@photo.png" if f.get("format") == "binary" else f"-F {name}=..."
                       for name, f in fields.items()), f"http://127.0.0.1:8000{path}"])
    return (f"<h2><span class='m {method}'>{method.upper()}</span><code>{escape(path)}</code></h2>"
            f"<p>{escape(op.get('summary', ''))}</p>"
            + (f"<table>{rows}</table>" if rows else "") + f"<pre>{escape(curl)}</pre>")


def render_api_docs(spec: dict) -> str:
    """An HTML page of every endpoint in the OpenAPI ``spec``."""
    info = spec.get("info", {})
    parts = [_endpoint(path, method, op, spec)
             for path, ops in spec.get("paths", {}).items() for method, op in ops.items()]
    return (f"<!doctype html><html lang='en'><meta charset='utf-8'><title>{escape(info.get('title', ''))} API"
            f"</title><style>{_STYLE}</style><h1>{escape(info.get('title', ''))} API</h1>"
            f"<p>{escape(info.get('description', ''))}</p><p>Machine-readable: "
            "<a href='/openapi.json'>/openapi.json</a>. Answers are JSON; errors are "
            "<code>{\"detail\": \"...\"}</code> with a 4xx or 5xx status.</p>" + "".join(parts))
