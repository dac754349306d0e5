"""The audit's classification of real `ss -ltnpe` output (new iproute2 format)."""
from dsr_audit import audit_host, audit_summary, audit_table, families, journal_timeline, row_or_unreadable
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import parse_ss

V = "ss utility, iproute2-6.1.0"

BEFORE = """\
LISTEN 0 2048 0.0.0.0:8000 0.0.0.0:* ino:100 sk:1 cgroup:/system.slice/webapp.service <->
LISTEN 0 511 0.0.0.0:80 0.0.0.0:* ino:101 sk:2 cgroup:/system.slice/nginx.service <->
LISTEN 0 128 0.0.0.0:5000 0.0.0.0:* users:(("python3",pid=77,fd=3)) ino:102 sk:3 cgroup:/system.slice/devserver.service <->
LISTEN 0 4096 127.0.0.11:39233 0.0.0.0:* ino:103 sk:4 <->
"""
AFTER = """\
LISTEN 0 2048 0.0.0.0:8000 0.0.0.0:* ino:100 sk:1 cgroup:/system.slice/webapp.service <->
LISTEN 0 2048 [::]:8000 [::]:* ino:104 sk:5 cgroup:/system.slice/webapp.service v6only:1 <->
LISTEN 0 511 *:80 *:* ino:105 sk:6 cgroup:/system.slice/nginx.service v6only:0 <->
LISTEN 0 511 0.0.0.0:80 0.0.0.0:* ino:101 sk:2 cgroup:/system.slice/nginx.service <->
"""
KERNEL = {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.bindv6only": "0"}
SVC = [{"unit": "webapp.service", "binds": ["0.0.0.0:8000"], "version": "20.1.0"}]


def host(text, nginx_missing=(80,), **kw):
    h = {"host": "app1", "role": "app", "listeners": parse_ss(text, V), "services": SVC, "kernel": KERNEL,
         "nginx": {"files": {"/etc/nginx/sites-enabled/app": {
             "changed": bool(nginx_missing), "added": ["listen [::]:%d default_server;" % p for p in nginx_missing]}}},
         "ipv6_addresses": ["fd00::5"],
         "reach": {"4": True, "6": False}}
    h.update(kw)
    return audit_host(h)


def test_ipv4_only_host_with_an_unmanaged_dev_server():
    row = host(BEFORE)
    assert row["state"] == "ipv4-only"
    assert row["services"][0]["families"] == "ipv4-only"
    assert row["nginx"]["coverage"] == "IPv6 missing on 80"
    un = {u["listener"]: u for u in row["unmanaged"]}
    assert un["0.0.0.0:5000"]["process"] == "python3 (pid 77, devserver.service)"
    assert un["127.0.0.11:39233"]["process"].startswith("unknown")
    assert "no answer over IPv6" in row["problems"]


def test_dual_stack_host():
    row = host(AFTER, nginx_missing=(), reach={"4": True, "6": True})
    assert row["state"] == "dual-stack"
    assert row["services"][0]["listeners"] == ["0.0.0.0:8000", "[::]:8000"]
    assert row["nginx"]["families"] == "dual-stack" and row["nginx"]["coverage"] == "complete"
    assert row["unmanaged"] == [] and row["problems"] == []


def test_service_dual_but_nginx_missing_is_partial():
    assert host(AFTER, nginx_missing=(80,))["state"] == "partial"


def test_kernel_ipv6_off_wins():
    row = host(BEFORE, ipv6_addresses=[], kernel={"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.bindv6only": "0"})
    assert row["state"] == "ipv6-disabled" and row["kernel"]["ipv6"] == "disabled"


def test_running_service_without_socket_is_a_problem_a_stopped_one_is_shown_stopped():
    text = "\n".join(l for l in BEFORE.splitlines() if ":8000" not in l)
    row = host(text)
    assert row["services"][0]["families"] == "none"
    assert any("webapp.service: running, but no listening socket" in p for p in row["problems"])
    row = host(text, services=[dict(SVC[0], active=False)])
    assert row["services"][0]["families"] == "stopped" and row["problems"] == ["no answer over IPv6"]


def test_supervisord_programs_own_their_sockets():
    # Both programs share supervisord's cgroup; the owner tells them apart.
    text = ("LISTEN 0 128 0.0.0.0:9000 0.0.0.0:* users:((\"gunicorn\",pid=93,fd=5)) "
            "cgroup:/system.slice/supervisor.service <->\n")
    ls = [dict(l, owner="supervisor:api") for l in parse_ss(text, V)]
    row = host(text, listeners=ls, services=[{"unit": "supervisor:api", "binds": [":9000"]}], nginx=None)
    assert row["services"][0]["families"] == "ipv4-only" and row["unmanaged"] == []


def test_dual_stack_sockets_without_a_global_ipv6_address_are_not_dual_stack():
    row = host(AFTER, nginx_missing=(), reach={"4": True, "6": None}, ipv6_addresses=[])
    assert row["state"] == "no-global-ipv6"
    assert any("no IPv6 client can reach the host" in p for p in row["problems"])


def test_loopback_families():
    lo = parse_ss("LISTEN 0 5 127.0.0.1:8000 0.0.0.0:*\nLISTEN 0 5 [::1]:8000 [::]:* v6only:1\n", V)
    assert families(lo) == "loopback-dual"
    assert families(lo[:1]) == "loopback-ipv4"
    assert families([]) == "none"


def test_unreadable_host_and_summary():
    rows = [host(AFTER, nginx_missing=(), reach={"4": True, "6": True}), host(BEFORE),
            row_or_unreadable([None, "app9"])]
    assert rows[2]["state"] == "unreadable" and "unreachable" in rows[2]["problems"][0]
    s = audit_summary(rows)
    assert s["counts"]["dual-stack"] == 1 and s["counts"]["ipv4-only"] == 1 and s["counts"]["unreadable"] == 1
    assert s["unmanaged"] == 2
    assert any(p.startswith("app9: ") for p in s["problems"])
    lines = audit_table(rows)
    assert lines[0].split()[:3] == ["host", "role", "state"] and len(lines) == 5
    assert "unreadable" in lines[4]


def test_journal_timeline_places_hosts_on_one_axis():
    j = [{"host": "a", "wave": 1, "result": "migrated",
          "times": {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T00:00:10+00:00"}},
         {"host": "b", "wave": 2, "result": "failed", "error": "x",
          "times": {"start": "2026-01-01T00:00:10+00:00", "end": "2026-01-01T00:00:20+00:00"}},
         {"host": "c", "wave": 2, "result": "failed", "times": {}}]
    t = journal_timeline(j)
    assert [x["host"] for x in t] == ["a", "b"]
    assert t[0]["offset_pct"] == 0 and t[0]["width_pct"] == 50
    assert t[1]["offset_pct"] == 50 and t[1]["seconds"] == 10
    assert journal_timeline([]) == []


def test_ignored_addresses_and_kernel_state_from_addresses():
    row = host(BEFORE, ignore_addresses=["127.0.0.11"],
               kernel={"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.bindv6only": "0"})
    assert [u["listener"] for u in row["unmanaged"]] == ["0.0.0.0:5000"]
    # all.disable_ipv6=1 but eth0 carries a global IPv6 address (as Docker sets it up)
    assert row["kernel"]["ipv6"] == "partly" and row["state"] == "ipv4-only"
    row = host(BEFORE, ipv6_addresses=[], reach={"4": True, "6": None},
               kernel={"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.bindv6only": "0"})
    assert row["kernel"]["ipv6"] == "disabled" and row["state"] == "ipv6-disabled"
    assert "no global IPv6 address to request" in row["problems"]


# A balancer that runs HAProxy: its sockets are its own (not "unmanaged"),
# and its file's IPv4 binds without an IPv6 twin are named, from the real plan.
HAPROXY_CFG = "frontend web\n    bind :80\n    default_backend app\nbackend app\n    server a1 10.0.0.11:80\n"
HA_BEFORE = """\
LISTEN 0 4096 0.0.0.0:80 0.0.0.0:* ino:200 sk:1 cgroup:/system.slice/haproxy.service <->
"""
HA_AFTER = HA_BEFORE + """\
LISTEN 0 4096 [::]:80 [::]:* ino:201 sk:2 cgroup:/system.slice/haproxy.service v6only:1 <->
"""


def lb_host(text, config):
    from dsr_haproxy_cfg import dualstack_plan
    return audit_host({"host": "lb1", "role": "lb", "listeners": parse_ss(text, V), "services": [], "kernel": KERNEL,
                       "nginx": None, "haproxy": dualstack_plan(config, {}, {"host": "lb1"}),
                       "ipv6_addresses": ["fd00::2"], "reach": {"4": True, "6": False}})


def test_haproxy_balancer_before_and_after():
    row = lb_host(HA_BEFORE, HAPROXY_CFG)
    assert row["state"] == "ipv4-only" and row["unmanaged"] == []
    assert row["haproxy"]["coverage"] == "IPv6 missing on 80" and row["haproxy"]["listeners"] == ["0.0.0.0:80"]
    twinned = HAPROXY_CFG.replace("    bind :80\n", "    bind :80\n    bind :::80 v6only\n")
    row = lb_host(HA_AFTER, twinned)
    assert row["state"] == "dual-stack" and row["haproxy"]["coverage"] == "complete", row
    assert row["haproxy"]["families"] == "dual-stack"


def test_haproxy_bind_the_plan_cannot_twin_is_a_problem():
    row = lb_host(HA_BEFORE, HAPROXY_CFG.replace("bind :80", "bind lb.example:80"))
    assert any("lb.example is a host name" in p for p in row["problems"]), row["problems"]


# --- the host against the plan a rollout recorded (dsr_plan.py) -------------

def manifest(before_listeners=("0.0.0.0:8000 webapp.service", "0.0.0.0:80 nginx.service")):
    plan = {"version": 1, "host": "app1", "needs_change": True,
            "services": [{"unit": "webapp.service", "active": True, "listens": [
                {"address": "0.0.0.0", "port": 8000, "v6only": None},
                {"address": "::", "port": 8000, "v6only": 1}]}],
            "nginx": {"active": True, "changed": True, "files": [], "listens": [
                {"file": "/etc/nginx/sites-enabled/app", "line": 3, "address": "::", "port": 80, "v6only": 0,
                 "tls": False}]},
            "kernel": {}, "verify": {}, "restore": {}}
    return {"version": 1, "files": {}, "data": {"before": {"listeners": list(before_listeners)}, "plan": plan}}


BEFORE_SUMMARY = ["0.0.0.0:8000 webapp.service", "0.0.0.0:80 nginx.service"]
SVC_ON = [dict(SVC[0], active=True)]


def test_a_host_no_rollout_touched_has_no_verdict():
    row = host(AFTER, nginx_missing=(), reach={"4": True, "6": True}, services=SVC_ON)
    assert row["rollout"] == {"verdict": "none", "missing": []}


def test_a_rolled_out_host_is_as_planned():
    row = host(AFTER, nginx_missing=(), reach={"4": True, "6": True}, services=SVC_ON, manifest=manifest(),
               summary=["whatever now"])
    assert row["rollout"] == {"verdict": "as-planned", "missing": []} and row["problems"] == []


def test_a_rolled_back_host_is_as_before():
    row = host(BEFORE, services=SVC_ON, manifest=manifest(), summary=list(BEFORE_SUMMARY))
    assert row["rollout"]["verdict"] == "as-before"
    assert not any("planned" in p for p in row["problems"])


def test_a_host_that_is_neither_has_drifted_and_says_what_is_gone():
    # nginx kept its IPv6 listen; the service lost its [::]:8000
    text = "\n".join(l for l in AFTER.splitlines() if "[::]:8000" not in l) + "\n"
    row = host(text, nginx_missing=(), services=SVC_ON, manifest=manifest(), summary=["not as before"])
    assert row["rollout"] == {"verdict": "drifted", "missing": ["webapp.service: nothing listens on [::]:8000"]}
    assert "neither as the rollout planned nor as before it: webapp.service: nothing listens on [::]:8000" \
        in row["problems"]


def test_a_wrong_v6only_is_drift_too():
    text = AFTER.replace("[::]:8000 [::]:* ino:104 sk:5 cgroup:/system.slice/webapp.service v6only:1",
                         "[::]:8000 [::]:* ino:104 sk:5 cgroup:/system.slice/webapp.service v6only:0")
    row = host(text, nginx_missing=(), services=SVC_ON, manifest=manifest(), summary=["not as before"])
    assert row["rollout"]["verdict"] == "drifted"
    assert row["rollout"]["missing"] == ["webapp.service: [::]:8000 listens with v6only=0, expected 1"]


def test_a_service_stopped_since_is_not_judged():
    text = "\n".join(l for l in AFTER.splitlines() if ":8000" not in l) + "\n"
    row = host(text, nginx_missing=(), services=[dict(SVC[0], active=False)], manifest=manifest(),
               summary=["not as before"])
    assert row["rollout"]["verdict"] == "as-planned"


def test_public_ports_come_from_the_parsed_sockets():
    from dsr_audit import public_ports
    listeners = parse_ss(AFTER + "LISTEN 0 128 127.0.0.1:9000 0.0.0.0:* ino:9 sk:9 <->\n"
                         "LISTEN 0 128 [::1]:9000 [::]:* ino:10 sk:a v6only:1 <->\n", V)
    assert public_ports(listeners) == [80, 8000]
    assert public_ports([]) == []


def test_the_table_shows_each_host_against_its_plan():
    rows = [host(AFTER, nginx_missing=(), services=SVC_ON, manifest=manifest(), summary=[]), host(BEFORE)]
    lines = audit_table(rows)
    assert lines[0].split()[-1] == "plan"
    assert [line.split()[-1] for line in lines[2:]] == ["as-planned", "none"]
