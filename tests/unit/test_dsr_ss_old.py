"""ss before iproute2 4.13, on the releases the fleet still runs.

The captures in tests/corpus/oldtools/ (README there) are one CentOS 7 /
Debian 9 app host: sshd, postfix, nginx and rpcbind, and gunicorn on
0.0.0.0 + [::] with reuse_port (8000), on loopback (8001), on a specific
address (8002), on one dual [::] socket (8003), and a socket bound to a
v4-mapped address (9000). Old ss writes `*:P` for the IPv4 wildcard, `:::P`
for the IPv6 one and IPv6 addresses without brackets; it has no -H, so a
header comes first; there is no cgroup field.
"""
import os

import pytest

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import listener_check, listener_summary, managed_listeners, parse_ss, ss_format

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "corpus", "oldtools")

# `ss -V` of each release: SNAPSHOT.h of the tag (ss130716 = 3.10.0 of
# 2013-07-16, CentOS 7.0-7.4; ss161212 = 4.9.0, Debian 9; ss170501 = 4.11.0,
# CentOS 7.5-7.9; ss180129 = 4.15.0, Ubuntu 18.04, the new format).
SS_V = {"3.10": "ss utility, iproute2-ss130716", "4.9": "ss utility, iproute2-ss161212",
        "4.11": "ss utility, iproute2-ss170501"}
CAPTURES = [("3.10", "ss-ltnpe-iproute2-3.10-centos7.txt"), ("3.10", "ss-ltne-iproute2-3.10-centos7.txt"),
            ("4.9", "ss-ltnpe-iproute2-4.9-debian9.txt"), ("4.9", "ss-ltne-iproute2-4.9-debian9.txt"),
            ("4.11", "ss-ltnpe-iproute2-4.11-centos7.txt")]


def corpus(name):
    with open(os.path.join(CORPUS, name)) as f:
        return f.read()


def by_port(listeners):
    return {(l["address"], l["port"]): l for l in listeners}


@pytest.mark.parametrize("text,fmt", [
    (SS_V["3.10"], "old"), (SS_V["4.9"], "old"), (SS_V["4.11"], "old"),
    ("ss utility, iproute2-ss180129", "new"),  # Ubuntu 18.04
    ("ss utility, iproute2-ss170905", "new"),  # 4.13.0, the first with the new format
    ("ss utility, iproute2-ss170705", "old"),  # 4.12.0
])
def test_version_strings_of_the_old_releases(text, fmt):
    assert ss_format(text) == fmt


@pytest.mark.parametrize("release,name", CAPTURES)
@pytest.mark.parametrize("with_version", [True, False])
def test_addresses_and_families(release, name, with_version):
    ls = by_port(parse_ss(corpus(name), SS_V[release] if with_version else None))
    assert len(ls) == 16  # the header is skipped
    for port in (22, 80, 111, 8000):
        assert ls[("0.0.0.0", port)]["family"] == 4 and ls[("0.0.0.0", port)]["accepts"] == [4]
        assert ls[("::", port)]["family"] == 6 and ls[("::", port)]["wildcard"]
    assert ls[("127.0.0.1", 8001)]["loopback"] and ls[("::1", 8001)]["loopback"]
    assert ls[("10.0.2.15", 8002)]["accepts"] == [4]
    assert ls[("2001:db8:42::15", 8002)]["family"] == 6 and ls[("2001:db8:42::15", 8002)]["accepts"] == [6]
    assert ls[("::ffff:7f00:1", 9000)]["accepts"] == [4] and ls[("::ffff:7f00:1", 9000)]["loopback"]
    assert all(l["unit"] is None for l in ls.values())  # no cgroup field before 5.x


@pytest.mark.parametrize("release,name", [c for c in CAPTURES if c[0] != "3.10"])
def test_v6only_on_4_9_and_4_11(release, name):
    ls = by_port(parse_ss(corpus(name), SS_V[release]))
    assert ls[("::", 22)]["v6only"] == 1 and ls[("::", 22)]["accepts"] == [6]
    assert ls[("::", 8000)]["v6only"] == 0 and ls[("::", 8000)]["accepts"] == [4, 6]
    assert ls[("::", 8003)]["v6only"] == 0
    assert listener_check(list(ls.values()), [
        {"address": "0.0.0.0", "port": 8000, "v6only": None}, {"address": "::", "port": 8000, "v6only": 0},
        {"address": "::", "port": 8003, "v6only": 0}, {"address": "::1", "port": 8001, "v6only": None},
        {"address": "2001:db8:42::15", "port": 8002, "v6only": None}]) == []
    assert "[::]:8000 dual" in listener_summary(list(ls.values()))


@pytest.mark.parametrize("name", ["ss-ltnpe-iproute2-3.10-centos7.txt", "ss-ltne-iproute2-3.10-centos7.txt"])
def test_3_10_prints_no_v6only(name):
    """iproute2 3.10 has no `v6only:` field: whether [::]:P takes IPv4 is
    unknown from ss, and a check that expects 0 or 1 says so."""
    ls = by_port(parse_ss(corpus(name), SS_V["3.10"]))
    assert ls[("::", 8000)]["v6only"] is None and ls[("::", 8000)]["accepts"] is None
    assert listener_check(list(ls.values()), [{"address": "::", "port": 8003, "v6only": 0}]) == [
        "[::]:8003 listens with v6only=None, expected 0"]
    assert listener_check(list(ls.values()), [{"address": "::1", "port": 8001, "v6only": None}]) == []


@pytest.mark.parametrize("release,name", [("4.9", "ss-ltnpe-iproute2-4.9-debian9.txt"),
                                          ("4.11", "ss-ltnpe-iproute2-4.11-centos7.txt")])
def test_processes_pid_fd_form(release, name):
    ls = parse_ss(corpus(name), SS_V[release])
    g = by_port(ls)[("0.0.0.0", 8000)]
    assert [p["pid"] for p in g["processes"]] == [2412, 2411, 2405]
    assert {p["name"] for p in g["processes"]} == {"gunicorn"}
    kept = managed_listeners(ls, [80, 8000, 111])
    assert sorted((l["address"], l["port"]) for l in kept) == [
        ("0.0.0.0", 80), ("0.0.0.0", 8000), ("::", 80), ("::", 8000)]  # rpcbind's 111 is not ours


def test_processes_of_3_10():
    """iproute2 3.10 prints users:(("name",N,N)), without pid= and fd=."""
    ls = parse_ss(corpus("ss-ltnpe-iproute2-3.10-centos7.txt"), SS_V["3.10"])
    assert [p["pid"] for p in by_port(ls)[("0.0.0.0", 8000)]["processes"]] == [2412, 2411, 2405]
    kept = managed_listeners(ls, [80, 8000, 111])
    assert ("0.0.0.0", 111) not in [(l["address"], l["port"]) for l in kept]


def test_process_name_with_a_space():
    """Captured on iproute2 6.1: setproctitle 1.3.8 set the title 'gunicorn: master [app:app]'."""
    ls = parse_ss(corpus("ss-ltnpe-iproute2-6.1-setproctitle.txt"), "ss utility, iproute2-6.1.0")
    assert ls[0]["processes"] == [{"name": "gunicorn: maste", "pid": 9285, "fd": 3}]
