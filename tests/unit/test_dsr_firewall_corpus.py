"""The exposure check against the rule-set corpus (tests/corpus/firewall).

Each case holds the rules as a tool or an administrator loads them, what the
host's `iptables-save -t filter`, `ip6tables-save -t filter` and `nft -j list
ruleset` print for them (captured in a throwaway network namespace by
tests/corpus/firewall/capture.sh), and the expected verdict per port and family.
"""
import os

import pytest
import yaml

from dsr_firewall import exposure_problems, port_access

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "corpus", "firewall")
CASES = sorted(d for d in os.listdir(CORPUS) if os.path.isdir(os.path.join(CORPUS, d)))


def load(case):
    def read(name):
        path = os.path.join(CORPUS, case, name)
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return f.read()
    with open(os.path.join(CORPUS, case, "expected.yml")) as f:
        expected = yaml.safe_load(f)
    return read("iptables-save.txt"), read("ip6tables-save.txt"), read("nft.json"), expected


def test_the_corpus_has_at_least_30_captured_rule_sets():
    assert len(CASES) >= 30
    for case in CASES:
        for name in ("iptables-save.txt", "ip6tables-save.txt", "nft.json", "expected.yml"):
            assert os.path.exists(os.path.join(CORPUS, case, name)), (case, name)


def test_the_corpus_covers_the_tools_the_fleet_meets():
    names = " ".join(CASES)
    for tool in ("ufw", "firewalld", "docker", "fail2ban", "centos7", "debian", "kubernetes", "nftables-wiki",
                 "ipset", "vmap"):
        assert tool in names, tool


@pytest.mark.parametrize("case", CASES)
def test_verdict_per_port_and_family(case):
    ipt4, ipt6, nft, expected = load(case)
    got = {}
    for port, want in expected["ports"].items():
        got[port] = {"ipv4": port_access(port, 4, ipt4, nft)["allow"],
                     "ipv6": port_access(port, 6, ipt6, nft)["allow"]}
    assert got == expected["ports"]


@pytest.mark.parametrize("case", CASES)
def test_widening_is_reported_for_exactly_the_expected_ports(case):
    ipt4, ipt6, nft, expected = load(case)
    problems = exposure_problems(sorted(expected["ports"]), ipt4, ipt6, nft, ctx={"host": case})
    reported = sorted(int(p.split("port ")[1].split()[0]) for p in problems)
    assert reported == sorted(expected["widening"])
    for p in problems:
        assert p.startswith("host %s: port " % case) and "dsr_exposure_accept: [" in p


@pytest.mark.parametrize("case", [c for c in CASES if os.path.exists(os.path.join(CORPUS, c, "rules.v4"))
                                  and not os.path.exists(os.path.join(CORPUS, c, "legacy"))])
def test_iptables_nft_rules_are_read_once(case):
    """iptables-nft's tables show in nft's JSON too; adding that view changes nothing."""
    ipt4, ipt6, nft, expected = load(case)
    assert '"family": "ip", "name": "filter"' in nft
    for port in expected["ports"]:
        assert port_access(port, 4, ipt4, nft)["allow"] == port_access(port, 4, ipt4, "")["allow"] \
            if "ruleset.nft" not in os.listdir(os.path.join(CORPUS, case)) else True
