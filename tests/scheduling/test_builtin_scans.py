"""The built-in scan types against real loopback servers: http, tcp, tls, dns."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from scheduling import runner
from scheduling.builtin import scans
from scheduling.builtin.scans import ScanFailed
from scheduling.context import ExecutionContext
from scheduling.exceptions import TargetNotAllowed
from scheduling.models import PeriodicScan, Status
from scheduling.registry import scan_types
from tests.factories import make_execution, make_scan, make_tenant

pytestmark = pytest.mark.django_db


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: list[tuple[str, str, str]]  # set per server: (method, path, Host header)

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("Host", "")))
        if self.path == "/":
            self._send(200, b"hello world, all systems go")
        elif self.path.startswith("/status/"):
            self._send(int(self.path.rsplit("/", 1)[1]), b"status page")
        elif self.path == "/redirect":
            self._send(302, b"", {"Location": "https://example.com/elsewhere"})
        elif self.path == "/big":
            self._send(200, b"x" * (3 * 1024 * 1024))
        elif self.path == "/host":
            self._send(200, f"host={self.headers.get('Host')}".encode())
        else:
            self._send(404, b"not found")

    do_GET = do_HEAD = _route

    def log_message(self, format, *args):  # keep the test output clean
        pass


class QuietServer(ThreadingHTTPServer):
    """Keeps connection errors to itself: scans close connections early on purpose (a 3 MB
    body read in part, a TLS client that rejects the certificate)."""

    def handle_error(self, request, client_address):
        self.errors.append(sys.exc_info()[1])


@contextmanager
def serve(tls: ssl.SSLContext | None = None):
    server = QuietServer(("127.0.0.1", 0), Handler)
    server.errors = []
    server.requests = []
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def http_server():
    with serve() as server:
        yield server


def run_scan(scan: PeriodicScan, *, timeout: float = 30) -> dict:
    """Run ``scan`` through its registered handler with a context built from a real row."""
    execution = make_execution(schedule=scan, status=Status.RUNNING, finished_at=None)
    context = ExecutionContext(
        execution=execution,
        schedule=scan,
        tenant=scan.tenant,
        scheduled_for=execution.scheduled_for,
        timeout=timeout,
    )
    return scan_types.get(scan.scan_type).func(scan, context)


def url(server, path: str = "/", host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}{path}"


# -- http ------------------------------------------------------------------------------------


def test_http_scan_records_status_code_and_latency(tenant, http_server):
    scan = make_scan(tenant=tenant, scan_type="http", target=url(http_server))
    result = run_scan(scan)
    assert result["status_code"] == 200
    assert result["ok"] is True
    assert result["address"] == "127.0.0.1"
    assert result["url"] == url(http_server)
    assert 0 <= result["latency_ms"] < 5000
    assert "keyword_found" not in result


def test_http_scan_fails_when_expected_status_differs(tenant, http_server):
    scan = make_scan(
        tenant=tenant,
        scan_type="http",
        target=url(http_server, "/status/503"),
        options={"expected_status": 200},
    )
    with pytest.raises(ScanFailed, match=r"answered HTTP 503 .*expected 200"):
        run_scan(scan)


@pytest.mark.parametrize("status", [404, 500])
def test_http_scan_without_expected_status_fails_on_an_error_status(tenant, http_server, status):
    # A 404 or a 500 is not a healthy service: recorded failed, not succeeded (issue 18).
    scan = make_scan(tenant=tenant, scan_type="http", target=url(http_server, f"/status/{status}"))
    with pytest.raises(ScanFailed, match=rf"answered HTTP {status} .*an error"):
        run_scan(scan)


def test_http_scan_accepts_an_error_status_it_expects(tenant, http_server):
    scan = make_scan(
        tenant=tenant,
        scan_type="http",
        target=url(http_server, "/status/404"),
        options={"expected_status": 404},
    )
    result = run_scan(scan)
    assert (result["status_code"], result["ok"]) == (404, True)


def test_http_scan_finds_keyword(tenant, http_server):
    scan = make_scan(
        tenant=tenant,
        scan_type="http",
        target=url(http_server),
        options={"keyword": "all systems go", "expected_status": 200},
    )
    result = run_scan(scan)
    assert result["keyword_found"] is True
    assert result["ok"] is True


def test_http_scan_missing_keyword_fails_with_a_short_message(tenant, http_server):
    scan = make_scan(
        tenant=tenant,
        scan_type="http",
        target=url(http_server, "/big"),
        options={"keyword": "needle"},
    )
    with pytest.raises(ScanFailed) as info:
        run_scan(scan)
    message = str(info.value)
    assert "'needle' not found" in message
    assert f"{scans.MAX_BODY_BYTES} bytes read" in message  # stopped at the cap
    assert len(message) < 300  # the body never ends up in the error


def test_http_scan_does_not_follow_redirects_and_reports_location(tenant, http_server):
    scan = make_scan(tenant=tenant, scan_type="http", target=url(http_server, "/redirect"))
    result = run_scan(scan)
    assert result["status_code"] == 302
    assert result["location"] == "https://example.com/elsewhere"
    assert len(http_server.requests) == 1


def test_http_scan_head_method(tenant, http_server):
    scan = make_scan(
        tenant=tenant, scan_type="http", target=url(http_server), options={"method": "HEAD"}
    )
    assert run_scan(scan)["status_code"] == 200
    assert http_server.requests[0][0] == "HEAD"


def test_http_scan_sends_the_original_host_header(tenant, http_server):
    port = http_server.server_address[1]
    scan = make_scan(
        tenant=tenant,
        scan_type="http",
        target=url(http_server, "/host", host="localhost"),
        options={"keyword": f"host=localhost:{port}"},
    )
    result = run_scan(scan)
    assert result["keyword_found"] is True
    assert result["address"] in ("127.0.0.1", "::1")


def test_http_scan_connection_refused_is_a_readable_failure(tenant):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    scan = make_scan(tenant=tenant, scan_type="http", target=f"http://127.0.0.1:{port}/")
    with pytest.raises(ScanFailed, match="refused"):
        run_scan(scan)


def test_http_scan_of_a_silent_server_times_out_with_a_readable_failure(tenant):
    # The kernel completes the handshake on the listening socket; nobody ever answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        scan = make_scan(
            tenant=tenant,
            scan_type="http",
            target=f"http://127.0.0.1:{port}/",
            options={"timeout": 0.2},
        )
        with pytest.raises(ScanFailed, match=r"No answer from .* within 0\.2 s"):
            run_scan(scan)


def test_http_scan_to_loopback_is_refused_at_run_time_without_allow_list(tenant, http_server):
    # Saved while loopback was allowed: the policy is checked again on every run.
    scan = make_scan(tenant=tenant, scan_type="http", target=url(http_server))
    with (
        override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]),
        pytest.raises(TargetNotAllowed, match=r"127\.0\.0\.1.*forbidden"),
    ):
        run_scan(scan)
    assert http_server.requests == []


def test_http_scan_of_a_name_resolving_to_loopback_names_host_and_address(tenant, http_server):
    scan = make_scan(tenant=tenant, scan_type="http", target=url(http_server, host="localhost"))
    with (
        override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]),
        pytest.raises(TargetNotAllowed) as info,
    ):
        run_scan(scan)
    assert "localhost resolves to" in str(info.value)
    assert http_server.requests == []


def test_http_scan_of_metadata_address_is_refused(tenant):
    scan = make_scan(
        tenant=tenant, scan_type="http", target="http://169.254.169.254/latest/meta-data/"
    )
    with pytest.raises(TargetNotAllowed, match=r"169\.254\.169\.254"):
        run_scan(scan)


def test_http_scan_through_the_runner_records_the_result(tenant, http_server):
    scan = make_scan(tenant=tenant, scan_type="http", target=url(http_server))
    execution = runner.claim(scan, timezone.now())
    runner.execute(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
    assert execution.result["status_code"] == 200


def test_blocked_target_fails_the_execution_with_a_clear_error(tenant):
    scan = make_scan(tenant=tenant, scan_type="tcp", target="169.254.169.254:80")
    execution = runner.claim(scan, timezone.now())
    runner.execute(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.FAILED
    assert execution.error.startswith("TargetNotAllowed: ")
    assert "169.254.169.254" in execution.error


# -- http: servers that end the connection ---------------------------------------------------


class Http10Handler(Handler):
    """An HTTP/1.0 server: no Content-Length, the body ends when it closes the connection."""

    protocol_version = "HTTP/1.0"

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@contextmanager
def serve_http10():
    server = QuietServer(("127.0.0.1", 0), Http10Handler)
    server.errors = []
    server.requests = []
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def serve_raw(reply: bytes):
    """Accept connections, read the request, send ``reply`` (perhaps nothing) and close."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _address = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                conn.recv(65536)
                conn.sendall(reply)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_http10_scan_with_keyword_reads_the_body_until_the_server_closes(tenant):
    # Issue 17, item 10: http.client lets go of the socket of a response that ends the
    # connection; the body is read from it all the same (was: AttributeError).
    with serve_http10() as server:
        scan = make_scan(
            tenant=tenant,
            scan_type="http",
            target=url(server),
            options={"keyword": "all systems go", "expected_status": 200},
        )
        result = run_scan(scan)
    assert result["status_code"] == 200
    assert result["keyword_found"] is True
    assert result["ok"] is True


def test_http10_scan_without_the_keyword_fails_with_a_clear_message(tenant):
    with serve_http10() as server:
        scan = make_scan(
            tenant=tenant, scan_type="http", target=url(server), options={"keyword": "needle"}
        )
        with pytest.raises(ScanFailed, match=r"'needle' not found .*\(HTTP 200, 27 bytes read\)"):
            run_scan(scan)


def test_http10_keyword_scan_through_the_runner_is_recorded_as_succeeded(tenant):
    with serve_http10() as server:
        scan = make_scan(
            tenant=tenant, scan_type="http", target=url(server), options={"keyword": "hello"}
        )
        execution = runner.claim(scan, timezone.now())
        runner.execute(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED, execution.error
    assert execution.result["keyword_found"] is True


def test_http_scan_of_a_server_that_closes_without_a_response_fails_clearly(tenant):
    with serve_raw(b"") as target:
        scan = make_scan(
            tenant=tenant, scan_type="http", target=target, options={"keyword": "hello"}
        )
        execution = runner.claim(scan, timezone.now())
        runner.execute(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.FAILED
    assert execution.error == (
        f"ScanFailed: {target} closed the connection without sending a response."
    )


@pytest.mark.parametrize(
    ("reply", "read"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello, cut", 10),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n20\r\nab", 5),
    ],
    ids=["content-length", "chunked"],
)
def test_http_keyword_scan_of_a_body_cut_short_fails_clearly(tenant, reply, read):
    # The keyword is in the part that came: a truncated response is still a failure.
    with serve_raw(reply) as target:
        scan = make_scan(
            tenant=tenant, scan_type="http", target=target, options={"keyword": "hello"}
        )
        with pytest.raises(ScanFailed) as info:
            run_scan(scan)
    assert str(info.value) == (
        f"{target} closed the connection before the end of the body (HTTP 200, {read} bytes read)."
    )


def test_http_keyword_scan_of_a_raw_http10_reply_without_length_succeeds(tenant):
    with serve_raw(b"HTTP/1.0 200 OK\r\n\r\nhello from 1996") as target:
        scan = make_scan(
            tenant=tenant, scan_type="http", target=target, options={"keyword": "1996"}
        )
        result = run_scan(scan)
    assert result["keyword_found"] is True


# -- per-tenant allow lists ----------------------------------------------------------------------


@pytest.fixture
def no_global_allow_list():
    with override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]):
        yield


@pytest.mark.usefixtures("no_global_allow_list")
def test_a_tenants_allow_list_applies_to_that_tenants_scans_only(http_server):
    lab = make_tenant(scan_allow_networks="127.0.0.0/8")
    other = make_tenant()
    scan = make_scan(tenant=lab, scan_type="http", target=url(http_server))
    assert run_scan(scan)["status_code"] == 200
    foreign = make_scan(tenant=other, scan_type="http", target=url(http_server))
    with pytest.raises(TargetNotAllowed, match=r"127\.0\.0\.1.*not a public address"):
        run_scan(foreign)
    assert len(http_server.requests) == 1


@pytest.mark.usefixtures("no_global_allow_list")
def test_a_tenants_allow_list_applies_to_tcp_and_dns_scans_and_through_the_runner():
    lab = make_tenant(scan_allow_networks="127.0.0.0/8, ::1/128")
    other = make_tenant()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        for tenant, allowed in ((lab, True), (other, False)):
            tcp = make_scan(tenant=tenant, scan_type="tcp", target=f"127.0.0.1:{port}")
            dns = make_scan(tenant=tenant, scan_type="dns", target="localhost")
            for scan in (tcp, dns):
                execution = runner.claim(scan, timezone.now())
                runner.execute(execution.pk)
                execution.refresh_from_db()
                if allowed:
                    assert execution.status == Status.SUCCEEDED, execution.error
                else:
                    assert execution.status == Status.FAILED
                    assert execution.error.startswith("TargetNotAllowed: ")


@pytest.mark.usefixtures("no_global_allow_list")
def test_a_system_scan_gets_the_global_policy_only(http_server):
    scan = make_scan(tenant=None, scan_type="http", target=url(http_server))
    with pytest.raises(TargetNotAllowed, match="127.0.0.1"):
        run_scan(scan)
    with override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=["127.0.0.1/32"]):
        assert run_scan(scan)["status_code"] == 200


@pytest.mark.usefixtures("no_global_allow_list")
def test_scans_of_two_tenants_running_at_once_keep_their_own_policies(http_server):
    # The thread executor runs several tenants' executions at once.
    lab = make_tenant(scan_allow_networks="127.0.0.0/8")
    other = make_tenant()
    target = f"127.0.0.1:{http_server.server_address[1]}"
    calls = {}
    for tenant in (lab, other):
        scan = make_scan(tenant=tenant, scan_type="tcp", target=target)
        execution = make_execution(schedule=scan, status=Status.RUNNING, finished_at=None)
        context = ExecutionContext(
            execution=execution,
            schedule=scan,
            tenant=tenant,
            scheduled_for=execution.scheduled_for,
            timeout=30,
        )
        calls[tenant.slug] = (scan, context)
    outcomes: dict[str, list[str]] = {slug: [] for slug in calls}
    barrier = threading.Barrier(2)

    def run(slug):
        scan, context = calls[slug]
        barrier.wait()
        for _ in range(30):
            try:
                scans.tcp_check(scan, context)
                outcomes[slug].append("ok")
            except TargetNotAllowed:
                outcomes[slug].append("refused")

    threads = [threading.Thread(target=run, args=(slug,)) for slug in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == {lab.slug: ["ok"] * 30, other.slug: ["refused"] * 30}


# -- tcp -------------------------------------------------------------------------------------


def test_tcp_scan_connects_to_listening_socket(tenant):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        scan = make_scan(tenant=tenant, scan_type="tcp", target=f"127.0.0.1:{port}")
        result = run_scan(scan)
    assert result["host"] == "127.0.0.1"
    assert result["port"] == port
    assert result["address"] == "127.0.0.1"
    assert result["connect_ms"] >= 0


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_tcp_scan_of_bracketed_ipv6_target(tenant):
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    with server:
        port = server.getsockname()[1]
        result = run_scan(make_scan(tenant=tenant, scan_type="tcp", target=f"[::1]:{port}"))
    assert result["host"] == "::1"
    assert result["address"] == "::1"


def test_tcp_scan_of_closed_port_fails_with_refused(tenant):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    scan = make_scan(tenant=tenant, scan_type="tcp", target=f"127.0.0.1:{port}")
    with pytest.raises(ScanFailed, match=rf"Connection to 127\.0\.0\.1 port {port} refused"):
        run_scan(scan)


@pytest.mark.parametrize("scan_type", ["http", "tcp", "tls", "dns"])
def test_unresolvable_target_is_a_readable_failure(tenant, scan_type):
    target = {
        "http": "http://nonexistent.invalid/",
        "tcp": "nonexistent.invalid:80",
        "tls": "nonexistent.invalid",
        "dns": "nonexistent.invalid",
    }[scan_type]
    scan = make_scan(tenant=tenant, scan_type=scan_type, target=target)
    with pytest.raises(ScanFailed, match=r"^Cannot resolve nonexistent\.invalid: "):
        run_scan(scan)


def test_tcp_scan_to_loopback_is_refused_without_allow_list(tenant):
    scan = make_scan(tenant=tenant, scan_type="tcp", target="localhost:22")
    with (
        override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]),
        pytest.raises(TargetNotAllowed, match="localhost resolves to"),
    ):
        run_scan(scan)


def test_scan_timeout_is_capped_by_setting_and_time_left(tenant):
    scan = make_scan(tenant=tenant)
    execution = make_execution(schedule=scan, status=Status.RUNNING)
    context = ExecutionContext(
        execution=execution,
        schedule=scan,
        tenant=tenant,
        scheduled_for=execution.scheduled_for,
        timeout=5,
    )
    with override_settings(SCHEDULING_SCAN_TIMEOUT=3):
        assert scans.scan_timeout(context, 60) == 3
        assert scans.scan_timeout(context, 1.5) == 1.5
    assert scans.scan_timeout(context, None) <= 5
    context.timeout = 0
    with pytest.raises(ScanFailed, match="No time left"):
        scans.scan_timeout(context)


# -- validation ------------------------------------------------------------------------------


def validation_errors(tenant, **fields) -> dict:
    scan = PeriodicScan(
        tenant=tenant, name="check", trigger_type="interval", interval_seconds=60, **fields
    )
    with pytest.raises(ValidationError) as info:
        scan.full_clean()
    return info.value.message_dict


@pytest.mark.parametrize(
    ("scan_type", "target", "message"),
    [
        ("http", "ftp://example.com/", "Enter an http:// or https:// URL."),
        ("http", "example.com", "Enter an http:// or https:// URL."),
        ("http", "http://user:secret@example.com/", "Do not put credentials in the URL"),
        ("http", "http://example.com:0/", "Enter a port from 1 to 65535"),
        ("http", "http://exa mple.com/", "spaces or control characters"),
        ("http", "http://[::1/", "Enter an http:// or https:// URL."),
        ("http", "http://[zz]:80/", "Enter an http:// or https:// URL."),
        ("http", "http://example.com:8o/", "Enter a port from 1 to 65535"),
        ("tcp", "example.com", "with a port from 1 to 65535"),
        ("tcp", "example.com:70000", "with a port from 1 to 65535"),
        ("tcp", "::1:80", "Put IPv6 addresses in brackets"),
        ("tcp", "bad host!:80", "is not a valid host name"),
        ("tls", "[::1", "IPv6 addresses in brackets"),
        ("dns", "-bad-.example", "is not a valid host name"),
    ],
)
def test_invalid_targets_are_rejected_on_the_target_field(tenant, scan_type, target, message):
    errors = validation_errors(tenant, scan_type=scan_type, target=target, options={})
    assert list(errors) == ["target"]
    assert message in " ".join(errors["target"])


@pytest.mark.parametrize(
    ("scan_type", "options", "field"),
    [
        ("http", {"expected_status": 99}, "expected_status"),
        ("http", {"method": "DELETE"}, "method"),
        ("http", {"method": "HEAD", "keyword": "ok"}, "keyword"),
        ("http", {"timeout": -1}, "timeout"),
        ("http", {"follow": True}, "follow"),
        ("tls", {"min_days": "soon"}, "min_days"),
        ("dns", {"expected_addresses": "10.0.0.1, nope"}, "expected_addresses"),
    ],
)
def test_invalid_options_are_rejected_naming_the_option(tenant, scan_type, options, field):
    target = {
        "http": "https://example.com/",
        "tls": "example.com",
        "dns": "example.com",
    }[scan_type]
    errors = validation_errors(tenant, scan_type=scan_type, target=target, options=options)
    assert field in " ".join(errors["options"])


def test_valid_targets_and_options_are_accepted_and_cleaned(tenant):
    for scan_type, target, options in [
        ("http", "https://example.com:8443/health?full=1", {"expected_status": "204"}),
        ("tcp", "[2001:db8::1]:443", {}),
        ("tcp", "db.internal_zone.example:5432", {"timeout": 2}),
        ("tls", "example.com", {"min_days": 14}),
        ("dns", "example.com", {"expected_addresses": "93.184.216.34"}),
    ]:
        scan = PeriodicScan(
            tenant=tenant,
            name=f"{scan_type} {target}",
            trigger_type="interval",
            interval_seconds=60,
            scan_type=scan_type,
            target=target,
            options=options,
        )
        scan.full_clean()
    assert scan.options == {"expected_addresses": "93.184.216.34"}
    http_scan = PeriodicScan(scan_type="http", options={"expected_status": "204"})
    assert scan_types.get("http").validate_options(http_scan.options)["expected_status"] == 204


# -- tls -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(certificate, monkeypatch):
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server_names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    # Trust the test certificate; the scan's verification itself stays on.
    client_context = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(scans, "tls_context", lambda: client_context)
    with serve(tls=server_context) as server:
        server.server_names = server_names
        yield server


def test_tls_scan_records_days_to_expiry(tenant, tls_server):
    port = tls_server.server_address[1]
    scan = make_scan(tenant=tenant, scan_type="tls", target=f"localhost:{port}")
    result = run_scan(scan)
    assert 28 <= result["days_to_expiry"] <= 30
    assert result["subject"] == "localhost"
    assert result["address"] in ("127.0.0.1", "::1")
    assert tls_server.server_names == ["localhost"]


def test_tls_scan_fails_below_minimum_days(tenant, tls_server):
    port = tls_server.server_address[1]
    scan = make_scan(
        tenant=tenant, scan_type="tls", target=f"127.0.0.1:{port}", options={"min_days": 60}
    )
    with pytest.raises(ScanFailed, match=r"expires in \d+\.\d days .*fewer than 60"):
        run_scan(scan)


def test_tls_scan_fails_on_unverified_certificate(tenant, tls_server, monkeypatch):
    monkeypatch.setattr(scans, "tls_context", ssl.create_default_context)
    port = tls_server.server_address[1]
    scan = make_scan(tenant=tenant, scan_type="tls", target=f"127.0.0.1:{port}")
    with pytest.raises(ScanFailed, match="TLS certificate of 127.0.0.1 port .* is not valid"):
        run_scan(scan)


def test_https_scan_connects_to_checked_address_with_original_host_and_sni(tenant, tls_server):
    port = tls_server.server_address[1]
    scan = make_scan(
        tenant=tenant,
        scan_type="http",
        target=f"https://localhost:{port}/host",
        options={"keyword": f"host=localhost:{port}", "expected_status": 200},
    )
    result = run_scan(scan)
    assert result["keyword_found"] is True
    assert tls_server.server_names == ["localhost"]


# -- dns -------------------------------------------------------------------------------------


def test_dns_scan_records_addresses(tenant):
    scan = make_scan(
        tenant=tenant,
        scan_type="dns",
        target="localhost",
        options={"expected_addresses": "127.0.0.1"},
    )
    result = run_scan(scan)
    assert "127.0.0.1" in result["addresses"]
    assert result["count"] == len(result["addresses"])


def test_dns_scan_fails_when_an_expected_address_is_missing(tenant):
    scan = make_scan(
        tenant=tenant,
        scan_type="dns",
        target="localhost",
        options={"expected_addresses": "127.0.0.1, 10.9.9.9"},
    )
    with pytest.raises(ScanFailed, match=r"missing 10\.9\.9\.9"):
        run_scan(scan)


def test_dns_scan_applies_the_target_policy(tenant):
    scan = make_scan(tenant=tenant, scan_type="dns", target="localhost")
    with (
        override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]),
        pytest.raises(TargetNotAllowed, match="localhost resolves to"),
    ):
        run_scan(scan)
