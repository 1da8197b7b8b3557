"""The schema and the documentation page of the API, as the host project serves them.

Both are made from the app's own URL patterns (``routes``), under the prefix the host mounts
them at, for whom the host's ``REST_FRAMEWORK`` permissions let in: mounted beside a host's own
API, they never document the host's endpoints.

The page is self-contained HTML rendered on the server from the schema. No JavaScript and no
CDN: Swagger UI and Redoc load their assets from a CDN unless another package
(drf-spectacular-sidecar) ships them, and a scheduler often runs where nothing from outside can
be fetched. Descriptions are Markdown (docstrings, help texts, the choices that drf-spectacular
lists): they are rendered as CommonMark with raw HTML escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, cast

from django.http import HttpRequest
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import patched_settings
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView
from markdown_it import MarkdownIt
from rest_framework.renderers import StaticHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from .routes import api_urlpatterns
from .schema import SCHEMA_SETTINGS, OpenAPIObject

if TYPE_CHECKING:
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.permissions import BasePermission

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
td p,td ul{margin:0}td ul,.muted ul{padding-left:18px}
"""


@cache
def _markdown() -> MarkdownIt:
    # "html": False escapes raw HTML; links to javascript: and the like are not made links.
    return MarkdownIt("commonmark", {"html": False})


def markdown(text: object) -> SafeString:
    """Render the Markdown ``text`` of a description as HTML (raw HTML in it escaped)."""
    if not text:
        return mark_safe("")  # noqa: S308 - empty
    return mark_safe(_markdown().render(str(text)))  # noqa: S308 - raw HTML is escaped


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
                markdown(prop.get("description")),
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
                        markdown(p.get("description")),
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
                markdown(resp.get("description")),
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
        "<p>{}</p><div class=muted>{}</div>{}{}<h3>Responses</h3><table><tr><th>status</th>"
        "<th>description</th><th>body</th></tr>{}</table></div>",
        op.get("operationId", ""),
        method.upper(),
        method.upper(),
        path,
        op.get("summary", ""),
        markdown(op.get("description")),
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
        '<div class=op id="{}"><h3>{}</h3><div class=muted>{}</div>{}</div>',
        (
            (_anchor(name), name, markdown(comp.get("description")), _properties_table(comp))
            for name, comp in sorted(schema.get("components", {}).get("schemas", {}).items())
        ),
    )
    return format_html(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{} {}</title>"
        '<meta name=viewport content="width=device-width"><style>{}</style></head><body>'
        "<header><h1>{} <small>{}</small></h1>{}<p>OpenAPI 3 schema: "
        '<a href="{}">YAML</a> · <a href="{}?format=json">JSON</a>. Authenticate with '
        "<code>Authorization: Token &lt;key&gt;</code> or a session.</p></header>"
        "<main><nav>{}<p><b>Schemas</b></p></nav><section>{}<h2>Schemas</h2>{}</section>"
        "</main></body></html>",
        info.get("title", "API"),
        info.get("version", ""),
        mark_safe(STYLE),  # noqa: S308 - a constant
        info.get("title", "API"),
        info.get("version", ""),
        markdown(info.get("description")),
        schema_url,
        schema_url,
        nav,
        sections,
        components,
    )


def api_prefix(request: HttpRequest | Request | None = None) -> str:
    """Return the path the host project mounts the API at ("/api/"), without SCRIPT_NAME.

    From the URL of ``request`` (the instance namespace it was resolved in), else where
    ``scheduling-api`` is mounted; "/" if it is not.
    """
    match = request.resolver_match if request is not None else None
    namespace = (match.namespace if match else "") or "scheduling-api"
    try:
        root = reverse(f"{namespace}:api-root", kwargs=match.kwargs if match else None)
    except NoReverseMatch:
        return "/"
    return "/" + root.removeprefix(get_script_prefix())


def build_schema(request: Request | None = None, *, public: bool = True) -> OpenAPIObject:
    """Return the OpenAPI document of this app's API as the schema view serves it.

    Made from the app's own URL patterns, with the paths under the prefix the host mounts them
    at: whatever else the host project serves (its own API, its own ``api/schema/``) is not in
    it.
    """
    prefix = api_prefix(request)
    with patched_settings({**SCHEMA_SETTINGS, "SCHEMA_PATH_PREFIX_INSERT": prefix.rstrip("/")}):
        generator = SchemaGenerator(patterns=api_urlpatterns)
        return generator.get_schema(request=request, public=public)


class HostPermissionsMixin(APIView):
    """Who may read the schema and the docs: the host project's ``REST_FRAMEWORK`` defaults.

    Read when the request comes (tests and projects change the settings), not when the class
    is made; not drf-spectacular's SERVE_PERMISSIONS, which default to everyone.
    """

    def get_authenticators(self) -> list[BaseAuthentication]:
        classes = cast(
            "Sequence[type[BaseAuthentication]]", api_settings.DEFAULT_AUTHENTICATION_CLASSES
        )
        return [auth() for auth in classes]

    def get_permissions(self) -> Sequence[BasePermission]:
        classes = cast("Sequence[type[BasePermission]]", api_settings.DEFAULT_PERMISSION_CLASSES)
        return [permission() for permission in classes]


class SchemaView(HostPermissionsMixin, SpectacularAPIView):
    """The OpenAPI 3 document of this app's API (YAML; ``?format=json`` for JSON)."""

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return Response(
            build_schema(request, public=True),
            headers={
                "Content-Disposition": (
                    f'inline; filename="scheduling-api.{request.accepted_renderer.format}"'
                )
            },
        )


class DocsView(HostPermissionsMixin):
    """The API documentation page: readable by whoever may read the schema it is made from."""

    renderer_classes = [StaticHTMLRenderer]
    schema = None  # not an operation of the API

    def get(self, request: Request) -> Response:
        match = request.resolver_match
        namespace = (match.namespace if match else "") or "scheduling-api"
        schema_url = reverse(f"{namespace}:schema", kwargs=match.kwargs if match else None)
        return Response(render_docs(build_schema(request), schema_url=schema_url))
