"""Addresses from `ip -o addr show` (every iproute2) and `ip -j addr show`
(iproute2 >= 4.14.1) must mean the same to every filter.

tests/corpus/oldtools/ holds one host state (see its README): `ip -j` and
`ip -o` as iproute2 6.1 printed them, and the `ip -o` lines iproute2 3.10
(CentOS 7.0-7.4) and 4.9/4.11 (Debian 9, CentOS 7.5+) print for it.
"""
import json
import os

import pytest

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_addresses import (AddressParseError, global_addresses, interface_map, ip_addresses, ipv4_interfaces,
                           usable)

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "corpus", "oldtools")


def corpus(name):
    with open(os.path.join(CORPUS, name)) as f:
        return f.read()


JSON = corpus("ip-j-addr-iproute2-6.1.json")
ONELINE = {v: corpus("ip-o-addr-iproute2-%s.txt" % v) for v in ("3.10", "4.9-4.11", "6.1")}
FILTERS = [ip_addresses, interface_map, global_addresses, ipv4_interfaces]


@pytest.mark.parametrize("version", sorted(ONELINE))
@pytest.mark.parametrize("f", FILTERS, ids=lambda f: f.__name__)
def test_oneline_of_every_release_equals_json(version, f):
    assert f(ONELINE[version]) == f(JSON)


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: f.__name__)
def test_json_text_parsed_json_and_normalised_form_are_equivalent(f):
    parsed = json.loads(JSON)
    assert f(JSON) == f(parsed) == f(ip_addresses(parsed))


def test_scope_global_reads_agree_with_the_full_read():
    """`ip -j addr show scope global` leaves {} for every filtered address."""
    g_json = corpus("ip-j-addr-scope-global-iproute2-6.1.json")
    g_text = corpus("ip-o-addr-scope-global-iproute2-6.1.txt")
    assert {} in json.loads(g_json)[0]["addr_info"]
    assert ip_addresses(g_json) == ip_addresses(g_text)
    assert global_addresses(g_json) == global_addresses(g_text) == global_addresses(JSON)


def test_what_the_captured_host_offers():
    assert global_addresses(JSON) == {
        "ipv4": ["172.30.0.2", "10.9.9.1", "172.30.0.9", "192.0.2.10", "198.51.100.4"],
        # not fd42:beef::7 (tentative), fd42:dad::5 (dadfailed), 2001:db8:42::dead
        # (deprecated), the temporary address, nor link-local ones
        "ipv6": ["2001:db8:42::2", "fd42::2", "fd42:1::10", "fd42:2::20"]}
    m = interface_map(ONELINE["3.10"])
    assert m["127.0.0.1"] == []
    assert m["172.30.0.2"] == m["172.30.0.9"] == m["10.9.9.1"] == ["2001:db8:42::2", "fd42::2"]
    assert m["192.0.2.10"] == ["fd42:1::10"]
    assert ipv4_interfaces(ONELINE["4.9-4.11"]) == ["eth0", "eth1", "eth2"]


def test_normalised_fields_of_the_oneline_form():
    eth0 = [l for l in ip_addresses(ONELINE["3.10"]) if l["ifname"] == "eth0"][0]
    by = {a["local"]: a for a in eth0["addr_info"]}
    assert eth0["ifindex"] == 2
    assert by["172.30.0.9"] == {"family": "inet", "local": "172.30.0.9", "prefixlen": 24, "scope": "global",
                                "label": "eth0:1", "broadcast": "172.30.0.255", "secondary": True}
    assert by["10.9.9.1"]["peer"] == "10.9.9.2" and by["10.9.9.1"]["prefixlen"] == 32
    assert by["fd42:dad::5"]["dadfailed"] and by["fd42:dad::5"]["tentative"]
    assert by["2001:db8:42:0:dfd:9846:25e7:d5b3"]["temporary"]
    assert by["2001:db8:42::dead"]["deprecated"] and by["2001:db8:42::dead"]["dynamic"]
    assert not any(k in a for a in eth0["addr_info"] for k in ("nodad", "mngtmpaddr", "noprefixroute"))


@pytest.mark.parametrize("flags,ok", [
    ({}, True), ({"dynamic": True}, True), ({"tentative": True}, False), ({"dadfailed": True}, False),
    ({"deprecated": True}, False), ({"temporary": True}, False), ({"optimistic": True, "tentative": True}, False)])
def test_usable(flags, ok):
    assert usable(dict({"family": "inet6", "local": "2001:db8::1"}, **flags)) is ok


def test_secondary_ipv4_is_usable():
    assert usable({"family": "inet", "local": "10.0.0.2", "secondary": True})


def test_flags_hex_of_old_iproute2_and_words_of_new():
    """3.10 has no name for optimistic (0x04): it prints `flags 04`; 6.3+
    print `proto kernel_ll` and `metric N`."""
    old = "2: eth0    inet6 2001:db8::5/64 scope global flags 04 \\       valid_lft forever preferred_lft forever\n"
    new = ("2: eth0    inet6 2001:db8::5/64 scope global optimistic proto kernel_ra metric 256 \\"
           "       valid_lft forever preferred_lft forever\n")
    assert ip_addresses(old) == ip_addresses(new)
    assert ip_addresses(old)[0]["addr_info"][0]["optimistic"] is True
    tmp = "2: eth0    inet6 2001:db8::6/64 scope global flags 01 \\       valid_lft forever preferred_lft forever\n"
    assert ip_addresses(tmp)[0]["addr_info"][0]["temporary"] is True


def test_names_with_at_and_link_lines_are_tolerated():
    """`ip -o addr` prints eth0, not eth0@if12 (checked on 6.1); a name with
    @ or a link line from another `ip -o` listing still reads."""
    text = ("12: eth0@if13: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP \\"
            "    link/ether 02:42:ac:11:00:02 brd ff:ff:ff:ff:ff:ff link-netnsid 0\n"
            "12: eth0@if13    inet 172.17.0.2/16 brd 172.17.255.255 scope global eth0\\"
            "       valid_lft forever preferred_lft forever\n")
    assert ip_addresses(text) == [{"ifindex": 12, "ifname": "eth0", "addr_info": [
        {"family": "inet", "local": "172.17.0.2", "prefixlen": 16, "scope": "global", "label": "eth0",
         "broadcast": "172.17.255.255"}]}]
    assert ipv4_interfaces(text) == ["eth0"]


def test_empty_and_garbage():
    assert ip_addresses("") == ip_addresses(None) == ip_addresses([]) == []
    with pytest.raises(AddressParseError) as e:
        ip_addresses("Option \"-j\" is unknown, try \"ip -help\".\n")
    assert "ip -o addr show" in str(e.value)
    with pytest.raises(AddressParseError) as e:
        ip_addresses('[{"ifindex": 1, "addr_info": [}]')
    assert "ip -o addr show" in str(e.value)
    with pytest.raises(AddressParseError):
        ip_addresses(42)


# Moved from test_dsr_binds.py with the functions.
def test_interface_map_from_ip_json():
    data = [
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "scope": "host"},
                                       {"family": "inet6", "local": "::1", "scope": "host"}]},
        {"ifname": "eth0", "addr_info": [
            {"family": "inet", "local": "172.30.0.2", "scope": "global"},
            {"family": "inet6", "local": "fd42::2", "scope": "global"},
            {"family": "inet6", "local": "2001:db8::99", "scope": "global", "temporary": True},
            {"family": "inet6", "local": "fe80::2", "scope": "link"}]},
    ]
    assert interface_map(data) == {"127.0.0.1": [], "172.30.0.2": ["fd42::2"]}


def test_global_addresses_skip_partial_entries():
    data = [{"ifname": "lo", "addr_info": [{}]},
            {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "172.30.20.2", "scope": "global"},
                                             {"family": "inet6", "local": "fd42::2", "scope": "global"},
                                             {"family": "inet6", "local": "fe80::1", "scope": "link"}]}]
    assert global_addresses(data) == {"ipv4": ["172.30.20.2"], "ipv6": ["fd42::2"]}


def test_ipv4_interfaces_skip_lo_and_ipv6_only():
    """Moved from test_dsr_sysctl.py with the function."""
    ip = [{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "scope": "host"}]},
          {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.0.0.2", "scope": "global"}]},
          {"ifname": "eth1", "addr_info": [{"family": "inet6", "local": "fd00::2", "scope": "global"}]}]
    assert ipv4_interfaces(ip) == ["eth0"]
