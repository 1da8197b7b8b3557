"""The scan target policy: which addresses scans and alert webhooks may connect to.

Only public (globally routable) addresses, unless allowed explicitly. In this order, an address
is

1. allowed when it is inside ``SCHEDULING_SCAN_ALLOW_NETWORKS`` (the host's settings);
2. refused when it is a cloud metadata address (``METADATA_ADDRESSES``) or inside
   ``SCHEDULING_SCAN_DENY_NETWORKS`` (empty by default: extra networks the host never wants
   reached, such as its own public ranges or a network-specific NAT64 prefix);
3. allowed when it is inside the tenant's own allow list (``scan_allow_networks``, which only
   superusers set; system schedules have none);
4. allowed when it is public (``not_public_reason``), refused otherwise: private, shared
   (CGNAT), loopback, link-local, unique-local, multicast, reserved, documentation and the
   other special-purpose ranges are refused by default.

An IPv6 address that embeds an IPv4 address reaches that IPv4 host, so both are judged and
both must pass: IPv4-mapped (``::ffff:a.b.c.d``) and NAT64 (``64:ff9b::/96``) addresses, which
only translate, are public when their IPv4 address is; 6to4 (``2002::/16``), Teredo
(``2001::/32``), local-use NAT64 (``64:ff9b:1::/48``) and IPv4-compatible (``::a.b.c.d``)
addresses are not public, and an allow entry for their IPv6 range still needs their IPv4
address to pass. Allowing ``10.0.0.0/8`` therefore opens ``::ffff:10.0.0.1`` and
``64:ff9b::a00:1`` (the same hosts) but no 6to4 or Teredo address; allowing ``2002::/16``
opens no IPv4 address it embeds.

The tables are our own, after IANA's special-purpose address registries, because Python's
``is_global`` differs between versions (3.11 calls 192.0.0.192, 224.0.0.1, ff02::1, fec0::1
and 2002::/16 global; 3.13 does not call 192.0.0.192 or 2002::/16 global but still the rest);
Python's view is applied on top of them, so it can only refuse more.

Every address a target resolves to is checked at run time, not only when the scan is saved: a
name that resolved to a public address yesterday may resolve to the metadata service today
(DNS rebinding). Scans then connect to the checked address itself (``open_connection``), never
to the name again, so a second resolution cannot hand them a different, unchecked address.
Alert webhooks use the same policy (with their tenant's list) and the same HTTP connections
(``CheckedHTTPConnection``); their URL is also checked when the rule is saved (``check_url``).
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils.translation import gettext_lazy as _

from .conf import conf
from .exceptions import TargetNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ResolutionError(OSError):
    """A target's host name did not resolve to any IPv4 or IPv6 address."""


# Cloud metadata services hand out the credentials of the machine the scheduler runs on. They
# are never public, and only SCHEDULING_SCAN_ALLOW_NETWORKS (never a tenant's list) can allow
# one.
METADATA_ADDRESSES: tuple[IPAddress, ...] = tuple(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "168.63.129.16",  # Azure wire server and DNS (a public-looking address)
        "192.0.0.192",  # Oracle Cloud (legacy)
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",  # AWS EKS Pod Identity agent over IPv6
        "fd20:ce::254",  # GCP over IPv6
    )
)

# The ranges that are not public, after IANA's special-purpose address registries (first match
# names the range in error messages). Besides these, an IPv6 address must be global unicast
# (2000::/3), and Python's ipaddress must not call it private, reserved or not global.
NOT_PUBLIC_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), label)
    for network, label in (
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private network"),
        ("100.64.0.0/10", "shared address space, CGNAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private network"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private network"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # with the broadcast address 255.255.255.255
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("::/96", "IPv4-compatible"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "SRv6 segment identifiers"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)

_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


# -- the networks of the settings and of tenants --------------------------------------------


@lru_cache(maxsize=32)
def _parse_networks(name: str, values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(value, strict=False) for value in values)
    except (TypeError, ValueError) as exc:
        # Fail closed: a typo in a list must not change what is let through unnoticed.
        raise ImproperlyConfigured(f"SCHEDULING_{name} has an invalid entry: {exc}") from exc


def _networks(name: str) -> tuple[IPNetwork, ...]:
    return _parse_networks(name, tuple(str(value) for value in getattr(conf, name)))


def network_entries(value: str | Iterable[str] | None) -> list[str]:
    """Split an allow list: CIDRs one per line or comma-separated; ``#`` starts a comment."""
    if not value:
        return []
    lines = value.splitlines() if isinstance(value, str) else [str(item) for item in value]
    entries: list[str] = []
    for line in lines:
        entries.extend(e for e in re.split(r"[\s,]+", line.split("#", 1)[0]) if e)
    return entries


def _parse_entry(entry: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP network (such as 10.0.0.0/8 or fd00::/8)"
            ) from exc
        raise ValueError(f"{entry!r} has host bits set; did you mean {loose}?") from exc


@lru_cache(maxsize=256)
def _parse_entries(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(_parse_entry(entry) for entry in entries)


def parse_network_list(value: str | Iterable[str] | None) -> tuple[IPNetwork, ...]:
    """Return the networks of an allow list; raise ``ValueError`` naming a bad entry."""
    return _parse_entries(tuple(network_entries(value)))


def validate_network_list(value: str | Iterable[str] | None) -> None:
    """Validate a tenant's allow list: every entry a network, none covering a metadata address."""
    errors: list[ValidationError] = []
    for entry in network_entries(value):
        try:
            network = _parse_entry(entry)
        except ValueError as exc:
            errors.append(
                ValidationError(_("%(reason)s."), code="invalid_network", params={"reason": exc})
            )
            continue
        covered = [a for a in METADATA_ADDRESSES if a.version == network.version and a in network]
        if covered:
            errors.append(
                ValidationError(
                    _(
                        "%(entry)s covers the cloud metadata address %(address)s, which a "
                        "tenant's allow list cannot open; list narrower networks."
                    ),
                    code="metadata_network",
                    params={"entry": entry, "address": covered[0]},
                )
            )
    if errors:
        raise ValidationError(errors)


def tenant_allow_networks(tenant: object | None) -> tuple[IPNetwork, ...]:
    """Return the networks of ``tenant``'s own allow list (``scan_allow_networks``).

    The tenant model is swappable: a model without the attribute has no list. An invalid list
    (saved around the validation) refuses every target of the tenant, with a message saying why.
    """
    value = getattr(tenant, "scan_allow_networks", None) if tenant is not None else None
    try:
        return parse_network_list(value)
    except ValueError as exc:
        raise TargetNotAllowed(
            f"The scan allow list of tenant {tenant} is invalid: {exc}. A superuser can "
            "correct it on the tenant's admin page."
        ) from exc


# -- the policy -----------------------------------------------------------------------------


def _plain(address: IPAddress) -> IPAddress:
    # A scope (fe80::1%eth0) names an interface, not another address.
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


def _rfc6052_ipv4(address: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    # RFC 6052 section 2.2: the IPv4 address follows the prefix, skipping bits 64 to 71.
    value = int(address)
    if prefix_length == 96:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    without_u = ((value >> 64) << 56) | (value & ((1 << 56) - 1))
    return ipaddress.IPv4Address((without_u >> (120 - prefix_length - 32)) & 0xFFFFFFFF)


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """Return the IPv4 addresses an IPv6 address reaches through (mapped, NAT64, 6to4, ...)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    address = ipaddress.IPv6Address(int(address))  # without a scope
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _NAT64:
        return [_rfc6052_ipv4(address, 96)]
    if address in _NAT64_LOCAL:
        # The operator picks the prefix length inside 64:ff9b:1::/48: every reading must pass.
        return [_rfc6052_ipv4(address, length) for length in (48, 56, 64, 96)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)  # the server and the (de-obfuscated) client
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return [ipaddress.IPv4Address(int(address))]
    return []


def _is_translation(address: IPAddress) -> bool:
    # These IPv6 forms only translate: they are as public as the IPv4 address they embed.
    return isinstance(address, ipaddress.IPv6Address) and (
        address in _IPV4_MAPPED or address in _NAT64
    )


def not_public_reason(address: IPAddress) -> str | None:
    """Return why ``address`` is not public (not globally routable), or None when it is."""
    address = _plain(address)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for network, label in NOT_PUBLIC_NETWORKS:
        if address.version == network.version and address in network:
            return f"{label}, {network}"
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return f"not global unicast, outside {_GLOBAL_UNICAST}"
    is_site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    if (
        not address.is_global
        or address.is_private
        or address.is_reserved
        or address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or is_site_local
    ):
        return "not globally routable"
    return None


def _is_literal_of(host: str, address: IPAddress) -> bool:
    # "::ffff:127.0.0.1" is the host ::ffff:7f00:1 (as Python 3.11 spells it), not a name.
    try:
        return ipaddress.ip_address(host) == address
    except ValueError:
        return False


def _in(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


@dataclass(frozen=True)
class TargetPolicy:
    """The target policy of one tenant (or of system schedules: no tenant list)."""

    allow: tuple[IPNetwork, ...]
    deny: tuple[IPNetwork, ...]
    tenant_allow: tuple[IPNetwork, ...] = ()

    @classmethod
    def for_tenant(cls, tenant: object | None = None) -> TargetPolicy:
        """Return the policy of ``tenant``'s scans and webhooks, from the settings as they are."""
        return cls(
            allow=_networks("SCAN_ALLOW_NETWORKS"),
            deny=_networks("SCAN_DENY_NETWORKS"),
            tenant_allow=tenant_allow_networks(tenant),
        )

    def _judge(self, address: IPAddress, *, translation: bool = False) -> str | None:
        if _in(address, self.allow):
            return None
        # The host's settings outrank a tenant's list: it cannot open a metadata address or
        # anything in the deny list.
        if address in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if _in(address, self.deny):
            return "inside SCHEDULING_SCAN_DENY_NETWORKS"
        if _in(address, self.tenant_allow):
            return None
        if translation:
            return None  # judged by the address it embeds
        reason = not_public_reason(address)
        return None if reason is None else f"not a public address ({reason})"

    def refusal(self, ip: str | IPAddress) -> str | None:
        """Return why the policy refuses ``ip`` ("it is ..."), or None when it allows it."""
        address = _plain(ipaddress.ip_address(ip))
        reason = self._judge(address, translation=_is_translation(address))
        if reason is not None:
            return f"it is {reason}"
        for ipv4 in embedded_ipv4(address):
            reason = self._judge(ipv4)
            if reason is not None:
                return f"it embeds {ipv4}, which is {reason}"
        return None

    def is_allowed(self, ip: str | IPAddress) -> bool:
        """Return whether the policy lets scans and webhooks connect to ``ip``."""
        return self.refusal(ip) is None

    def check(self, ip: str | IPAddress, *, host: str | None = None) -> IPAddress:
        """Return ``ip`` as an address, or raise ``TargetNotAllowed`` naming host and address."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError as exc:
            raise TargetNotAllowed(f"{ip!r} is not an IP address.") from exc
        reason = self.refusal(address)
        if reason is None:
            return address
        shown = str(address)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            shown = f"::ffff:{address.ipv4_mapped}"  # as Python 3.13 spells it, not ::ffff:7f00:1
        if host and not _is_literal_of(host, address):
            message = f"Target {host} resolves to {shown}, which the target policy forbids"
        else:
            message = f"Target address {shown} is forbidden by the target policy"
        if "cloud metadata address" in reason:
            hint = "Only SCHEDULING_SCAN_ALLOW_NETWORKS can allow a cloud metadata address."
        else:
            hint = (
                "Allow it in SCHEDULING_SCAN_ALLOW_NETWORKS, or in the tenant's scan allow list "
                "(which superusers set), if it is meant to be reached."
            )
        raise TargetNotAllowed(f"{message}: {reason}. {hint}")


def is_address_allowed(ip: str | IPAddress, *, tenant: object | None = None) -> bool:
    """Return whether the target policy (with ``tenant``'s allow list) allows ``ip``."""
    return TargetPolicy.for_tenant(tenant).is_allowed(ip)


def check_address(
    ip: str | IPAddress, *, host: str | None = None, tenant: object | None = None
) -> IPAddress:
    """Return ``ip`` as an address object, or raise ``TargetNotAllowed`` naming host and address."""
    return TargetPolicy.for_tenant(tenant).check(ip, host=host)


# -- resolving and connecting ---------------------------------------------------------------


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


def resolve_and_check(
    host: str, port: int | None = None, *, tenant: object | None = None
) -> list[str]:
    """Resolve ``host`` and return its addresses once every one of them passed the policy.

    ``tenant`` (the schedule's; None for a system schedule) adds its own allow list. One
    forbidden address refuses the whole target: otherwise a name with one public and one
    internal address would reach the internal one whenever the public one is down.
    """
    policy = TargetPolicy.for_tenant(tenant)
    addresses = resolve(host, port)
    for address in addresses:
        policy.check(address, host=host.strip("[]"))
    return addresses


def check_url(url: str, *, tenant: object | None = None) -> list[str]:
    """Resolve the host of an http(s) ``url`` now and check every address; return them.

    Raises ``ValueError`` for another URL, ``ResolutionError`` and ``TargetNotAllowed``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("Enter an http:// or https:// URL.")
    port = parts.port or (443 if scheme == "https" else 80)
    return resolve_and_check(parts.hostname, port, tenant=tenant)


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


def open_connection(
    host: str, port: int, *, timeout: float, tenant: object | None = None
) -> tuple[socket.socket, str]:
    """Resolve ``host``, check every address, connect to one; return the socket and address."""
    addresses = resolve_and_check(host, port, tenant=tenant)
    return connect(addresses, port, timeout=timeout, host=host)


class _CheckedConnectionMixin:
    """Connect to a policy-checked address of the host; Host header and SNI keep the name."""

    host: str
    port: int
    timeout: float | None  # as http.client declares it; scans always set one
    address = ""
    tenant: object | None = None

    def _open_checked_socket(self) -> socket.socket:
        if self.timeout is None:  # never wait on a target without a bound
            raise ValueError("A checked connection needs a timeout.")
        sock, self.address = open_connection(
            self.host, self.port, timeout=self.timeout, tenant=self.tenant
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class CheckedHTTPConnection(_CheckedConnectionMixin, http.client.HTTPConnection):
    """An HTTP connection to a policy-checked address of its host (scans, alert webhooks).

    ``tenant`` (the schedule's or the alert rule's) adds its own allow list to the policy.
    """

    def __init__(
        self, host: str, port: int, *, timeout: float, tenant: object | None = None
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.tenant = tenant

    def connect(self) -> None:
        self.sock = self._open_checked_socket()


class CheckedHTTPSConnection(_CheckedConnectionMixin, http.client.HTTPSConnection):
    """Like ``CheckedHTTPConnection``; the certificate is verified against the host name."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        context: ssl.SSLContext,
        tenant: object | None = None,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls = context
        self.tenant = tenant

    def connect(self) -> None:
        sock = self._open_checked_socket()
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
