import pytest

from dsr_lb import AnsibleFilterError, drain_change, enable_changes, upstream_address, upstream_edit, upstream_servers

UP = """# app servers
upstream app {
    server 172.30.30.11:80;
    server 172.30.30.12:80 max_fails=3 fail_timeout=5s;  # second
    server 172.30.30.13:80;
    keepalive 16;
}
"""


def test_drain_adds_down_and_keeps_everything_else():
    new = upstream_edit(UP, {"172.30.30.12": {"down": True}})
    assert "    server 172.30.30.12:80 max_fails=3 fail_timeout=5s down;  # second\n" in new
    assert new.replace(" down;", ";") == UP


def test_enable_removes_down():
    drained = upstream_edit(UP, {"172.30.30.11": {"down": True}})
    assert upstream_edit(drained, {"172.30.30.11": {"down": False}}) == UP


def test_move_to_ipv6_and_back():
    v6 = upstream_edit(UP, {"172.30.30.13": {"down": False, "address": "fd42::13"}})
    assert "    server [fd42::13]:80;\n" in v6
    back = upstream_edit(v6, {"172.30.30.13": {"down": False, "address": "172.30.30.13", "ipv6": "fd42::13"}})
    assert back == UP


def test_unknown_host_is_an_error_naming_the_variable():
    with pytest.raises(AnsibleFilterError) as e:
        upstream_edit(UP, {"172.30.30.99": {"down": True}}, {"host": "app9"})
    assert "app9" in str(e.value) and "dsr_lb_upstream_file" in str(e.value)


def test_servers_listing():
    s = upstream_servers(upstream_edit(UP, {"172.30.30.11": {"down": True, "address": "fd42::11"}}))
    assert s[0] == {"address": "fd42::11", "port": "80", "down": True, "params": []}
    assert s[1]["params"] == ["max_fails=3", "fail_timeout=5s"]


def test_enable_puts_verified_hosts_on_ipv6_and_others_on_ipv4():
    hv = {"a": {"dsr_lb_address": "172.30.30.11", "dsr_lb_address6": "fd42::11", "dsr_dualstack_ok": True},
          "b": {"dsr_lb_address": "172.30.30.12", "dsr_lb_address6": "fd42::12", "dsr_dualstack_ok": False},
          "c": {"dsr_lb_address": "172.30.30.13", "dsr_lb_address6": "", "dsr_dualstack_ok": True}}
    drained = upstream_edit(UP, {"172.30.30.11": drain_change("fd42::11"), "172.30.30.12": drain_change("fd42::12"),
                                 "172.30.30.13": drain_change()})
    assert drained.count(" down;") == 3
    new = upstream_edit(drained, enable_changes(["a", "b", "c"], hv))
    assert "server [fd42::11]:80;" in new
    assert "server 172.30.30.12:80 max_fails=3 fail_timeout=5s;" in new
    assert "server 172.30.30.13:80;" in new
    assert enable_changes(["a"], hv, ipv6_upstreams=False)["172.30.30.11"]["address"] == "172.30.30.11"
    # a moved host is found by its IPv6 address when drained again
    assert "server [fd42::11]:80 down;" in upstream_edit(new, {"172.30.30.11": drain_change("fd42::11")})


@pytest.mark.parametrize("trust,address", [
    (None, "fd42::11"),
    ({"ipv6_upstream_ok": True}, "fd42::11"),
    # a rule that trusts the balancer by IPv4 and has no safe IPv6 twin
    ({"ipv6_upstream_ok": False, "problems": ["x"]}, "172.30.30.11"),
    ({"ipv6_upstream_ok": "False"}, "172.30.30.11"),
])
def test_a_host_whose_trust_rules_have_no_twin_stays_on_ipv4(trust, address):
    hv = {"a": {"dsr_lb_address": "172.30.30.11", "dsr_lb_address6": "fd42::11", "dsr_dualstack_ok": True}}
    if trust is not None:
        hv["a"]["dsr_trust"] = trust
    assert upstream_address("a", hv) == address
    assert enable_changes(["a"], hv)["172.30.30.11"]["address"] == address
    assert upstream_address("a", hv, ipv6_upstreams=False) == "172.30.30.11"


def test_drained_hosts_are_found_by_either_address():
    from dsr_lb import drained_hosts
    text = """upstream app {
    server 10.0.0.1:80 down;
    server [fd00::2]:80 max_fails=3 down;
    server 10.0.0.3:80;
}
"""
    hv = {"a1": {"dsr_lb_address": "10.0.0.1"}, "a2": {"dsr_lb_address": "10.0.0.2", "dsr_lb_address6": "fd00:0::2"},
          "a3": {"dsr_lb_address": "10.0.0.3"}}
    assert drained_hosts(text, ["a3", "a2", "a1"], hv) == ["a2", "a1"]
