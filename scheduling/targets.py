"""The scan target policy: which addresses a scan may connect to.

Every address a target resolves to is checked at run time, not only when the scan is saved: a
name that resolved to a public address yesterday may resolve to the metadata service today
(DNS rebinding). The check is ``SCHEDULING_SCAN_DENY_NETWORKS`` unless the address is inside
``SCHEDULING_SCAN_ALLOW_NETWORKS``; the allow list overrides the deny list.

Scans then connect to the checked address itself (``open_connection``), never to the name
again, so a second resolution cannot hand them a different, unchecked address. Alert webhooks
use the same policy and the same HTTP connections (``CheckedHTTPConnection``).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured

from .conf import conf
from .exceptions import TargetNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ResolutionError(OSError):
    """A target's host name did not resolve to any IPv4 or IPv6 address."""


@lru_cache(maxsize=32)
def _parse_networks(name: str, values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(value, strict=False) for value in values)
    except (TypeError, ValueError) as exc:
        # Fail closed: a typo in the deny list must not let everything through.
        raise ImproperlyConfigured(f"SCHEDULING_{name} has an invalid entry: {exc}") from exc


def _networks(name: str) -> tuple[IPNetwork, ...]:
    return _parse_networks(name, tuple(str(value) for value in getattr(conf, name)))


def _candidates(address: IPAddress) -> list[IPAddress]:
    # An IPv4-mapped IPv6 address (::ffff:127.0.0.1) reaches the IPv4 host it embeds, so it
    # is judged as that address as well.
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            candidates[0] = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        if address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
    return candidates


def is_address_allowed(ip: str | IPAddress) -> bool:
    """Return whether the target policy lets scans connect to ``ip``."""
    address = ipaddress.ip_address(ip)
    candidates = _candidates(address)
    if any(c in network for c in candidates for network in _networks("SCAN_ALLOW_NETWORKS")):
        return True
    if any(c in network for c in candidates for network in _networks("SCAN_DENY_NETWORKS")):
        return False
    # The unspecified address (0.0.0.0, ::) connects to this host: treat it like loopback
    # even when the deny list forgets it.
    return not any(c.is_unspecified for c in candidates)


def check_address(ip: str | IPAddress, *, host: str | None = None) -> IPAddress:
    """Return ``ip`` as an address object, or raise ``TargetNotAllowed`` naming host and address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError as exc:
        raise TargetNotAllowed(f"{ip!r} is not an IP address.") from exc
    if not is_address_allowed(address):
        if host and host != str(address):
            message = f"Target {host} resolves to {address}, which the target policy forbids"
        else:
            message = f"Target address {address} is forbidden by the target policy"
        raise TargetNotAllowed(
            f"{message} (SCHEDULING_SCAN_DENY_NETWORKS; allow it explicitly in "
            "SCHEDULING_SCAN_ALLOW_NETWORKS if it is meant to be scanned)."
        )
    return address


def resolve(host: str, port: int | None = None) -> list[str]:
    """Resolve ``host`` now and return its distinct addresses in resolver order."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ResolutionError(f"Cannot resolve {host}: {reason}.") from exc
    addresses: list[str] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ResolutionError(f"Cannot resolve {host}: no IPv4 or IPv6 address.")
    return addresses


def resolve_and_check(host: str, port: int | None = None) -> list[str]:
    """Resolve ``host`` and return its addresses once every one of them passed the policy.

    One forbidden address refuses the whole target: otherwise a name with one public and one
    internal address would reach the internal one whenever the public one is down.
    """
    addresses = resolve(host, port)
    for address in addresses:
        check_address(address, host=host.strip("[]"))
    return addresses


def connect(
    addresses: list[str], port: int, *, timeout: float, host: str = ""
) -> tuple[socket.socket, str]:
    """Connect to the first of ``addresses`` that answers; return the socket and its address.

    Like ``socket.create_connection`` but by address only: callers pass addresses that
    ``resolve_and_check`` returned, and nothing here resolves a name again. ``timeout`` bounds
    all attempts together.
    """
    deadline = time.monotonic() + timeout
    error: OSError | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            return socket.create_connection((address, port), timeout=remaining), address
        except OSError as exc:
            error = exc
    if error is None:
        error = TimeoutError(f"No time left to connect to {host or addresses} port {port}.")
    raise error


def open_connection(host: str, port: int, *, timeout: float) -> tuple[socket.socket, str]:
    """Resolve ``host``, check every address, connect to one; return the socket and address."""
    return connect(resolve_and_check(host, port), port, timeout=timeout, host=host)


class _CheckedConnectionMixin:
    """Connect to a policy-checked address of the host; Host header and SNI keep the name."""

    host: str
    port: int
    timeout: float | None  # as http.client declares it; scans always set one
    address = ""

    def _open_checked_socket(self) -> socket.socket:
        if self.timeout is None:  # never wait on a target without a bound
            raise ValueError("A checked connection needs a timeout.")
        sock, self.address = open_connection(self.host, self.port, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class CheckedHTTPConnection(_CheckedConnectionMixin, http.client.HTTPConnection):
    """An HTTP connection to a policy-checked address of its host (scans, alert webhooks)."""

    def connect(self) -> None:
        self.sock = self._open_checked_socket()


class CheckedHTTPSConnection(_CheckedConnectionMixin, http.client.HTTPSConnection):
    """Like ``CheckedHTTPConnection``; the certificate is verified against the host name."""

    def __init__(self, host: str, port: int, *, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls = context

    def connect(self) -> None:
        sock = self._open_checked_socket()
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
