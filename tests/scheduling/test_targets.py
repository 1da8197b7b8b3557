"""The scan target policy: public addresses only by default, allow lists (global and per
tenant), the deny list, embedded IPv4 addresses, every resolved address, no re-resolution."""

from __future__ import annotations

import ipaddress
import socket
import threading
from types import SimpleNamespace

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.test import override_settings

from scheduling import targets
from scheduling.exceptions import TargetNotAllowed
from scheduling.targets import (
    METADATA_ADDRESSES,
    ResolutionError,
    check_address,
    embedded_ipv4,
    is_address_allowed,
    open_connection,
    parse_network_list,
    resolve_and_check,
    validate_network_list,
)
from tests.factories import make_tenant


@pytest.fixture
def no_allow_list():
    with override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]):
        yield


def test_default_deny_list_refuses_cloud_metadata_address():
    with pytest.raises(TargetNotAllowed) as info:
        check_address("169.254.169.254")
    assert "169.254.169.254" in str(info.value)
    assert "SCHEDULING_SCAN_ALLOW_NETWORKS" in str(info.value)


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "fe80::1", "100.100.100.200"],  # noqa: S104
)
def test_default_deny_list_refuses_local_addresses_without_allow_list(address):
    with pytest.raises(TargetNotAllowed):
        check_address(address)


@pytest.mark.usefixtures("no_allow_list")
def test_ipv4_mapped_ipv6_address_is_judged_as_the_ipv4_address():
    assert not is_address_allowed("::ffff:127.0.0.1")
    assert not is_address_allowed("::ffff:169.254.169.254")
    assert is_address_allowed("::ffff:93.184.216.34")


# Teredo: server 65.54.227.120, client 10.0.0.1 (stored inverted: f5ff:fffe).
TEREDO_TO_10_0_0_1 = "2001:0:4136:e378:8000:63bf:f5ff:fffe"

# Every address here is refused by the default policy; the text names why.
DENIED_BY_DEFAULT = [
    ("10.1.2.3", "private network, 10.0.0.0/8"),
    ("172.16.0.1", "private network, 172.16.0.0/12"),
    ("172.31.255.254", "private network, 172.16.0.0/12"),
    ("192.168.1.1", "private network, 192.168.0.0/16"),
    ("100.64.0.1", "CGNAT, 100.64.0.0/10"),
    ("100.127.255.254", "CGNAT, 100.64.0.0/10"),
    ("fc00::1", "unique local, fc00::/7"),
    ("fd12:3456::1", "unique local, fc00::/7"),
    ("224.0.0.1", "multicast, 224.0.0.0/4"),
    ("239.255.255.250", "multicast, 224.0.0.0/4"),
    ("ff02::1", "multicast, ff00::/8"),
    ("ff0e::1", "multicast, ff00::/8"),
    ("240.0.0.1", "reserved, 240.0.0.0/4"),
    ("255.255.255.255", "reserved, 240.0.0.0/4"),
    ("0.0.0.0", "this network, 0.0.0.0/8"),  # noqa: S104
    ("::", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("169.254.1.1", "link-local, 169.254.0.0/16"),
    ("fe80::1", "link-local, fe80::/10"),
    ("fec0::1", "site-local, fec0::/10"),
    ("192.0.2.1", "documentation"),
    ("2001:db8::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("100::1", "discard-only"),
    ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254, which is a cloud metadata address"),
    ("64:ff9b::0a00:0001", "embeds 10.0.0.1, which is not a public address"),
    ("64:ff9b:1::a00:1", "local-use NAT64, 64:ff9b:1::/48"),
    ("2002:a9fe:a9fe::1", "6to4, 2002::/16"),
    ("2002:0a00:0001::", "6to4, 2002::/16"),
    ("2002:0808:0808::1", "6to4, 2002::/16"),  # 6to4 needs a relay: refused whatever it embeds
    (TEREDO_TO_10_0_0_1, "Teredo, 2001::/32"),
    ("::ffff:10.0.0.1", "embeds 10.0.0.1, which is not a public address"),
    ("::ffff:127.0.0.1", "embeds 127.0.0.1, which is not a public address"),
    ("::a00:1", "IPv4-compatible, ::/96"),
    ("169.254.169.254", "cloud metadata address"),
    ("168.63.129.16", "cloud metadata address"),
    ("192.0.0.192", "cloud metadata address"),
    ("100.100.100.200", "cloud metadata address"),
    ("fd00:ec2::254", "cloud metadata address"),
    ("::ffff:168.63.129.16", "embeds 168.63.129.16, which is a cloud metadata address"),
]

ALLOWED_BY_DEFAULT = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8, as DNS64 hands it to an IPv6-only host
]


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize(("address", "reason"), DENIED_BY_DEFAULT)
def test_addresses_that_are_not_public_are_refused_by_default(address, reason):
    with pytest.raises(TargetNotAllowed) as info:
        check_address(address)
    message = str(info.value)
    assert address in message or str(ipaddress.ip_address(address)) in message
    assert reason in message
    assert not is_address_allowed(address)


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize("address", ALLOWED_BY_DEFAULT)
def test_public_addresses_are_allowed_by_default(address):
    assert is_address_allowed(address)
    assert check_address(address) == ipaddress.ip_address(address)


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize(("address", "reason"), DENIED_BY_DEFAULT)
def test_refusals_do_not_depend_on_what_python_calls_global(monkeypatch, address, reason):
    # Python's is_global differs between versions (3.11 calls 192.0.0.192, 224.0.0.1, ff02::1
    # and 2002::/16 global): with ipaddress calling everything public, the tables still refuse.
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        monkeypatch.setattr(cls, "is_global", property(lambda self: True))
        for name in ("is_private", "is_reserved", "is_multicast", "is_link_local"):
            monkeypatch.setattr(cls, name, property(lambda self: False))
    monkeypatch.setattr(ipaddress.IPv6Address, "is_site_local", property(lambda self: False))
    assert not is_address_allowed(address)


def test_embedded_ipv4_addresses_are_found_in_every_embedding():
    def embedded(address):
        return [str(a) for a in embedded_ipv4(ipaddress.ip_address(address))]

    assert embedded("::ffff:10.0.0.1") == ["10.0.0.1"]
    assert embedded("64:ff9b::a9fe:a9fe") == ["169.254.169.254"]
    assert embedded("2002:a9fe:a9fe::1") == ["169.254.169.254"]
    assert embedded(TEREDO_TO_10_0_0_1) == ["65.54.227.120", "10.0.0.1"]
    assert embedded("::a00:1") == ["10.0.0.1"]
    # Local-use NAT64 (RFC 8215): the prefix length is the operator's, so every RFC 6052
    # reading counts; /48 skips bits 64 to 71.
    readings = ["10.0.0.1", "0.0.1.0", "0.1.0.0", "0.0.0.0"]  # noqa: S104
    assert embedded("64:ff9b:1:0a00:0:0100::") == readings
    assert embedded("::1") == embedded("::") == embedded("2606:4700:4700::1111") == []
    assert embedded("8.8.8.8") == []


@pytest.mark.parametrize(
    ("address", "prefix_length"),
    [
        ("2001:db8:c000:221::", 32),
        ("2001:db8:1c0:2:21::", 40),
        ("2001:db8:122:c000:2:2100::", 48),
        ("2001:db8:122:3c0:0:221::", 56),
        ("2001:db8:122:344:c0:2:2100:0", 64),
        ("2001:db8:122:344::192.0.2.33", 96),
    ],
)
def test_nat64_readings_match_the_examples_of_rfc_6052(address, prefix_length):
    # RFC 6052, section 2.4: 192.0.2.33 embedded behind prefixes of every length.
    reading = targets._rfc6052_ipv4(ipaddress.IPv6Address(address), prefix_length)
    assert str(reading) == "192.0.2.33"


@override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=["10.0.0.0/8"])
def test_allowing_an_ipv4_network_opens_its_translations_but_no_tunnel():
    assert is_address_allowed("10.0.0.1")
    assert is_address_allowed("::ffff:10.0.0.1")  # the same host
    assert is_address_allowed("64:ff9b::a00:1")  # the same host, through NAT64
    assert not is_address_allowed("2002:0a00:0001::1")  # 6to4 stays refused
    assert not is_address_allowed(TEREDO_TO_10_0_0_1)  # and Teredo
    assert not is_address_allowed("::a00:1")  # and IPv4-compatible
    assert not is_address_allowed("172.16.0.1")


@override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=["2002::/16", "2001::/32", "::/0"])
def test_allowing_an_ipv6_range_does_not_open_the_ipv4_addresses_it_embeds():
    assert is_address_allowed("2002:0808:0808::1")
    refused = {
        "2002:a9fe:a9fe::1": "embeds 169.254.169.254",
        "2002:0a00:0001::": "embeds 10.0.0.1",
        TEREDO_TO_10_0_0_1: "embeds 10.0.0.1",
        "::ffff:127.0.0.1": "embeds 127.0.0.1",
        "64:ff9b::7f00:1": "embeds 127.0.0.1",
        "64:ff9b:1::a00:1": "embeds 0.0.0.0",
    }
    for address, reason in refused.items():
        with pytest.raises(TargetNotAllowed, match=reason):
            check_address(address)


@override_settings(
    SCHEDULING_SCAN_DENY_NETWORKS=["10.0.0.0/8", "8.8.8.0/24"],
    SCHEDULING_SCAN_ALLOW_NETWORKS=["10.1.0.0/16"],
)
def test_allow_list_overrides_deny_list():
    assert is_address_allowed("10.1.2.3")
    assert not is_address_allowed("10.2.0.1")
    assert not is_address_allowed("8.8.8.8")  # public, but denied by the host
    assert not is_address_allowed("64:ff9b::808:808")  # the same host through NAT64
    assert is_address_allowed("1.1.1.1")
    assert not is_address_allowed("127.0.0.1")  # not public: a deny list never lets more in


@override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=["169.254.0.0/16"])
def test_only_the_global_allow_list_can_open_a_metadata_address():
    assert is_address_allowed("169.254.169.254")


def test_the_deny_list_is_empty_by_default():
    # Addresses that are not public are refused without it; it holds the host's extra ranges.
    from scheduling.conf import conf

    assert conf.SCAN_DENY_NETWORKS == []


# -- per-tenant allow lists --------------------------------------------------------------------


def tenant_with(networks):
    return SimpleNamespace(scan_allow_networks=networks)


@pytest.mark.usefixtures("no_allow_list")
def test_a_tenants_allow_list_opens_its_networks_for_that_tenant_only():
    acme = tenant_with("10.20.0.0/16\n# the lab\n192.168.7.0/24, fd00:7::/64\n")
    for address in ("10.20.1.1", "192.168.7.9", "fd00:7::1", "::ffff:10.20.1.1"):
        assert is_address_allowed(address, tenant=acme), address
        assert not is_address_allowed(address), address  # system schedules: global list only
        assert not is_address_allowed(address, tenant=tenant_with("")), address
    assert not is_address_allowed("10.21.0.1", tenant=acme)
    with pytest.raises(TargetNotAllowed, match="tenant's scan allow list"):
        check_address("10.21.0.1", tenant=acme)


@pytest.mark.usefixtures("no_allow_list")
def test_a_tenant_model_without_an_allow_list_gets_the_global_policy():
    assert not is_address_allowed("10.0.0.1", tenant=SimpleNamespace())
    assert is_address_allowed("8.8.8.8", tenant=SimpleNamespace())


@pytest.mark.usefixtures("no_allow_list")
def test_a_tenants_allow_list_cannot_open_a_metadata_address_or_the_deny_list():
    # Saved around the validation, which refuses such entries.
    acme = tenant_with("169.254.0.0/16\n168.63.129.0/24\n10.0.0.0/8")
    assert is_address_allowed("169.254.1.1", tenant=acme)
    for address in ("169.254.169.254", "168.63.129.16", "64:ff9b::a9fe:a9fe"):
        with pytest.raises(TargetNotAllowed, match="Only SCHEDULING_SCAN_ALLOW_NETWORKS"):
            check_address(address, tenant=acme)
    with override_settings(SCHEDULING_SCAN_DENY_NETWORKS=["10.9.0.0/16"]):
        assert is_address_allowed("10.8.0.1", tenant=acme)
        with pytest.raises(TargetNotAllowed, match="inside SCHEDULING_SCAN_DENY_NETWORKS"):
            check_address("10.9.0.1", tenant=acme)


@pytest.mark.usefixtures("no_allow_list")
def test_an_invalid_tenant_allow_list_refuses_with_a_message_naming_the_entry():
    acme = tenant_with("10.0.0.0/8, 10.1.2.3/33")
    with pytest.raises(TargetNotAllowed, match=r"allow list of tenant .* '10\.1\.2\.3/33'"):
        check_address("8.8.8.8", tenant=acme)


@pytest.mark.usefixtures("no_allow_list")
def test_policies_of_tenants_checked_at_once_on_threads_do_not_mix():
    # The thread executor runs several tenants' scans at once: no policy state is shared.
    lab, other = tenant_with("10.0.0.0/8"), tenant_with("")
    results: dict[str, list[bool]] = {"lab": [], "other": []}
    barrier = threading.Barrier(2)

    def check(name, tenant):
        barrier.wait()
        for _ in range(2000):
            results[name].append(is_address_allowed("10.1.1.1", tenant=tenant))

    threads = [
        threading.Thread(target=check, args=("lab", lab)),
        threading.Thread(target=check, args=("other", other)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert set(results["lab"]) == {True}
    assert set(results["other"]) == {False}


def test_allow_list_entries_are_parsed_from_lines_commas_and_comments():
    networks = parse_network_list("10.0.0.0/8,192.168.1.0/24\n\n  fd00::/8  # lab\n10.1.2.3")
    assert [str(n) for n in networks] == ["10.0.0.0/8", "192.168.1.0/24", "fd00::/8", "10.1.2.3/32"]
    assert parse_network_list("") == parse_network_list(None) == ()
    assert [str(n) for n in parse_network_list(["10.0.0.0/8"])] == ["10.0.0.0/8"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.0/8\nintranet", "'intranet' is not an IP network"),
        ("10.1.2.3/8", "'10.1.2.3/8' has host bits set; did you mean 10.0.0.0/8?"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP network"),
        ("169.254.0.0/16", "169.254.0.0/16 covers the cloud metadata address 169.254.169.254"),
        ("0.0.0.0/0", "0.0.0.0/0 covers the cloud metadata address"),
        ("fd00::/8", "fd00::/8 covers the cloud metadata address fd00:ec2::254"),
    ],
)
def test_invalid_allow_list_entries_are_refused_naming_the_entry(value, message):
    with pytest.raises(ValidationError) as info:
        validate_network_list(value)
    assert message in " ".join(info.value.messages)


def test_every_metadata_address_is_refused_by_a_tenants_validation():
    for address in METADATA_ADDRESSES:
        with pytest.raises(ValidationError, match="cloud metadata"):
            validate_network_list(str(address))


@pytest.mark.django_db
def test_tenant_validation_reports_every_bad_entry_on_the_field():
    tenant = make_tenant(scan_allow_networks="10.0.0.0/8\nlab\n169.254.169.254")
    with pytest.raises(ValidationError) as info:
        tenant.full_clean()
    errors = " ".join(info.value.message_dict["scan_allow_networks"])
    assert "'lab' is not an IP network" in errors
    assert "169.254.169.254 covers the cloud metadata address" in errors
    tenant.scan_allow_networks = "10.0.0.0/8\n192.168.0.0/16"
    tenant.full_clean()


@override_settings(SCHEDULING_SCAN_DENY_NETWORKS=["10.0.0.0/8", "not a network"])
def test_invalid_deny_list_fails_closed():
    with pytest.raises(ImproperlyConfigured, match="SCHEDULING_SCAN_DENY_NETWORKS"):
        is_address_allowed("8.8.8.8")


@pytest.mark.usefixtures("no_allow_list")
def test_resolved_name_is_refused_with_host_and_address_in_the_message():
    with pytest.raises(TargetNotAllowed) as info:
        resolve_and_check("localhost", 80)
    message = str(info.value)
    assert "localhost" in message
    assert "127.0.0.1" in message or "::1" in message


def test_unresolvable_name_raises_a_readable_resolution_error():
    with pytest.raises(ResolutionError, match=r"Cannot resolve nonexistent\.invalid"):
        resolve_and_check("nonexistent.invalid", 80)


@pytest.fixture
def fake_dns(monkeypatch):
    """Answer names under ``.test`` from a table; everything else goes to the real resolver."""
    real = socket.getaddrinfo
    answers: dict[str, list[list[str]]] = {}
    calls: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".test"):
            calls.append(host)
            addresses = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port or 0, 0, 0) if ":" in a else (a, port or 0),
                )
                for a in addresses
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, calls


def test_every_resolved_address_is_checked(fake_dns):
    answers, _calls = fake_dns
    answers["mixed.test"] = [["93.184.216.34", "169.254.169.254"]]
    with pytest.raises(TargetNotAllowed) as info:
        resolve_and_check("mixed.test", 80)
    assert "mixed.test resolves to 169.254.169.254" in str(info.value)


def test_connection_goes_to_the_checked_address_without_resolving_again(fake_dns):
    # DNS rebinding: the first answer passes the policy, any later one points at metadata.
    answers, calls = fake_dns
    answers["rebind.test"] = [["127.0.0.1"], ["169.254.169.254"]]
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        sock, address = open_connection("rebind.test", port, timeout=2)
        sock.close()
    assert address == "127.0.0.1"
    assert calls == ["rebind.test"]
