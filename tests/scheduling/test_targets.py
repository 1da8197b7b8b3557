"""The scan target policy: deny list, allow list, every resolved address, no re-resolution."""

from __future__ import annotations

import socket

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from scheduling.exceptions import TargetNotAllowed
from scheduling.targets import (
    ResolutionError,
    check_address,
    is_address_allowed,
    open_connection,
    resolve_and_check,
)


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


@pytest.mark.usefixtures("no_allow_list")
def test_public_and_private_addresses_pass_the_default_policy():
    assert check_address("93.184.216.34").compressed == "93.184.216.34"
    assert is_address_allowed("10.1.2.3")
    assert is_address_allowed("2001:db8::1")


def test_demo_settings_allow_loopback_explicitly():
    assert is_address_allowed("127.0.0.1")
    assert is_address_allowed("::1")
    assert not is_address_allowed("169.254.169.254")


@override_settings(
    SCHEDULING_SCAN_DENY_NETWORKS=["10.0.0.0/8"], SCHEDULING_SCAN_ALLOW_NETWORKS=["10.1.0.0/16"]
)
def test_allow_list_overrides_deny_list():
    assert is_address_allowed("10.1.2.3")
    assert not is_address_allowed("10.2.0.1")
    assert is_address_allowed("127.0.0.1")  # no longer denied: the deny list was replaced


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
