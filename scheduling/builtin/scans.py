"""The built-in scan types: ``http``, ``tcp``, ``tls`` and ``dns``.

Each one checks its target's shape when the scan is saved (``validate_target``) and, every
time it runs, resolves the target and checks each address against the target policy
(``scheduling.targets``) before it connects, by address, to a checked one.

A scan that reaches its target but finds it unhealthy raises ``ScanFailed`` with a short,
readable message; the execution is then recorded ``failed`` with that message.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..conf import conf
from ..context import ExecutionContext
from ..exceptions import SchedulingError
from ..help_texts import format_seconds, setting_help
from ..registry import JSONObject, scan_type
from ..targets import (
    CheckedHTTPConnection,
    CheckedHTTPSConnection,
    ResolutionError,
    connect,
    open_connection,
    resolve_and_check,
)

if TYPE_CHECKING:
    from ..models import PeriodicScan

# The most body an HTTP check reads (for its keyword); the rest is never downloaded.
MAX_BODY_BYTES = 1024 * 1024
USER_AGENT = "django-tenant-scheduling/1 (scheduled check)"

_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$", re.IGNORECASE)


class ScanFailed(SchedulingError):
    """A scan ran and found its target unhealthy (refused, wrong status, keyword missing)."""


# -- target shapes -------------------------------------------------------------------------


def validate_host(host: str) -> str:
    """Return ``host`` (an IP address or DNS name) or raise ``ValidationError``."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host.rstrip(".").split(".")
    if not ascii_host or len(ascii_host) > 253 or not all(_LABEL_RE.match(x) for x in labels):
        raise ValidationError(
            _("%(host)s is not a valid host name or IP address."),
            code="invalid_host",
            params={"host": host},
        )
    return host


def parse_host_port(target: str, *, default_port: int | None = None) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:443`` for IPv6) or raise ``ValidationError``."""
    target = target.strip()
    if target.startswith("["):
        host, bracket, rest = target[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            bracket = ""
        if not bracket or (rest and not rest.startswith(":")):
            raise ValidationError(
                _("Enter host:port, with IPv6 addresses in brackets: [2001:db8::1]:443."),
                code="invalid_target",
            )
        port_text = rest[1:] if rest else ""
    elif target.count(":") > 1:
        raise ValidationError(
            _("Put IPv6 addresses in brackets: [2001:db8::1]:443."), code="invalid_target"
        )
    else:
        host, _sep, port_text = target.partition(":")
        validate_host(host)
    if not port_text and default_port is not None:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValidationError(
            _("Enter host:port with a port from 1 to 65535, for example example.com:443."),
            code="invalid_port",
        )
    return host, int(port_text)


def validate_http_target(target: str, options: JSONObject | None = None) -> None:
    """Accept only absolute http:// and https:// URLs without credentials."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in target):
        raise ValidationError(_("A URL cannot contain spaces or control characters."))
    try:
        parts = urlsplit(target)
    except ValueError as exc:  # unbalanced or invalid [IPv6] brackets
        raise ValidationError(_("Enter an http:// or https:// URL."), code="invalid_url") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationError(_("Enter an http:// or https:// URL."), code="invalid_url")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValidationError(_("Enter a port from 1 to 65535 in the URL."), code="invalid_port")
    if parts.username is not None or parts.password is not None:
        # Results and error messages show the URL: credentials in it would leak there.
        raise ValidationError(
            _("Do not put credentials in the URL; they would show in results and logs."),
            code="credentials",
        )
    validate_host(parts.hostname)


def validate_tcp_target(target: str, options: JSONObject | None = None) -> None:
    """Accept ``host:port`` and ``[ipv6]:port``."""
    parse_host_port(target)


def validate_tls_target(target: str, options: JSONObject | None = None) -> None:
    """Accept ``host`` or ``host:port`` (443 when the port is left out)."""
    parse_host_port(target, default_port=443)


def validate_dns_target(target: str, options: JSONObject | None = None) -> None:
    """Accept a DNS name (or an IP address, which resolves to itself)."""
    validate_host(target.strip())


def _checked_target(validate: Callable[[str, JSONObject | None], None], target: str) -> None:
    # A row saved around the validation (a bulk update, a fixture) still fails with a readable
    # message rather than somewhere deep in a socket call.
    try:
        validate(target, None)
    except ValidationError as exc:
        raise ScanFailed(f"Invalid target {target!r}: {' '.join(exc.messages)}") from exc


# -- shared run-time helpers ---------------------------------------------------------------


def _clean_options(form_class: type[forms.Form], options: JSONObject | None) -> JSONObject:
    form = form_class(data=options or {})
    if not form.is_valid():
        errors = "; ".join(
            f"{name}: {' '.join(map(str, messages))}" for name, messages in form.errors.items()
        )
        raise ScanFailed(f"Invalid options: {errors}")
    return form.cleaned_data


def scan_timeout(context: ExecutionContext, requested: float | None = None) -> float:
    """Seconds a scan may take: its option, capped by SCHEDULING_SCAN_TIMEOUT and time left."""
    limit = conf.SCAN_TIMEOUT
    if requested:
        limit = min(limit, requested)
    remaining = context.remaining
    if remaining <= 0:
        raise ScanFailed("No time left before the execution's timeout.")
    return min(limit, remaining)


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _connection_error(exc: OSError, where: str, timeout: float) -> ScanFailed:
    if isinstance(exc, ResolutionError):
        return ScanFailed(str(exc))
    if isinstance(exc, ConnectionRefusedError):
        return ScanFailed(f"Connection to {where} refused.")
    if isinstance(exc, TimeoutError):
        return ScanFailed(f"No answer from {where} within {timeout:g} s.")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ScanFailed(f"TLS certificate of {where} is not valid: {exc.verify_message}.")
    if isinstance(exc, ssl.SSLError):
        return ScanFailed(f"TLS handshake with {where} failed: {exc.reason or exc}.")
    return ScanFailed(f"Cannot connect to {where}: {_reason(exc)}.")


def tls_context() -> ssl.SSLContext:
    """The TLS settings of ``http`` and ``tls`` scans: the system's trust store, verified."""
    return ssl.create_default_context()


# -- http ------------------------------------------------------------------------------------


def _timeout_help() -> str:
    return gettext(
        "Empty: %(value)s (SCHEDULING_SCAN_TIMEOUT). Never longer than that, nor than the "
        "schedule's own timeout."
    ) % {"value": format_seconds(conf.SCAN_TIMEOUT)}


def timeout_field() -> forms.FloatField:
    """The ``timeout`` option every scan type has."""
    return forms.FloatField(
        label=_("timeout (seconds)"),
        required=False,
        min_value=0.1,
        max_value=3600,
        help_text=setting_help(_timeout_help),
    )


class HttpOptions(forms.Form):
    method = forms.ChoiceField(
        label=_("method"), choices=[("GET", "GET"), ("HEAD", "HEAD")], required=False
    )
    expected_status = forms.IntegerField(
        label=_("expected status"),
        required=False,
        min_value=100,
        max_value=599,
        help_text=_(
            "Fail unless the response has this status. Empty: fail on an error status "
            "(4xx, 5xx); redirects (3xx) are recorded, not followed."
        ),
    )
    keyword = forms.CharField(
        label=_("keyword"),
        required=False,
        max_length=200,
        help_text=_("Fail unless the first MiB of the body contains this text (case-sensitive)."),
    )
    timeout = timeout_field()

    def clean_method(self) -> str:
        return self.cleaned_data.get("method") or "GET"

    def clean(self) -> JSONObject:
        cleaned = super().clean() or {}
        if cleaned.get("keyword") and cleaned.get("method") == "HEAD":
            self.add_error("keyword", _("A keyword needs method GET: HEAD responses have no body."))
        return cleaned


def _read_body(
    response: http.client.HTTPResponse, sock: socket.socket, deadline: float
) -> tuple[bytes, bool]:
    """Read at most ``MAX_BODY_BYTES`` of the body; return it and False if it was cut short.

    Cut short: the server closed the connection before the end that Content-Length or the
    chunks announced. A body with neither ends when the server closes (HTTP/1.0): not short.
    """
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("body not read in time")
        sock.settimeout(remaining)
        try:
            chunk = response.read(min(64 * 1024, MAX_BODY_BYTES - size))
        except http.client.IncompleteRead as exc:  # a chunked body cut short
            chunks.append(exc.partial)
            return b"".join(chunks), False
        if not chunk:
            # http.client returns b"" when the connection closes before Content-Length bytes.
            return b"".join(chunks), not response.length
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), True


def _decode(body: bytes, response: http.client.HTTPResponse) -> str:
    charset = response.headers.get_content_charset() or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@scan_type(
    "http",
    label=_("HTTP check"),
    options=HttpOptions,
    validate_target=validate_http_target,
)
def http_check(scan: PeriodicScan, context: ExecutionContext) -> JSONObject:
    """Request the URL once (no redirects followed) and check its status and body."""
    url = scan.target.strip()
    _checked_target(validate_http_target, url)
    options = _clean_options(HttpOptions, scan.options)
    method, expected, keyword = options["method"], options["expected_status"], options["keyword"]
    parts = urlsplit(url)
    https = parts.scheme.lower() == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timeout = scan_timeout(context, options["timeout"])

    connection: CheckedHTTPConnection | CheckedHTTPSConnection
    if https:
        connection = CheckedHTTPSConnection(
            host, port, timeout=timeout, context=tls_context(), tenant=context.tenant
        )
    else:
        connection = CheckedHTTPConnection(host, port, timeout=timeout, tenant=context.tenant)
    started = time.monotonic()
    deadline = started + timeout
    body, complete = b"", True
    try:
        connection.request(
            method,
            path,
            headers={"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"},
        )
        # Kept here: the connection drops its socket when the response ends the connection
        # (HTTP/1.0, "Connection: close"), and the body is still read from it.
        sock = connection.sock
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        response = connection.getresponse()
        try:
            if keyword:
                body, complete = _read_body(response, sock, deadline)
        finally:
            response.close()  # the connection no longer closes a response that ended it
        latency_ms = _elapsed_ms(started)
    except http.client.RemoteDisconnected as exc:  # both an HTTPException and an OSError
        raise ScanFailed(f"{url} closed the connection without sending a response.") from exc
    except http.client.HTTPException as exc:
        raise ScanFailed(
            f"{url} sent an invalid HTTP response: {_short(str(exc) or type(exc).__name__)}"
        ) from exc
    except OSError as exc:
        raise _connection_error(exc, url, timeout) from exc
    finally:
        connection.close()

    status = response.status
    if not complete:
        raise ScanFailed(
            f"{url} closed the connection before the end of the body "
            f"(HTTP {status}, {len(body)} bytes read)."
        )
    result: JSONObject = {
        "url": url,
        "method": method,
        "address": connection.address,
        "status_code": status,
        "latency_ms": latency_ms,
    }
    ok = status == expected if expected else status < 400
    location = response.getheader("Location")
    if 300 <= status < 400 and location:
        result["location"] = _short(location, 2000)
    if keyword:
        found = keyword in _decode(body, response)
        result["keyword_found"] = found
        ok = ok and found
    result["ok"] = ok

    reason = _short(response.reason or "", 100)
    if expected and status != expected:
        raise ScanFailed(f"{url} answered HTTP {status} {reason}, expected {expected}.")
    if not expected and status >= 400:
        # A 404 or a 500 is not a healthy service (set expected_status to accept one).
        raise ScanFailed(
            f"{url} answered HTTP {status} {reason}, an error (set expected_status to accept it)."
        )
    if keyword and not result["keyword_found"]:
        raise ScanFailed(
            f"Keyword {_short(keyword, 100)!r} not found in the response from {url} "
            f"(HTTP {status}, {len(body)} bytes read)."
        )
    return result


# -- tcp -------------------------------------------------------------------------------------


class TcpOptions(forms.Form):
    timeout = timeout_field()


@scan_type(
    "tcp",
    label=_("TCP connect"),
    options=TcpOptions,
    validate_target=validate_tcp_target,
)
def tcp_check(scan: PeriodicScan, context: ExecutionContext) -> JSONObject:
    """Open a TCP connection to ``host:port`` and record how long the connect took."""
    _checked_target(validate_tcp_target, scan.target)
    options = _clean_options(TcpOptions, scan.options)
    host, port = parse_host_port(scan.target)
    timeout = scan_timeout(context, options["timeout"])
    where = f"{host} port {port}"
    try:
        addresses = resolve_and_check(host, port, tenant=context.tenant)
    except ResolutionError as exc:
        raise ScanFailed(str(exc)) from exc
    started = time.monotonic()
    try:
        sock, address = connect(addresses, port, timeout=timeout, host=host)
    except OSError as exc:
        raise _connection_error(exc, where, timeout) from exc
    connect_ms = _elapsed_ms(started)
    sock.close()
    return {"host": host, "port": port, "address": address, "connect_ms": connect_ms}


# -- tls -------------------------------------------------------------------------------------


class TlsOptions(forms.Form):
    min_days = forms.IntegerField(
        label=_("minimum days left"),
        required=False,
        min_value=0,
        max_value=3650,
        help_text=_("Fail when the certificate expires in fewer days than this."),
    )
    timeout = timeout_field()


def _name_field(name: object, field: str = "commonName") -> str:
    # ``getpeercert()`` gives a subject or issuer as a tuple of RDNs of (key, value) pairs.
    if not isinstance(name, tuple):
        return ""
    for rdn in name:
        for key, value in rdn:
            if key == field:
                return str(value)
    return ""


@scan_type(
    "tls",
    label=_("TLS certificate"),
    options=TlsOptions,
    validate_target=validate_tls_target,
)
def tls_check(scan: PeriodicScan, context: ExecutionContext) -> JSONObject:
    """Complete a verified TLS handshake and record the days until the certificate expires."""
    _checked_target(validate_tls_target, scan.target)
    options = _clean_options(TlsOptions, scan.options)
    host, port = parse_host_port(scan.target, default_port=443)
    timeout = scan_timeout(context, options["timeout"])
    where = f"{host} port {port}"
    started = time.monotonic()
    try:
        sock, address = open_connection(host, port, timeout=timeout, tenant=context.tenant)
        with tls_context().wrap_socket(sock, server_hostname=host) as tls:
            cert = tls.getpeercert() or {}
            version = tls.version()
    except OSError as exc:
        raise _connection_error(exc, where, timeout) from exc
    handshake_ms = _elapsed_ms(started)
    # notAfter is a date string ("Jun  1 12:00:00 2030 GMT"); typeshed types every value alike.
    not_after = str(cert["notAfter"])
    expires_at = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), tz=UTC)
    days_left = (expires_at - context.now()).total_seconds() / 86400
    result = {
        "host": host,
        "port": port,
        "address": address,
        "tls_version": version,
        "subject": _name_field(cert.get("subject")),
        "issuer": _name_field(cert.get("issuer")) or _name_field(cert.get("issuer"), "orgName"),
        "expires_at": expires_at.isoformat(),
        "days_to_expiry": int(days_left // 1),
        "handshake_ms": handshake_ms,
    }
    min_days = options["min_days"]
    if min_days is not None and days_left < min_days:
        raise ScanFailed(
            f"The TLS certificate of {where} expires in {days_left:.1f} days "
            f"({expires_at:%Y-%m-%d %H:%M} UTC), fewer than {min_days}."
        )
    return result


# -- dns -------------------------------------------------------------------------------------


class DnsOptions(forms.Form):
    expected_addresses = forms.CharField(
        label=_("expected addresses"),
        required=False,
        max_length=2000,
        help_text=_("Comma-separated IP addresses; fail unless each one is among the results."),
    )

    def clean_expected_addresses(self) -> str:
        value = self.cleaned_data.get("expected_addresses") or ""
        items = [item.strip() for item in value.split(",") if item.strip()]
        bad = []
        for item in items:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                bad.append(item)
        if bad:
            raise ValidationError(
                _("Not IP addresses: %(bad)s."), code="invalid", params={"bad": ", ".join(bad)}
            )
        return ", ".join(str(ipaddress.ip_address(item)) for item in items)


@scan_type(
    "dns",
    label=_("DNS resolution"),
    options=DnsOptions,
    validate_target=validate_dns_target,
)
def dns_check(scan: PeriodicScan, context: ExecutionContext) -> JSONObject:
    """Resolve the name now and record its addresses (each one checked against the policy)."""
    host = scan.target.strip()
    _checked_target(validate_dns_target, host)
    options = _clean_options(DnsOptions, scan.options)
    started = time.monotonic()
    try:
        addresses = resolve_and_check(host, tenant=context.tenant)
    except ResolutionError as exc:
        raise ScanFailed(str(exc)) from exc
    result = {
        "host": host,
        "addresses": addresses,
        "count": len(addresses),
        "resolve_ms": _elapsed_ms(started),
    }
    expected = [item.strip() for item in options["expected_addresses"].split(",") if item.strip()]
    resolved = {ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses}
    missing = [item for item in expected if ipaddress.ip_address(item) not in resolved]
    if missing:
        raise ScanFailed(
            f"{host} resolved to {', '.join(addresses)}; missing {', '.join(missing)}."
        )
    return result
