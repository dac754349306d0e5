"""Exposure rules read from real iptables-save and `nft -j list ruleset` output (Debian 12)."""
import pytest
from conftest import data

from dsr_firewall import exposure_problems, port_verdict

IPT = data("iptables-save-debian12.txt")            # filter INPUT with a LAN-only 8000
NFT_INET = data("nft-inet-debian12.json")           # native inet table, policy drop
NFT_OF_IPT = data("nft-of-iptables-debian12.json")  # iptables-nft's own view of its rules


@pytest.mark.parametrize("port,verdict", [(8000, "restricted"), (80, "open"), (443, "open"),
                                          (9050, "closed"), (22, "open"), (5000, "open")])
def test_iptables_ipv4_verdicts(port, verdict):
    assert port_verdict(port, 4, IPT)[0] == verdict


def test_the_deciding_rule_is_named():
    v, why = port_verdict(9050, 4, IPT)
    assert v == "closed" and "--dport 9000:9100 -j REJECT" in why
    v, why = port_verdict(8000, 4, IPT)
    assert "-s 172.30.30.0/24" in why


def test_no_rules_is_open():
    assert port_verdict(8000, 6, "", "") == ("open", "no INPUT rules")


@pytest.mark.parametrize("port,family,verdict", [
    (22, 4, "open"), (22, 6, "open"),
    (8000, 4, "closed"),       # only 10/8 may (ip saddr), the rest hits policy drop...
    (8000, 6, "open"),         # ...but IPv6 accepts from anyone (nfproto ipv6 rule)
    (80, 6, "open"), (443, 4, "open"),
    (5000, 4, "closed"), (5000, 6, "closed"),
])
def test_native_nftables_inet_table(port, family, verdict):
    v, _ = port_verdict(port, family, "", NFT_INET)
    # "closed" for 8000/IPv4 is "restricted": a LAN rule accepts some sources
    if (port, family) == (8000, 4):
        assert v == "restricted"
    else:
        assert v == verdict


def test_iptables_nft_rules_are_not_counted_twice():
    """iptables-nft's tables show in nft's JSON too; the iptables-save view is used for them."""
    assert port_verdict(8000, 4, IPT, NFT_OF_IPT)[0] == "restricted"
    assert port_verdict(80, 4, IPT, NFT_OF_IPT)[0] == "open"


def test_exposure_problem_names_host_port_rule_and_variable():
    p = exposure_problems([80, 8000], IPT, "", "", ctx={"host": "app1"})
    assert len(p) == 1
    assert p[0].startswith("host app1: port 8000 would answer on IPv6 to anyone")
    assert "-s 172.30.30.0/24" in p[0] and "dsr_exposure_accept: [8000]" in p[0]


def test_matching_ipv6_rules_pass():
    ip6 = IPT.replace("172.30.30.0/24", "fd42:d5a:30::/64").replace("icmp-port-unreachable", "icmp6-port-unreachable")
    assert exposure_problems([80, 8000, 9050], IPT, ip6, "") == []


def test_ipv6_closed_where_ipv4_open_is_fine():
    ip6 = "*filter\n:INPUT DROP [0:0]\nCOMMIT\n"
    assert exposure_problems([80], "", ip6, "") == []


def test_native_nft_widening_is_caught_and_can_be_accepted():
    assert "port 8000" in exposure_problems([8000, 80], "", "", NFT_INET, ctx={"host": "h"})[0]
    assert exposure_problems([8000], "", "", NFT_INET, accept=[8000]) == []
    assert exposure_problems([8000], "", "", NFT_INET, accept=True) == []


def test_loopback_and_established_rules_do_not_open_a_port():
    ipt = ("*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n"
           "-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n")
    assert port_verdict(8000, 4, ipt)[0] == "closed"


def test_exposed_ports_come_from_the_plans_and_name_the_service():
    from dsr_firewall import ipv6_exposed_ports
    plans = [{"service": {"unit": "webapp.service"},
              "plan": {"listeners": [{"address": "0.0.0.0", "port": 8000}, {"address": "::", "port": 8000},
                                     {"address": "::1", "port": 8001}, {"address": "127.0.0.1", "port": 8001}]}}]
    nginx = {"listens": [{"address": "::", "port": 80}]}
    ports = ipv6_exposed_ports(plans, nginx)
    assert ports == {8000: "webapp.service", 80: "nginx.service"}
    p = exposure_problems(ports, IPT, "", "", ctx={"host": "app1"})
    assert len(p) == 1 and "port 8000 (webapp.service)" in p[0]
