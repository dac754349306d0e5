"""The host's listeners as the contract: owners, the preflight comparison
of plan and sockets, the before/after invariant, run states and the
kernel's run-time values (plugins/plugin_utils/dsr_contract.py)."""
import pytest

from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_contract as c
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import parse_ss

NEW = "ss utility, iproute2-6.1.0"
CG = "cgroup:/docker/abc/system.slice/"

# `ss -ltnpe` of a host with two gunicorn services under systemd, a
# supervisord program, nginx and a stranger (captured form, iproute2 6.1).
SS_BEFORE = "\n".join([
    "State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess",
    'LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=38,fd=5)) ino:1 sk:1 ' + CG + "nginx.service <->",
    'LISTEN 0 2048 0.0.0.0:8008 0.0.0.0:* users:(("gunicorn",pid=71,fd=5),("gunicorn",pid=70,fd=5)) ino:2 sk:2 '
    + CG + "app8.service <->",
    'LISTEN 0 2048 127.0.0.1:8001 0.0.0.0:* users:(("gunicorn",pid=81,fd=5),("gunicorn",pid=80,fd=5)) ino:3 sk:3 '
    + CG + "app1.service <->",
    'LISTEN 0 128 0.0.0.0:9000 0.0.0.0:* users:(("gunicorn",pid=93,fd=5),("gunicorn",pid=92,fd=5)) ino:4 sk:4 '
    + CG + "supervisor.service <->",
    'LISTEN 0 128 0.0.0.0:5000 0.0.0.0:* users:(("python3",pid=99,fd=3)) ino:5 sk:5 ' + CG + "flask-dev.service <->",
])
PS = "\n".join(["1 0", "38 1", "70 1", "71 70", "80 1", "81 80", "90 1", "91 90", "92 91", "93 92", "99 1"])
SERVICES = [
    {"unit": "app8.service", "manager": "systemd", "binds": ["127.0.0.1:8000"], "pid": 70},
    {"unit": "app1.service", "manager": "systemd", "binds": ["127.0.0.1:8001"], "pid": 80},
    # supervisord (pid 90) runs the program through `sh -c` (pid 91).
    {"unit": "supervisor:api", "manager": "supervisor", "binds": [":9000"], "pid": 91},
]


def owned(text=SS_BEFORE, services=SERVICES, ps=PS):
    return c.listener_owners(parse_ss(text, NEW), services, ps)


def test_owners_by_cgroup_by_ancestry_and_nobody():
    by = dict(((l["address"], l["port"]), l["owner"]) for l in owned())
    assert by == {("0.0.0.0", 80): "nginx.service", ("0.0.0.0", 8008): "app8.service",
                  ("127.0.0.1", 8001): "app1.service", ("0.0.0.0", 9000): "supervisor:api",
                  ("0.0.0.0", 5000): None}


def test_owners_on_old_ss_without_cgroup_by_main_pid():
    old = SS_BEFORE.replace(CG + "app8.service", "").replace(CG + "nginx.service", "")
    by = dict(((l["address"], l["port"]), l["owner"]) for l in owned(old))
    assert by[("0.0.0.0", 8008)] == "app8.service" and by[("0.0.0.0", 80)] == "nginx.service"


@pytest.mark.parametrize("bind, parsed", [
    ("0.0.0.0:8000", ("tcp", "0.0.0.0", 8000)),
    (":9000", ("tcp", "0.0.0.0", 9000)),
    ("127.0.0.1", ("tcp", "127.0.0.1", 8000)),
    ("[::1]:8001", ("tcp", "::1", 8001)),
    ("[::]", ("tcp", "::", 8000)),
    ("LocalHost:8002", ("tcp", "localhost", 8002)),
    ("tcp://10.0.0.5:80", ("tcp", "10.0.0.5", 80)),
    ("unix:/run/app.sock", ("unix", "/run/app.sock", None)),
    ("unix:///run/app.sock", ("unix", "/run/app.sock", None)),
    ("fd://3", ("fd", "3", None)),
])
def test_bind_strings_read_as_gunicorn_reads_them(bind, parsed):
    assert c.parse_gunicorn_bind(bind) == parsed


def test_live_check_catches_a_bind_the_discovery_did_not_read():
    problems = c.live_mismatches(SERVICES, owned(), ctx={"host": "web1"})
    assert problems == [
        "host web1: the plan believes app8.service listens on 127.0.0.1:8000; it listens on 0.0.0.0:8008 (ss). "
        "Its bind comes from a source the discovery did not read: make the unit state it (--bind), or leave the "
        "service out (gunicorn_dualstack__skip_services)"]


def test_live_check_says_when_ss_names_no_owner_for_the_socket():
    """Old ss (no cgroup field) and a gunicorn that dropped privileges, which
    ss -p cannot read without CAP_SYS_PTRACE: a socket is there, owner
    unknown. The host still stops, for that reason, not for an unread bind."""
    old = "\n".join([
        "State      Recv-Q Send-Q Local Address:Port               Peer Address:Port",
        "LISTEN     0      2048         *:8008                     *:*                   uid:999 ino:2 sk:2 <->",
    ])
    listeners = c.listener_owners(parse_ss(old, "ss utility, iproute2-ss161212"), SERVICES[:1], PS)
    services = [dict(SERVICES[0], binds=["0.0.0.0:8008"])]
    problems = c.live_mismatches(services, listeners, ctx={"host": "web1"})
    assert len(problems) == 1 and problems[0].startswith(
        "host web1: the plan believes app8.service listens on 0.0.0.0:8008; ss shows a socket there but names "
        "no owner for it"), problems
    assert "CAP_SYS_PTRACE" in problems[0] and "gunicorn_dualstack__skip_services" in problems[0]
    # The same socket with its processes: owned by ancestry, no problem.
    seen = old.replace("uid:999", 'users:(("gunicorn",pid=71,fd=5),("gunicorn",pid=70,fd=5)) uid:999')
    listeners = c.listener_owners(parse_ss(seen, "ss utility, iproute2-ss161212"), SERVICES[:1], PS)
    assert c.live_mismatches(services, listeners) == []


def test_live_check_passes_when_plan_and_sockets_agree_names_resolved():
    services = [dict(SERVICES[0], binds=["0.0.0.0:8008"]), dict(SERVICES[1], binds=["localhost:8001"]),
                SERVICES[2]]
    assert c.live_mismatches(services, owned(), resolved={"localhost": "127.0.0.1"}) == []


def test_live_check_names_a_gunicorn_the_discovery_did_not_find():
    # wrapper.service runs gunicorn through a script the discovery skipped.
    text = SS_BEFORE + ('\nLISTEN 0 128 0.0.0.0:8011 0.0.0.0:* users:(("gunicorn",pid=120,fd=5)) '
                        + CG + "wrapper.service <->")
    services = [dict(SERVICES[0], binds=["0.0.0.0:8008"]), SERVICES[1], SERVICES[2]]
    problems = c.live_mismatches(services, owned(text))
    assert problems == ["a gunicorn that the discovery did not find (wrapper.service) listens on 0.0.0.0:8011 (ss); "
                        "make its unit start gunicorn directly so that it can be read, or stop it"]


def test_live_check_unresolvable_name_and_missing_unix_socket():
    services = [dict(SERVICES[1], binds=["app.internal:8001"]),
                {"unit": "sock.service", "binds": ["unix:/run/sock.sock"], "pid": 0}]
    ssx = "u_str LISTEN 0 128 /run/other.sock 1234 * 0"
    problems = c.live_mismatches(services, owned(), ss_x_text=ssx)
    assert "does not resolve 'app.internal'" in problems[0]
    assert problems[1] == "the plan believes sock.service listens on unix:/run/sock.sock; no unix socket listens there (ss -lx)"


def test_live_check_nginx_listen_the_configuration_as_read_does_not_have():
    # nginx holds :80 and (from an include the plan did not see) :443.
    text = SS_BEFORE + "\nLISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:((\"nginx\",pid=38,fd=7)) " + CG + "nginx.service"
    services = [dict(SERVICES[0], binds=["0.0.0.0:8008"]), SERVICES[1], SERVICES[2]]
    plan = {"listens": [{"address": "::", "port": 80}]}
    problems = c.live_mismatches(services, owned(text), plan, nginx_active=True)
    assert len(problems) == 1 and problems[0].startswith("nginx listens on 0.0.0.0:443 (ss), but its configuration")
    # Configuration edited to :8080 but nginx not reloaded.
    plan = {"listens": [{"address": "::", "port": 8080}]}
    problems = c.live_mismatches(services, owned(), plan, nginx_active=True)
    assert [p.split(" (ss)")[0] for p in problems] == [
        "nginx listens on 0.0.0.0:80",
        "nginx's configuration as read has a listen on port 8080 that nginx does not hold now"]
    # A stopped nginx is not compared (it holds nothing, and is left alone).
    assert c.live_mismatches(services, owned(), plan, nginx_active=False) == []


AFTER_OK = [
    "0.0.0.0:80 nginx.service", "[::]:80 v6only=1 nginx.service",
    "0.0.0.0:8008 app8.service", "[::]:8008 v6only=0 app8.service",
    "127.0.0.1:8001 app1.service", "[::1]:8001 v6only=1 app1.service",
    "[::]:9000 v6only=0 supervisor:api",
    "10.0.0.5:81 nginx.service", "[2001:db8::5]:81 v6only=1 nginx.service",
]
BEFORE = ["0.0.0.0:80 nginx.service", "0.0.0.0:8008 app8.service", "127.0.0.1:8001 app1.service",
          "0.0.0.0:9000 supervisor:api", "10.0.0.5:81 nginx.service"]
IFACES = {"10.0.0.5": ["2001:db8::5"]}


def test_summary_of_owned_listeners_names_v6only_and_owner():
    assert c.owned_summary(owned()) == ["0.0.0.0:80 nginx.service", "0.0.0.0:8008 app8.service",
                                        "0.0.0.0:9000 supervisor:api", "127.0.0.1:8001 app1.service"]


def test_contract_holds_dual_socket_keeps_an_ipv4_wildcard():
    assert c.contract_problems(BEFORE, AFTER_OK, IFACES) == []


@pytest.mark.parametrize("drop, add, message", [
    # the sabotage case: moved to loopback
    (["0.0.0.0:8008 app8.service", "[::]:8008 v6only=0 app8.service"], "127.0.0.1:8008 app8.service",
     "app8.service no longer listens on 0.0.0.0:8008"),
    ("[::]:80 v6only=1 nginx.service", None, "nginx.service listens on 0.0.0.0:80 but not on [::]:80: not dual-stack"),
    ("[::1]:8001 v6only=1 app1.service", None, "app1.service listens on 127.0.0.1:8001 but not on [::1]:8001"),
    ("[2001:db8::5]:81 v6only=1 nginx.service", None, "listens on 10.0.0.5:81 but not on [2001:db8::5]:81"),
    # the twin is there, but another process holds it
    ("[::]:8008 v6only=0 app8.service", "[::]:8008 v6only=1 other.service", "not on [::]:8008"),
    # a v6only [::] socket does not carry the IPv4 wildcard
    ("[::]:9000 v6only=0 supervisor:api", "[::]:9000 v6only=1 supervisor:api", "no longer listens on 0.0.0.0:9000"),
])
def test_contract_catches_each_loss(drop, add, message):
    drop = drop if isinstance(drop, list) else [drop]
    after = [x for x in AFTER_OK if x not in drop] + ([add] if add else [])
    problems = c.contract_problems(BEFORE, after, IFACES, ctx={"host": "h"})
    assert any(message in p for p in problems), problems
    assert all(p.startswith("host h: ") for p in problems)


def test_contract_names_what_was_left_out_and_restore_only_checks_nothing_lost():
    after = [x for x in AFTER_OK if x != "[2001:db8::5]:81 v6only=1 nginx.service"]
    skip = [{"address": "10.0.0.5", "port": 81, "owner": "nginx.service", "reason": "stream"}]
    assert c.contract_problems(BEFORE, after, IFACES, skip) == []
    assert c.contract_problems(BEFORE, BEFORE, IFACES, require_dual=False) == []
    assert c.contract_problems(BEFORE, BEFORE[1:], IFACES, require_dual=False) == [
        "nginx.service no longer listens on 0.0.0.0:80 (it did before)"]


def test_public_targets_per_family():
    v4 = c.ipv4_public(BEFORE, ["10.0.0.5", "10.1.0.5"])
    assert [(t["address"], t["port"]) for t in v4] == [
        ("10.0.0.5", 80), ("10.1.0.5", 80), ("10.0.0.5", 8008), ("10.1.0.5", 8008),
        ("10.0.0.5", 9000), ("10.1.0.5", 9000), ("10.0.0.5", 81)]
    v6 = c.ipv6_public(BEFORE, IFACES, ["2001:db8::5"])
    assert [(t["address"], t["port"]) for t in v6] == [
        ("2001:db8::5", 80), ("2001:db8::5", 8008), ("2001:db8::5", 9000), ("2001:db8::5", 81)]
    urls = c.probe_urls(v6[:1])
    assert urls == [{"url": "http://[2001:db8::5]:80/", "expect": "any"}]
    assert c.answered([{"status": 200}, {"status": -1}, {"status": 400}], v4[:3]) == [v4[0], v4[2]]


SHOW = """Id=app8.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled

Id=app9.service
LoadState=loaded
ActiveState=inactive
SubState=dead
UnitFileState=disabled

Id=nginx.service
LoadState=loaded
ActiveState=inactive
SubState=dead
UnitFileState=disabled
"""
SUPERVISOR = """api                              RUNNING   pid 91, uptime 0:10:00
worker                           STOPPED   Nov 25 06:00 PM
"""


def test_run_states_and_their_differences():
    services = [{"unit": "app8.service"}, {"unit": "app9.service"}, {"unit": "nginx.service"},
                {"unit": "supervisor:api", "manager": "supervisor", "enabled": True},
                {"unit": "supervisor:worker", "manager": "supervisor", "enabled": False}]
    before = c.run_states(services, SHOW, SUPERVISOR)
    assert [(s["owner"], s["active"], s["enabled"], s["state"]) for s in before] == [
        ("app8.service", True, True, "active"), ("app9.service", False, False, "inactive"),
        ("nginx.service", False, False, "inactive"), ("supervisor:api", True, True, "RUNNING"),
        ("supervisor:worker", False, False, "STOPPED")]
    assert c.run_state_problems(before, before) == []
    started = c.run_states(services, SHOW.replace("ActiveState=inactive\nSubState=dead\nUnitFileState=disabled\n",
                                                  "ActiveState=active\nSubState=running\nUnitFileState=disabled\n"),
                           SUPERVISOR.replace("STOPPED ", "RUNNING "))
    assert c.run_state_problems(before, started, {"host": "h"}) == [
        "host h: app9.service is active; before the rollout it was inactive",
        "host h: nginx.service is active; before the rollout it was inactive",
        "host h: supervisor:worker is RUNNING; before the rollout it was STOPPED"]


SYSCTL_OFF = """net.ipv6.bindv6only = 0
net.ipv6.conf.all.disable_ipv6 = 1
net.ipv6.conf.default.disable_ipv6 = 1
net.ipv6.conf.eth0.disable_ipv6 = 1
net.ipv6.conf.lo.disable_ipv6 = 1
"""
SYSCTL_ON = SYSCTL_OFF.replace("= 1", "= 0")
# Docker on an IPv6 network: all and default off, the interfaces on.
SYSCTL_DOCKER = SYSCTL_OFF.replace("eth0.disable_ipv6 = 1", "eth0.disable_ipv6 = 0").replace(
    "lo.disable_ipv6 = 1", "lo.disable_ipv6 = 0")


def test_kernel_values_reads_only_the_ipv6_switches():
    assert c.kernel_values(SYSCTL_OFF + "net.ipv4.ip_forward = 1\n") == {
        "net.ipv6.bindv6only": "0", "net.ipv6.conf.all.disable_ipv6": "1",
        "net.ipv6.conf.default.disable_ipv6": "1", "net.ipv6.conf.eth0.disable_ipv6": "1",
        "net.ipv6.conf.lo.disable_ipv6": "1"}
    vlan = c.kernel_values("net.ipv6.conf.eth0/100.disable_ipv6 = 1")
    assert vlan == {"net.ipv6.conf.eth0/100.disable_ipv6": "1"}


@pytest.mark.parametrize("before, now, writes, kept", [
    # IPv6 off everywhere before: `all` restores every interface at once.
    (SYSCTL_OFF, SYSCTL_ON, ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], []),
    # Interfaces differ from `all`: they are written one by one, `all` is kept.
    (SYSCTL_DOCKER, SYSCTL_ON, ["net.ipv6.conf.default.disable_ipv6=1"], ["net.ipv6.conf.all.disable_ipv6"]),
    (SYSCTL_DOCKER.replace("lo.disable_ipv6 = 0", "lo.disable_ipv6 = 1"), SYSCTL_ON,
     ["net.ipv6.conf.lo.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], ["net.ipv6.conf.all.disable_ipv6"]),
    (SYSCTL_ON, SYSCTL_ON.replace("bindv6only = 0", "bindv6only = 1"), ["net.ipv6.bindv6only=0"], []),
    (SYSCTL_ON, SYSCTL_ON, [], []),
    # An interface gone since is not written, and does not hold `all` back.
    (SYSCTL_OFF + "net.ipv6.conf.eth1.disable_ipv6 = 0\n", SYSCTL_ON,
     ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], []),
])
def test_kernel_restore_order(before, now, writes, kept):
    plan = c.kernel_restore(c.kernel_values(before), c.kernel_values(now))
    assert plan == {"writes": writes, "kept": kept}
    # Applying the writes in order gives the values from before (but the kept keys).
    state = c.kernel_values(now)
    for w in plan["writes"]:
        k, v = w.split("=")
        if k == "net.ipv6.conf.all.disable_ipv6":
            for key in list(state):
                if key.endswith(".disable_ipv6") and key != "net.ipv6.conf.default.disable_ipv6":
                    state[key] = v
        state[k] = v
    assert c.kernel_problems(c.kernel_values(before), state, plan["kept"]) == []


def test_half_done_host_is_recognised_not_refused():
    # An interrupted run wrote app8's new binds but did not restart it: the
    # files say 0.0.0.0:8008 + [::]:8008, the sockets are still those of
    # before the first change (the snapshot's summary).
    services = [dict(SERVICES[0], binds=["0.0.0.0:8008", "[::]:8008"]), SERVICES[1], SERVICES[2]]
    original = ["0.0.0.0:8008 app8.service", "127.0.0.1:8001 app1.service", "0.0.0.0:9000 supervisor:api"]
    services[1] = dict(SERVICES[1], binds=["127.0.0.1:8001"])
    services[2] = dict(SERVICES[2], binds=[":9000"])
    assert c.live_mismatches(services, owned()) != []  # no snapshot: a wrong plan
    assert c.live_mismatches(services, owned(), original=original) == []
    assert c.pending(services, owned()) == {"services": ["app8.service"], "nginx": False}
    # Sockets that are neither the files' nor the first snapshot's are still refused.
    assert c.live_mismatches(services, owned(), original=["0.0.0.0:7000 app8.service"]) != []


def test_pending_nginx_reload():
    plan = {"listens": [{"address": "::", "port": 80}]}
    assert c.pending([], owned(), plan, nginx_active=True)["nginx"] is True
    after = SS_BEFORE + '\nLISTEN 0 511 [::]:80 [::]:* users:(("nginx",pid=38,fd=6)) ' + CG + "nginx.service v6only:1"
    assert c.pending([], owned(after), plan, nginx_active=True)["nginx"] is False


def test_supervisord_programs_whose_processes_root_cannot_see_are_judged_together():
    # user= programs drop privileges: not dumpable, so ss (without
    # CAP_SYS_PTRACE) shows their sockets with a cgroup and no process.
    text = "\n".join([
        "LISTEN 0 2048 0.0.0.0:8000 0.0.0.0:* uid:997 ino:1 sk:1 " + CG + "supervisor.service <->",
        "LISTEN 0 2048 0.0.0.0:8001 0.0.0.0:* uid:997 ino:2 sk:2 " + CG + "supervisor.service <->"])
    progs = [{"unit": "supervisor:webapp", "manager": "supervisor", "cgroup_unit": "supervisor.service",
              "binds": ["0.0.0.0:8000"], "pid": 594},
             {"unit": "supervisor:api", "manager": "supervisor", "cgroup_unit": "supervisor.service",
              "binds": ["0.0.0.0:8001"], "pid": 612}]
    ls = c.listener_owners(parse_ss(text, NEW), progs, "594 32\n612 32\n32 1")
    assert [l["owner"] for l in ls] == ["supervisor.service", "supervisor.service"]
    assert c.live_mismatches(progs, ls) == []
    assert c.pending(progs, ls)["services"] == []
    wrong = [dict(progs[0], binds=["127.0.0.1:8000"]), progs[1]]
    assert c.live_mismatches(wrong, ls) == [
        "the plan believes the programs of supervisor.service (supervisor:webapp, supervisor:api) listen on "
        "0.0.0.0:8001, 127.0.0.1:8000; they listen on 0.0.0.0:8000, 0.0.0.0:8001 (ss)"]
    # Nothing lost, and twins, by the same owner label before and after.
    before = c.owned_summary(ls)
    assert before == ["0.0.0.0:8000 supervisor.service", "0.0.0.0:8001 supervisor.service"]
    after = before + ["[::]:8000 v6only=1 supervisor.service", "[::]:8001 v6only=1 supervisor.service"]
    assert c.contract_problems(before, after) == []
