import pytest

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import BindError, bind_plan, parse_bind

CTX = {"host": "app1", "service": "webapp.service"}


def plan(binds, **kw):
    kw.setdefault("ctx", CTX)
    return bind_plan(binds, **kw)


# The bind rules as implemented: (binds, bindv6only, strategy, version) -> binds, reuse_port
RULES = [
    (["0.0.0.0:8000"], 0, "separate", "20.1.0", ["0.0.0.0:8000", "[::]:8000"], True),
    (["0.0.0.0:8000"], 1, "separate", "20.1.0", ["0.0.0.0:8000", "[::]:8000"], None),
    (["0.0.0.0:8000"], 0, "dual", "20.1.0", ["[::]:8000"], None),
    (["0.0.0.0:8000"], 1, "dual", "20.1.0", ["0.0.0.0:8000", "[::]:8000"], None),
    (["127.0.0.1:8000"], 0, "separate", "19.9.0", ["127.0.0.1:8000", "[::1]:8000"], None),
    (["127.0.0.1:8000"], 1, "dual", "19.9.0", ["127.0.0.1:8000", "[::1]:8000"], None),
    (["unix:/run/app.sock"], 0, "separate", "19.9.0", ["unix:/run/app.sock"], None),
    (["[::]:8000"], 0, "separate", "19.9.0", ["[::]:8000"], None),
    (["0.0.0.0:8000", "[::]:8000"], 1, "separate", "19.9.0", ["0.0.0.0:8000", "[::]:8000"], None),
    ([":8000"], 0, "separate", "19.9.0", ["0.0.0.0:8000", "[::]:8000"], True),
    (["tcp://127.0.0.1:9000"], 0, "separate", "19.9.0", ["127.0.0.1:9000", "[::1]:9000"], None),
    ([], 0, "separate", "19.9.0", ["127.0.0.1:8000", "[::1]:8000"], None),
]


@pytest.mark.parametrize("binds,v6only,strategy,version,expected,reuse", RULES)
def test_bind_rules(binds, v6only, strategy, version, expected, reuse):
    p = plan(binds, bindv6only=v6only, strategy=strategy, gunicorn_version=version)
    assert p["binds"] == expected
    assert p["reuse_port"] is reuse


def test_never_two_wildcards_without_bindv6only_or_reuse_port():
    for v6only in (0, 1):
        for strategy in ("separate", "dual"):
            p = plan(["0.0.0.0:80"], bindv6only=v6only, strategy=strategy, gunicorn_version="19.9.0")
            if "0.0.0.0:80" in p["binds"] and "[::]:80" in p["binds"]:
                assert v6only == 1 or p["reuse_port"] is True


def test_old_gunicorn_without_reuse_port_fails_with_advice():
    with pytest.raises(BindError) as e:
        plan(["0.0.0.0:8000"], bindv6only=0, gunicorn_version="19.7.1")
    msg = str(e.value)
    assert "host app1" in msg and "service webapp.service" in msg
    assert "ipv6_kernel__bindv6only" in msg and "gunicorn_dualstack__wildcard_strategy" in msg


def test_reuse_port_already_on_is_kept():
    p = plan(["0.0.0.0:8000"], bindv6only=0, reuse_port=True, gunicorn_version="19.7.1")
    assert p["binds"] == ["0.0.0.0:8000", "[::]:8000"]
    assert p["reuse_port"] is None


def test_specific_address_gains_same_interface_ipv6_only():
    ifaces = {"10.0.0.5": ["fd00::5", "2001:db8::5"], "10.0.1.5": ["fd00:1::5"]}
    p = plan(["10.0.0.5:8000"], interfaces=ifaces)
    assert p["binds"] == ["10.0.0.5:8000", "[fd00::5]:8000", "[2001:db8::5]:8000"]
    assert "[::]:8000" not in p["binds"]


def test_specific_address_ignores_link_local():
    p = plan(["10.0.0.5:8000"], interfaces={"10.0.0.5": ["fe80::1", "fd00::5"]})
    assert p["binds"] == ["10.0.0.5:8000", "[fd00::5]:8000"]


def test_specific_address_without_interface_ipv6_fails():
    with pytest.raises(BindError) as e:
        plan(["10.0.0.5:8000"], interfaces={"10.0.0.5": ["fe80::1"]})
    assert "no global IPv6 address" in str(e.value)
    assert "webapp.service" in str(e.value)


def test_other_loopback_gains_only_ipv6_loopback():
    p = plan(["127.0.0.2:8000"])
    assert p["binds"] == ["127.0.0.2:8000", "[::1]:8000"]


def test_hostname_becomes_literal():
    p = plan(["localhost:8000"], resolved={"localhost": "127.0.0.1"})
    assert p["binds"] == ["127.0.0.1:8000", "[::1]:8000"]
    assert p["changed"]


def test_unresolvable_hostname_fails():
    with pytest.raises(BindError) as e:
        plan(["app.internal:8000"], resolved={})
    assert "does not resolve" in str(e.value)


def test_dual_socket_extends_proxy_trust_for_19_9_exact_match():
    p = plan(["0.0.0.0:8000"], strategy="dual", gunicorn_version="19.9.0")
    assert p["forwarded_allow_ips"] == "127.0.0.1,::ffff:127.0.0.1,::1"


def test_dual_socket_keeps_custom_trust_and_adds_mapped_forms():
    p = plan(["0.0.0.0:8000"], strategy="dual", forwarded_allow_ips="10.1.2.3", gunicorn_version="19.9.0")
    assert p["forwarded_allow_ips"] == "10.1.2.3,::ffff:10.1.2.3"


def test_wildcard_trust_is_left_alone():
    p = plan(["0.0.0.0:8000"], strategy="dual", forwarded_allow_ips="*")
    assert p["forwarded_allow_ips"] is None


def test_separate_sockets_keep_ipv4_trust_and_add_loopback_v6():
    p = plan(["0.0.0.0:8000"], bindv6only=1, gunicorn_version="19.9.0")
    # the [::] socket is v6only: no ::ffff: forms needed, ::1 may now proxy
    assert p["forwarded_allow_ips"] == "127.0.0.1,::1"


def test_gunicorn_23_default_trust_already_has_v6_loopback():
    p = plan(["127.0.0.1:8000"], gunicorn_version="23.0.0")
    assert p["forwarded_allow_ips"] is None


def test_listeners_describe_expected_v6only():
    p = plan(["0.0.0.0:8000"], bindv6only=0, strategy="dual")
    assert p["listeners"] == [{"address": "::", "port": 8000, "family": 6, "v6only": 0, "accepts": [4, 6]}]
    p = plan(["0.0.0.0:8000"], bindv6only=1)
    assert {"address": "::", "port": 8000, "family": 6, "v6only": 1, "accepts": [6]} in p["listeners"]


@pytest.mark.parametrize("v6only", [0, 1])
def test_second_plan_expects_the_same_listeners(v6only):
    first = plan(["0.0.0.0:8000"], bindv6only=v6only, gunicorn_version="20.1.0")
    again = plan(first["binds"], bindv6only=v6only, gunicorn_version="20.1.0", reuse_port=True,
                 forwarded_allow_ips=first["forwarded_allow_ips"])
    assert sorted(map(str, again["listeners"])) == sorted(map(str, first["listeners"]))


def test_second_plan_of_a_migrated_list_changes_nothing():
    first = plan(["0.0.0.0:8000"], bindv6only=1, gunicorn_version="20.1.0")
    again = plan(first["binds"], bindv6only=1, gunicorn_version="20.1.0",
                 forwarded_allow_ips=first["forwarded_allow_ips"])
    assert again["binds"] == first["binds"]
    assert not again["changed"]


@pytest.mark.parametrize("bad,fragment", [
    ("0.0.0.0:70000", "out of range"),
    ("0.0.0.0:0", "out of range"),
    ("0.0.0.0:http", "not a number"),
    ("0.0.0.0:", "empty port"),
    ("::1:8000", "must be written in brackets"),
    ("[::1:8000", "malformed"),
    ("[zz::1]:8000", "not an IPv6 address"),
    ("300.1.2.3:8000", "neither an IP address nor a host name"),
    ("unix:", "names no socket path"),
    ("fd://x", "fd must be a number"),
    ("", "is not a string"),
])
def test_malformed_binds_are_rejected_with_context(bad, fragment):
    with pytest.raises(BindError) as e:
        parse_bind(bad, CTX)
    assert fragment in str(e.value)
    assert str(e.value).startswith("host app1, service webapp.service: ")


@pytest.mark.parametrize("policy", [2, -1, "yes", None])
def test_unknown_bindv6only_policy_is_rejected(policy):
    with pytest.raises(BindError):
        plan(["0.0.0.0:80"], bindv6only=policy)


def test_unknown_strategy_is_rejected_naming_the_variable():
    with pytest.raises(BindError) as e:
        plan(["0.0.0.0:80"], strategy="both")
    assert "gunicorn_dualstack__wildcard_strategy" in str(e.value)
