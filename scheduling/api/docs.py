"""A self-contained HTML page documenting the API, rendered on the server from the schema.

No JavaScript and no CDN: Swagger UI and Redoc load their assets from a CDN unless another
package (drf-spectacular-sidecar) ships them, and a scheduler often runs where nothing from
outside can be fetched.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from .schema import OpenAPIObject, build_schema

STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328}
header{background:#24292f;color:#fff;padding:16px 32px}header a{color:#9ecbff}
main{display:flex}nav{width:260px;flex:none;padding:16px;border-right:1px solid #d0d7de;
position:sticky;top:0;height:100vh;overflow:auto;font-size:13px}nav a{display:block;color:#0969da;
text-decoration:none}section{padding:0 32px 32px;flex:1;min-width:0}
.op{border:1px solid #d0d7de;border-radius:6px;margin:16px 0;padding:8px 16px}
.m{display:inline-block;min-width:64px;font-weight:700;font-family:monospace}
.GET{color:#1a7f37}.POST{color:#0969da}.PUT,.PATCH{color:#9a6700}.DELETE{color:#cf222e}
code,.path{font-family:ui-monospace,monospace}table{border-collapse:collapse;margin:4px 0 8px}
td,th{border:1px solid #d0d7de;padding:2px 8px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f6f8fa}h3{margin:8px 0 4px}.muted{color:#57606a}
"""


def _anchor(name: str) -> str:
    return "c-" + name


def _type(schema: object) -> SafeString:
    """Render a schema's type as short HTML: links for components, enums listed."""
    if not isinstance(schema, dict):
        return format_html("{}", "any")
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return format_html('<a href="#{}">{}</a>', _anchor(name), name)
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema:
            joiner = " & " if key == "allOf" else " | "
            return mark_safe(joiner.join(_type(s) for s in schema[key]))  # noqa: S308
    kind = schema.get("type", "any")
    if kind == "array":
        text = format_html("array of {}", _type(schema.get("items", {})))
    elif "enum" in schema:
        text = format_html(
            "{} ({})", kind, ", ".join(repr(v) for v in schema["enum"] if v is not None)
        )
    elif "format" in schema:
        text = format_html("{} ({})", kind, schema["format"])
    else:
        text = format_html("{}", kind)
    if schema.get("nullable"):
        text = format_html("{} | null", text)
    return text


def _constraints(schema: OpenAPIObject) -> str:
    names = ("minimum", "maximum", "minLength", "maxLength", "pattern", "default")
    return ", ".join(f"{n}={schema[n]!r}" for n in names if n in schema)


def _properties_table(schema: OpenAPIObject) -> SafeString:
    props = schema.get("properties", {})
    if not props:
        return format_html("<p class=muted>{}</p>", _type(schema))
    required = set(schema.get("required", []))
    rows = format_html_join(
        "",
        "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                name,
                " *" if name in required else "",
                _type(prop),
                "read-only" if prop.get("readOnly") else _constraints(prop),
                prop.get("description", ""),
            )
            for name, prop in props.items()
        ),
    )
    closed = (
        format_html("<p class=muted>{}</p>", "Other keys are rejected (400).")
        if schema.get("additionalProperties") is False
        else ""
    )
    return format_html(
        "<table><tr><th>field (* required)</th><th>type</th><th>constraints</th>"
        "<th>description</th></tr>{}</table>{}",
        rows,
        closed,
    )


def _operation(method: str, path: str, op: OpenAPIObject) -> SafeString:
    params = op.get("parameters", [])
    params_html = (
        format_html(
            "<h3>Parameters</h3><table><tr><th>name</th><th>in</th><th>type</th>"
            "<th>required</th><th>description</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        p.get("name"),
                        p.get("in"),
                        _type(p.get("schema", {})),
                        "yes" if p.get("required") else "",
                        p.get("description", ""),
                    )
                    for p in params
                ),
            ),
        )
        if params
        else ""
    )
    body = op.get("requestBody", {}).get("content", {})
    body_html = (
        format_html(
            "<h3>Request body</h3>{}",
            format_html_join(
                "",
                "<p><code>{}</code>: {}</p>",
                ((t, _type(c.get("schema"))) for t, c in body.items()),
            ),
        )
        if body
        else ""
    )
    responses = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                code,
                resp.get("description", ""),
                format_html_join(
                    ", ",
                    "<code>{}</code> {}",
                    ((t, _type(c.get("schema"))) for t, c in resp.get("content", {}).items()),
                ),
            )
            for code, resp in sorted(op.get("responses", {}).items())
        ),
    )
    return format_html(
        '<div class=op id="{}"><p><span class="m {}">{}</span> <span class=path>{}</span></p>'
        "<p>{}</p><p class=muted>{}</p>{}{}<h3>Responses</h3><table><tr><th>status</th>"
        "<th>description</th><th>body</th></tr>{}</table></div>",
        op.get("operationId", ""),
        method.upper(),
        method.upper(),
        path,
        op.get("summary", ""),
        op.get("description", ""),
        params_html,
        body_html,
        responses,
    )


def render_docs(schema: OpenAPIObject, *, schema_url: str) -> str:
    """Return the HTML page documenting ``schema``."""
    info = schema.get("info", {})
    by_tag: dict[str, list[tuple[str, str, OpenAPIObject]]] = {}
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                tag = (op.get("tags") or ["api"])[0]
                by_tag.setdefault(tag, []).append((method, path, op))
    nav = format_html_join(
        "",
        "<p><b>{}</b></p>{}",
        (
            (
                tag,
                format_html_join(
                    "",
                    '<a href="#{}">{} {}</a>',
                    ((op.get("operationId", ""), m.upper(), p) for m, p, op in ops),
                ),
            )
            for tag, ops in by_tag.items()
        ),
    )
    sections = format_html_join(
        "",
        '<h2 id="t-{}">{}</h2>{}',
        (
            (tag, tag, mark_safe("".join(_operation(m, p, op) for m, p, op in ops)))  # noqa: S308
            for tag, ops in by_tag.items()
        ),
    )
    components = format_html_join(
        "",
        '<div class=op id="{}"><h3>{}</h3><p class=muted>{}</p>{}</div>',
        (
            (_anchor(name), name, comp.get("description", ""), _properties_table(comp))
            for name, comp in sorted(schema.get("components", {}).get("schemas", {}).items())
        ),
    )
    return format_html(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{} {}</title>"
        '<meta name=viewport content="width=device-width"><style>{}</style></head><body>'
        "<header><h1>{} <small>{}</small></h1><p>{}</p><p>OpenAPI 3 schema: "
        '<a href="{}">YAML</a> · <a href="{}?format=json">JSON</a>. Authenticate with '
        "<code>Authorization: Token &lt;key&gt;</code> or a session.</p></header>"
        "<main><nav>{}<p><b>Schemas</b></p></nav><section>{}<h2>Schemas</h2>{}</section>"
        "</main></body></html>",
        info.get("title", "API"),
        info.get("version", ""),
        mark_safe(STYLE),  # noqa: S308 - a constant
        info.get("title", "API"),
        info.get("version", ""),
        info.get("description", ""),
        schema_url,
        schema_url,
        nav,
        sections,
        components,
    )


@require_GET
def docs_view(request: HttpRequest) -> HttpResponse:
    """The API documentation page (public, like the schema it is made from)."""
    schema = build_schema()
    html = render_docs(schema, schema_url=reverse("scheduling-api:schema"))
    return HttpResponse(html, content_type="text/html; charset=utf-8")
