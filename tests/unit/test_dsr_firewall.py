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


# Who may connect, per family ------------------------------------------------------

from dsr_firewall import port_access, private_bind_widening, wider  # noqa: E402


def ipt(*rules, policy="ACCEPT", chains=()):
    head = ["*filter", ":INPUT %s [0:0]" % policy, ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    head += [":%s - [0:0]" % c for c in chains]
    return "\n".join(head + list(rules) + ["COMMIT", ""])


def nft(*items):
    """`nft -j list ruleset` of one inet table `t` with the given chains, sets and rules."""
    out = [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
           {"table": {"family": "inet", "name": "t", "handle": 1}}]
    for n, it in enumerate(items, 2):
        kind, body = next(iter(it.items()))
        body = dict({"family": "inet", "table": "t", "handle": n}, **body)
        out.append({kind: body})
    import json
    return json.dumps({"nftables": out})


def base(name="input", policy="accept", hook="input", prio=0):
    return {"chain": {"name": name, "type": "filter", "hook": hook, "prio": prio, "policy": policy}}


def rule(*expr, chain="input"):
    return {"rule": {"chain": chain, "expr": list(expr)}}


def match(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
SADDR4 = {"payload": {"protocol": "ip", "field": "saddr"}}
SADDR6 = {"payload": {"protocol": "ip6", "field": "saddr"}}
ALLOW4 = ipt("-A INPUT -s 10.1.0.2/32 -p tcp -m tcp --dport 8000 -j ACCEPT",
             "-A INPUT -p tcp -m tcp --dport 8000 -j DROP")


@pytest.mark.parametrize("v4,v6,widens", [
    ("none", "none", False), ("none", "some", True), ("none", "all", True),
    ("some", "none", False), ("some", "some", False), ("some", "all", True),
    ("all", "none", False), ("all", "some", False), ("all", "all", False)])
def test_ipv6_may_be_at_most_as_open_as_ipv4(v4, v6, widens):
    assert wider(v4, v6) is widens


def test_an_ipv6_blocklist_is_wider_than_an_ipv4_allow_list():
    block6 = ipt("-A INPUT -s 2001:db8:bad::/48 -j DROP", "-A INPUT -p tcp --dport 8000 -j ACCEPT", policy="DROP")
    a6 = port_access(8000, 6, block6)
    assert a6["allow"] == "all" and a6["except"] == ["2001:db8:bad::/48"]
    a4 = port_access(8000, 4, ALLOW4)
    assert a4["allow"] == "some" and a4["sources"] == ["10.1.0.2/32"]
    p = exposure_problems([8000], ALLOW4, block6, "", ctx={"host": "h"})
    assert len(p) == 1 and "to anyone" in p[0] and "except 2001:db8:bad::/48" in p[0] and "-s 10.1.0.2/32" in p[0]


@pytest.mark.parametrize("drop", [
    "-A INPUT -p tcp --dport 8000 -m limit --limit 10/sec -j DROP",
    "-A INPUT -p tcp --dport 8000 -m hashlimit --hashlimit-above 10/sec --hashlimit-mode srcip "
    "--hashlimit-name x -j DROP",
    "-A INPUT -p tcp --dport 8000 -m connlimit --connlimit-above 20 --connlimit-mask 128 -j REJECT",
    "-A INPUT -p tcp --dport 8000 -m recent --update --seconds 60 --hitcount 4 --name ssh --rsource -j DROP",
    "-A INPUT -f -j DROP",
    "-A INPUT -p tcp --tcp-flags ALL NONE -j DROP",
    "-A INPUT -p tcp --tcp-flags SYN,FIN SYN,FIN -j DROP",
    "-A INPUT -p tcp ! --syn -m state --state NEW -j DROP",
    "-A INPUT -m conntrack --ctstate INVALID -j DROP",
    "-A INPUT -p udp --dport 8000 -j DROP",
    "-A INPUT -i lo -p tcp --dport 8000 -j DROP",
])
def test_rules_that_are_not_closures(drop):
    assert port_access(8000, 6, ipt(drop))["allow"] == "all"


@pytest.mark.parametrize("drop", [
    "-A INPUT -p tcp --dport 8000 -j DROP",
    "-A INPUT -p tcp --dport 8000 --syn -j DROP",  # every new connection starts with this SYN
    "-A INPUT -p tcp --dport 8000 -m conntrack --ctstate NEW -j REJECT --reject-with tcp-reset",
    "-A INPUT -p tcp -m multiport --dports 7000:9000 -j DROP",
    "-A INPUT ! -f -p tcp --dport 8000 -j DROP",
])
def test_rules_that_close_a_port(drop):
    assert port_access(8000, 6, ipt(drop))["allow"] == "none"


def test_a_rate_limited_syn_chain_that_returns_is_not_a_closure():
    t = ipt("-A INPUT -p tcp --syn -j syn_flood", "-A syn_flood -m limit --limit 1/s --limit-burst 3 -j RETURN",
            "-A syn_flood -j DROP", chains=["syn_flood"])
    assert port_access(8000, 4, t)["allow"] == "all"


def test_established_and_loopback_accepts_do_not_open_a_port():
    t = ipt("-A INPUT -i lo -j ACCEPT", "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A INPUT -m conntrack --ctstatus DNAT -j ACCEPT", policy="DROP")
    assert port_access(8000, 4, t)["allow"] == "none"


def test_a_rate_limited_accept_opens_to_everyone():
    t = ipt("-A INPUT -p tcp --dport 8000 -m limit --limit 5/s -j ACCEPT", policy="DROP")
    assert port_access(8000, 4, t)["allow"] == "all"


def test_loopback_sources_are_nobody_from_outside():
    t = ipt("-A INPUT -s 127.0.0.1 -p tcp --dport 8000 -j ACCEPT", policy="DROP")
    assert port_access(8000, 4, t)["allow"] == "none"


@pytest.mark.parametrize("text,kind", [
    ("-A INPUT -i eth1 -p tcp --dport 8000 -j ACCEPT", "some"),
    ("-A INPUT -m set --match-set office src -p tcp --dport 8000 -j ACCEPT", "some"),
    ("-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 -p tcp --dport 8000 -j ACCEPT", "some"),
    ("-A INPUT ! -s 10.0.0.0/8 -p tcp --dport 8000 -j ACCEPT", "all"),
    ("-A INPUT -s 0.0.0.0/1,128.0.0.0/1 -p tcp --dport 8000 -j ACCEPT", "all"),
    ("-A INPUT -p tcp --sport 1024:65535 --dport 8000 -j ACCEPT", "all"),
])
def test_accepts_by_what_they_match(text, kind):
    assert port_access(8000, 4, ipt(text, policy="DROP"))["allow"] == kind


def test_negated_source_drop_leaves_an_allow_list():
    t = ipt("-A INPUT ! -s 10.0.0.0/8 -p tcp --dport 8000 -j DROP")
    a = port_access(8000, 4, t)
    assert a["allow"] == "some" and a["sources"] == ["10.0.0.0/8"]


def test_goto_returns_to_the_caller_of_the_chain_that_jumped():
    t = ipt("-A INPUT -j zones", "-A INPUT -p tcp --dport 8000 -j DROP",
            "-A zones -s 10.0.0.0/8 -g lan", "-A zones -j RETURN", "-A lan -p tcp --dport 22 -j ACCEPT",
            chains=["zones", "lan"])
    # 10/8 returns from lan straight past INPUT's position in zones, and is then dropped on 8000
    assert port_access(8000, 4, t)["allow"] == "none"
    assert port_access(22, 4, t)["allow"] == "all"


def test_nft_port_vmap_and_named_port_set():
    n = nft({"set": {"name": "allowed", "type": "inet_service", "elem": [22, {"range": [9000, 9100]}]}},
            base(policy="drop"),
            {"chain": {"name": "web"}},
            rule({"accept": None}, chain="web"),
            rule({"vmap": {"key": DPORT,
                           "data": {"set": [[80, {"jump": {"target": "web"}}], [8000, {"drop": None}]]}}}),
            rule(match(DPORT, "@allowed"), {"accept": None}))
    got = {p: port_access(p, 6, "", n)["allow"] for p in (22, 80, 8000, 9050, 5000)}
    assert got == {22: "all", 80: "all", 8000: "none", 9050: "all", 5000: "none"}


def test_nft_saddr_named_set_and_inet_families():
    n = nft({"set": {"name": "trusted", "type": "ipv4_addr", "flags": ["interval"],
                     "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}]}},
            {"set": {"name": "empty6", "type": "ipv6_addr"}},
            base(policy="drop"),
            rule(match(SADDR4, "@trusted"), match(DPORT, 8000), {"accept": None}),
            rule(match(SADDR6, "@empty6"), {"accept": None}))
    a4, a6 = port_access(8000, 4, "", n), port_access(8000, 6, "", n)
    assert (a4["allow"], a4["sources"], a6["allow"]) == ("some", ["10.0.0.0/8"], "none")


def test_nft_limit_over_drop_and_flag_rules_are_not_closures():
    flags = {"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["fin", "syn", "rst", "ack"]]}
    n = nft(base(policy="accept"),
            rule(match(DPORT, 8000), {"limit": {"rate": 10, "per": "second", "inv": True}}, {"drop": None}),
            rule(match(flags, "syn", "!="), match({"ct": {"key": "state"}}, "new"), {"drop": None}),
            rule(match(flags, ["fin", "syn"]), {"drop": None}))
    assert port_access(8000, 6, "", n)["allow"] == "all"
    n = nft(base(policy="accept"), rule(match(flags, "syn"), match(DPORT, 8000), {"drop": None}))
    assert port_access(8000, 6, "", n)["allow"] == "none"


def test_every_base_chain_must_accept_prerouting_included():
    n = nft(base("pre", hook="prerouting", prio=-150),
            rule(match(SADDR4, {"prefix": {"addr": "10.0.0.0", "len": 8}}, "!="), match(DPORT, 8000), {"drop": None},
                 chain="pre"),
            base("input", policy="drop"), rule(match(DPORT, 8000), {"accept": None}))
    assert port_access(8000, 4, "", n)["allow"] == "some"
    assert port_access(8000, 6, "", n)["allow"] == "all"


def test_a_native_nft_filter_table_is_not_mistaken_for_iptables_nft():
    import json
    n = json.loads(nft(base(policy="drop"), rule(match(DPORT, 22), {"accept": None})))
    for item in n["nftables"][1:]:
        body = next(iter(item.values()))
        body["family"], body["table"] = "ip", "filter"
    save = ("# Table `filter' contains incompatible base-chains, use 'nft' tool to list them.\n"
            "# Generated by iptables-nft-save v1.8.9 (nf_tables) on Wed Nov 25 18:14:30 2026\n" + ipt())
    assert port_access(8000, 4, save, json.dumps(n))["allow"] == "none"
    legacy = "# Generated by iptables-save v1.8.9 on Wed Nov 25 18:14:30 2026\n" + ipt()
    assert port_access(8000, 4, legacy, json.dumps(n))["allow"] == "none"


# A private IPv4 bind gaining a global IPv6 address ---------------------------------

def gplan(binds_before, listeners, unit="webapp.service"):
    return {"service": {"unit": unit}, "plan": {"binds_before": binds_before, "listeners": [
        {"address": a, "port": p, "family": 6 if ":" in a else 4} for a, p in listeners]}}


PRIV = gplan(["10.0.0.5:8000"], [("10.0.0.5", 8000), ("2001:db8:1::5", 8000), ("fd00::5", 8000)])


def test_private_bind_gaining_a_global_address_is_reported():
    p = private_bind_widening([PRIV], {}, [], {"host": "app1"})
    assert len(p) == 1
    assert p[0].startswith("host app1: webapp.service would listen on [2001:db8:1::5]:8000, a global IPv6 address")
    assert "10.0.0.5:8000 is a private IPv4 address" in p[0] and "dsr_exposure_accept: [8000]" in p[0]


@pytest.mark.parametrize("v4,v6,reported", [
    ("10.0.0.5", "fd00::5", False),           # ULA
    ("10.0.0.5", "fe80::5", False),           # link-local
    ("192.168.1.5", "2a01:4f8::5", True),
    ("172.31.255.1", "2a01:4f8::5", True),
    ("172.32.0.1", "2a01:4f8::5", False),     # outside 172.16/12: public
    ("203.0.113.5", "2001:db8:2::5", False),  # a public IPv4 bind gaining a global address is no wider
    ("100.64.0.7", "2a01:4f8::5", True),      # shared address space (RFC 6598)
])
def test_which_binds_widen(v4, v6, reported):
    plan = gplan(["%s:8000" % v4], [(v4, 8000), (v6, 8000)])
    assert bool(private_bind_widening([plan], {}, [], {"host": "h"})) is reported


def test_private_bind_widening_can_be_accepted_per_port():
    assert private_bind_widening([PRIV], {}, [8000], {"host": "h"}) == []
    assert private_bind_widening([PRIV], {}, True, {"host": "h"}) == []
    assert private_bind_widening([PRIV], {}, [9000], {"host": "h"}) != []


def test_ipv6_binds_a_service_already_had_are_not_new():
    plan = gplan(["10.0.0.5:8000", "[2001:db8:1::5]:8000"], [("10.0.0.5", 8000), ("2001:db8:1::5", 8000)])
    assert private_bind_widening([plan], {}, [], {}) == []


def test_wildcard_and_loopback_binds_are_left_to_the_firewall_comparison():
    plan = gplan(["0.0.0.0:8000", "127.0.0.1:8001"], [("0.0.0.0", 8000), ("::", 8000), ("127.0.0.1", 8001),
                                                       ("::1", 8001)])
    assert private_bind_widening([plan], {"listens": [{"address": "::", "port": 80}]}, [], {}) == []


def test_the_real_bind_plan_is_read():
    from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import bind_plan
    plan = bind_plan(["10.0.0.5:8000"], 1, "19.9.0", interfaces={"10.0.0.5": ["2001:db8:1::5", "fd00::5"]})
    p = private_bind_widening([{"service": {"unit": "webapp.service"}, "plan": plan}], {}, [], {"host": "h"})
    assert len(p) == 1 and "[2001:db8:1::5]:8000" in p[0] and "fd00::5" not in p[0]


def test_nginx_listens_name_their_origin_or_are_found_through_the_interfaces():
    with_from = {"listens": [{"address": "2001:db8:1::5", "port": 443, "from": "10.0.0.5"}]}
    assert "nginx.service would listen on [2001:db8:1::5]:443" in private_bind_widening([], with_from, [], {})[0]
    bare = {"listens": [{"address": "2001:db8:1::5", "port": 443}]}
    assert private_bind_widening([], bare, [], {"interfaces": {"203.0.113.5": ["2001:db8:1::5"]}}) == []
    assert private_bind_widening([], bare, [], {"interfaces": {"10.0.0.5": ["2001:db8:1::5/64"]}}) != []
    # nothing says where it comes from: reported, the safe side
    assert "does not say which IPv4 listen" in private_bind_widening([], bare, [], {})[0]


def test_thousands_of_fail2ban_bans_stay_fast_and_stay_a_blocklist():
    import time
    bans = ["-A f2b-sshd -s 198.51.%d.%d/32 -j REJECT --reject-with icmp-port-unreachable" % (i // 256, i % 256)
            for i in range(5000)]
    t = ipt("-A INPUT -p tcp -m multiport --dports 22,8000 -j f2b-sshd", *bans + ["-A f2b-sshd -j RETURN"],
            chains=["f2b-sshd"])
    start = time.time()
    a = port_access(8000, 4, t)
    assert a["allow"] == "all" and len(a["except"]) == 5000 and "4999 more rules like it" not in a["why"]
    assert time.time() - start < 5


def test_a_rule_set_that_cannot_be_read_stops_the_host():
    p = exposure_problems([8000], "", "", "{not json", ctx={"host": "h"})
    assert len(p) == 1 and "could not be read" in p[0] and "dsr_exposure_accept: [8000]" in p[0]


@pytest.mark.parametrize("right,op,mask,closes", [
    ("syn", "in", None, True),                             # tcp flags syn
    ("syn", "==", None, True),                             # tcp flags == syn
    ("syn", "!=", None, False),
    ("syn", "==", ["fin", "syn", "rst", "ack"], True),     # tcp flags & (fin|syn|rst|ack) == syn
    ("syn", "!=", ["fin", "syn", "rst", "ack"], False),
    (["fin", "syn"], "==", ["fin", "syn"], False),         # tcp flags & (fin|syn) == fin|syn
    (["syn", "ack"], "==", ["syn", "ack"], False),
    ({"set": [{"|": ["syn", "ack"]}, "syn"]}, "==", None, True),  # tcp flags { syn, syn|ack }
    ({"set": [{"|": ["syn", "ack"]}]}, "==", None, False),
    (["fin", "syn", "rst", "psh", "ack", "urg"], "!", None, False),  # iptables-nft's --tcp-flags ALL NONE
])
def test_nft_tcp_flag_matches_as_nft_prints_them(right, op, mask, closes):
    left = {"payload": {"protocol": "tcp", "field": "flags"}}
    if mask is not None:
        left = {"&": [left, mask]}
    n = nft(base(policy="accept"), rule(match(DPORT, 8000), match(left, right, op), {"drop": None}))
    assert (port_access(8000, 4, "", n)["allow"] == "none") is closes


def test_a_closed_port_names_the_rule_that_closed_it_not_a_ban_on_the_way():
    t = ipt("-A INPUT -s 192.0.2.7 -j DROP", "-A INPUT -p tcp --dport 8000 -j REJECT")
    assert port_verdict(8000, 4, t) == ("closed", "-A INPUT -p tcp --dport 8000 -j REJECT")


def test_a_drop_on_one_interface_does_not_close_the_same_sources_elsewhere():
    t = ipt("-A INPUT -i eth1 -s 10.0.0.0/8 -j DROP", "-A INPUT -s 10.0.0.0/8 -p tcp --dport 8000 -j ACCEPT",
            policy="DROP")
    a = port_access(8000, 4, t)
    assert a["allow"] == "some" and a["sources"] == ["10.0.0.0/8"]
    # and a narrower exact network inside an interface-bound one stays in the allow-list
    t = ipt("-A INPUT -i eth1 -s 10.0.0.0/8 -j DROP", "-A INPUT -s 10.1.0.0/16 -p tcp --dport 8000 -j ACCEPT",
            policy="DROP")
    assert port_access(8000, 4, t)["sources"] == ["10.1.0.0/16"]


def test_nginx_listens_the_configuration_already_had_are_not_new():
    # nginx_dualstack's plan lists every IPv6 counterpart and, per file, the lines it adds
    f = "/etc/nginx/sites-enabled/app"
    plan = {"listens": [{"file": f, "address": "2001:db8:1::5", "port": 443, "v6only": None},
                        {"file": f, "address": "2001:db8:1::5", "port": 80, "v6only": None}],
            "files": {f: {"added": ["listen [2001:db8:1::5]:80;"], "changed": True}}}
    p = private_bind_widening([], plan, [], {"host": "h", "interfaces": {"10.0.0.5": ["2001:db8:1::5"]}})
    assert len(p) == 1 and "[2001:db8:1::5]:80" in p[0]
