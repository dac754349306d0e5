import pytest
from conftest import data

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import SsParseError, listener_check, parse_ss, ss_format


def by_port(listeners):
    return {(l["address"], l["port"]): l for l in listeners}


@pytest.mark.parametrize("release,version", [(11, "iproute2-5.9.0"), (12, "iproute2-6.1.0"), (13, "iproute2-6.15.0")])
@pytest.mark.parametrize("flags", ["ltnHe", "ltnHep"])
def test_current_format_captured_on_debian(release, version, flags):
    """Captured with scripts: python sockets 8001 dual, 8002 v6only, 8003 v4 any, 8004 v4 lo, 8005 v6 lo."""
    ls = by_port(parse_ss(data("ss-%s-debian%d.txt" % (flags, release)), "ss utility, " + version))
    assert ls[("::", 8001)]["v6only"] == 0 and ls[("::", 8001)]["accepts"] == [4, 6]
    assert ls[("::", 8002)]["v6only"] == 1 and ls[("::", 8002)]["accepts"] == [6]
    assert ls[("0.0.0.0", 8003)]["family"] == 4 and ls[("0.0.0.0", 8003)]["wildcard"]
    assert ls[("127.0.0.1", 8004)]["loopback"] and ls[("127.0.0.1", 8004)]["accepts"] == [4]
    assert ls[("::1", 8005)]["family"] == 6 and ls[("::1", 8005)]["loopback"]
    assert len(ls) == 5
    if flags.endswith("p"):
        assert ls[("::", 8001)]["processes"][0]["name"] == "python3"


def test_current_format_is_detected_without_version():
    ls = by_port(parse_ss(data("ss-ltnHe-debian12.txt")))
    assert ls[("::", 8001)]["accepts"] == [4, 6]


def test_old_format_star_means_ipv4():
    text = data("ss-ltne-iproute2-4.11-centos7.txt")
    ls = by_port(parse_ss(text, "ss utility, iproute2-ss170501"))
    assert ls[("0.0.0.0", 22)]["family"] == 4
    assert ls[("::", 22)]["v6only"] == 1
    assert ls[("::", 8000)]["accepts"] == [4, 6]
    assert ls[("::1", 25)]["loopback"]
    assert ls[("10.0.2.15", 8080)]["accepts"] == [4]
    mapped = ls[("::ffff:7f00:1", 9000)]
    assert mapped["loopback"] and mapped["accepts"] == [4]


def test_old_format_is_detected_without_version():
    ls = by_port(parse_ss(data("ss-ltne-iproute2-4.11-centos7.txt")))
    assert ("0.0.0.0", 22) in ls


def test_star_alone_is_ambiguous_without_version():
    with pytest.raises(SsParseError) as e:
        parse_ss("LISTEN 0 128 *:8000 *:*\n")
    assert "ss -V" in str(e.value)
    assert parse_ss("LISTEN 0 128 *:8000 *:*\n", "iproute2-4.9.0")[0]["family"] == 4
    assert parse_ss("LISTEN 0 128 *:8000 *:*\n", "iproute2-5.10.0")[0]["accepts"] == [4, 6]


@pytest.mark.parametrize("text,fmt", [
    ("ss utility, iproute2-ss130716", "old"),
    ("ss utility, iproute2-ss170501", "old"),
    ("ss utility, iproute2-ss171113", "new"),
    ("ss utility, iproute2-4.12.0", "old"),
    ("ss utility, iproute2-4.14.1", "new"),
    ("ss utility, iproute2-6.1.0", "new"),
    ("something else", None),
])
def test_version_to_format(text, fmt):
    assert ss_format(text) == fmt


def test_interface_suffix():
    ls = parse_ss("LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*\nLISTEN 0 5 [fe80::1]%eth0:9 [::]:* v6only:1\n")
    assert ls[0]["interface"] == "lo" and ls[0]["address"] == "127.0.0.53"
    assert ls[1]["interface"] == "eth0" and ls[1]["family"] == 6


def test_garbage_is_an_error():
    with pytest.raises(SsParseError):
        parse_ss("LISTEN 0 5 nonsense 0.0.0.0:*\n")


def test_listener_check_reports_missing_and_wrong_v6only():
    actual = parse_ss(data("ss-ltnHe-debian12.txt"))
    assert listener_check(actual, [{"address": "::", "port": 8001, "v6only": 0},
                                   {"address": "0.0.0.0", "port": 8003, "v6only": None}]) == []
    problems = listener_check(actual, [{"address": "::", "port": 8002, "v6only": 0},
                                       {"address": "::1", "port": 9999, "v6only": None}])
    assert problems == ["[::]:8002 listens with v6only=1, expected 0",
                        "nothing listens on [::1]:9999"]


def test_listener_summary():
    from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import listener_summary
    out = listener_summary(parse_ss(data("ss-ltnHe-debian12.txt")))
    assert out == ["[::]:8001 dual", "[::]:8002 ipv6", "0.0.0.0:8003 ipv4", "127.0.0.1:8004 loopback-ipv4",
                   "[::1]:8005 loopback-ipv6"]


def test_managed_listeners_keep_gunicorn_and_nginx_on_managed_ports():
    from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import managed_listeners
    text = ('LISTEN 0 5 0.0.0.0:8000 0.0.0.0:* users:(("gunicorn",pid=7,fd=5)) ino:1 sk:1 <->\n'
            'LISTEN 0 1 [::]:8000 [::]:* users:(("sandbox-squatte",pid=9,fd=3)) ino:2 sk:2 v6only:1 <->\n'
            'LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=3,fd=6)) ino:3 sk:3 <->\n'
            'LISTEN 0 4096 127.0.0.11:39565 0.0.0.0:* ino:4 sk:4 <->\n')
    kept = managed_listeners(parse_ss(text, "iproute2-6.1.0"), [80, 8000])
    assert [(l["address"], l["port"]) for l in kept] == [("0.0.0.0", 8000), ("0.0.0.0", 80)]


def test_managed_listeners_by_systemd_unit():
    from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import managed_listeners
    text = ("LISTEN 0 2048 0.0.0.0:8000 0.0.0.0:* uid:996 ino:1 sk:1 cgroup:/docker/x/system.slice/webapp.service <->\n"
            "LISTEN 0 1 [::]:8000 [::]:* uid:65534 ino:2 sk:2 cgroup:/docker/x/system.slice/sandbox-squatter.service "
            "v6only:1 <->\n"
            "LISTEN 0 511 0.0.0.0:80 0.0.0.0:* ino:3 sk:3 cgroup:/system.slice/nginx.service <->\n")
    ls = parse_ss(text, "iproute2-6.1.0")
    assert ls[0]["unit"] == "webapp.service"
    kept = managed_listeners(ls, [80, 8000], ["webapp.service", "nginx.service"])
    assert [(l["address"], l["port"]) for l in kept] == [("0.0.0.0", 8000), ("0.0.0.0", 80)]
