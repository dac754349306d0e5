"""HAProxy as the balancer, end to end, on the real containers of this scenario.

The tests run in file order and drive the real entry points with
ansible-playbook against Molecule's inventory (dsr_lb_backend: haproxy):

1. before: fingerprint every file the rollout may touch (HAProxy's
   configuration included); HAProxy listens on IPv4 only; the image's nginx
   on the balancer is stopped and disabled; `rollout.yml --check --diff`
   shows the IPv6 bind and changes nothing; a server put in maintenance
   through the runtime API alone stops preflight (the reload that adds the
   IPv6 binds would put it back into service);
2. rollout.yml with a fault on dsr-h-app3 (second wave): HAProxy's own
   binds gained their IPv6 twins (checked by `haproxy -c`, reloaded), the
   canary and dsr-h-app2 are dual-stack and HAProxy reaches them on IPv6,
   in its file and as it runs; dsr-h-app3 is back on IPv4, byte-identical,
   its server ready on its IPv4 address; the balancer's stopped nginx
   stays stopped and disabled;
3. the fault removed, rollout.yml completes: every server on IPv6, the app
   sees the real client and https over both families; a reload of HAProxy
   keeps the servers on IPv6 (the addresses are in its file); a second
   rollout changes nothing;
4. a host is rolled back while slow requests keep going through HAProxy:
   the drain waits for the one in flight on that host, every request gets
   its 200;
5. rollback.yml returns every host and the balancer to byte-identical files
   and IPv4-only listeners, HAProxy's servers to IPv4 (a second rollback is
   the fleet and legacy scenarios' case).
"""
import json
import os
import re
import threading
import time

import pytest

from conftest import WATCHED, addresses, docker_host, fingerprint, http_get, run_playbook, url

APPS = ["dsr-h-app%d" % i for i in range(1, 4)]
LB = "dsr-h-lb"
CLIENT = "dsr-h-app1"
FAMILY = {4: "ipv4", 6: "ipv6"}
SOCKET = "/run/haproxy/admin.sock"
STATE = {}


def host(name):
    return docker_host(name)


def print_of(name):
    return fingerprint(name, WATCHED + " /etc/haproxy")


def playbook(name, *args):
    return run_playbook(STATE["journal"], name, *args)


def out_of(r):
    return r.stdout + r.stderr


def recap(output):
    out = {}
    for m in re.finditer(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                         output, re.M):
        out[m.group(1)] = {"changed": int(m.group(3)), "failed": int(m.group(5))}
    return out


def listeners(name):
    return host(name).check_output("ss -ltnH 2>/dev/null | awk '{print $4}' | sort -u").split()


def is_dual(name):
    return "[::]:80" in listeners(name)


def runtime(command):
    """One command to HAProxy's runtime API, through its socket on the balancer."""
    return host(LB).check_output(
        "python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
        "s.sendall(sys.argv[2].encode() + b\"\\n\"); print(s.makefile().read())' %s %r" % (SOCKET, command))


def servers():
    """{server: (address, admin state bits, operational state)} as HAProxy runs them."""
    out = {}
    for line in runtime("show servers state app").splitlines():
        f = line.split()
        if len(f) > 6 and f[0].isdigit():
            out[f[3]] = (f[4], int(f[6]), int(f[5]))
    return out


def server_of(name):
    """HAProxy's server name for app host `name` (matched by either address)."""
    mine = addresses(host(name))
    for srv, (addr, _, _) in servers().items():
        if addr in mine["ipv4"] + mine["ipv6"]:
            return srv
    raise AssertionError("no server for %s in %s" % (name, servers()))


def config():
    return host(LB).file("/etc/haproxy/haproxy.cfg").content_string


def wait_up(timeout=20):
    """Until HAProxy's health checks see every server up (op state 2)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(s[2] == 2 for s in servers().values()):
            return
        time.sleep(0.5)
    raise AssertionError("servers not up: %s" % servers())


def through_lb(family, n=9, frm=None):
    target = addresses(host(LB))[FAMILY[family]][0]
    return [http_get(host(frm or LB), url(target, 80)) for _ in range(n)]


def nginx_on_lb_untouched():
    lb = host(LB)
    return (lb.run("systemctl is-active nginx.service").stdout.strip() == "inactive"
            and lb.run("systemctl is-enabled nginx.service").stdout.strip() == "disabled")


@pytest.fixture(scope="module", autouse=True)
def journal(tmp_path_factory):
    STATE["journal"] = str(tmp_path_factory.mktemp("journal"))
    os.chmod(STATE["journal"], 0o700)


def test_01_before_state():
    STATE["before"] = {h: print_of(h) for h in APPS + [LB]}
    STATE["config"] = config()
    assert "0.0.0.0:80" in listeners(LB) and "[::]:80" not in listeners(LB)
    assert nginx_on_lb_untouched()
    for h in APPS:
        assert not is_dual(h)
        assert servers()[server_of(h)][0] == addresses(host(h))["ipv4"][0]
    answers = through_lb(4)
    assert all(r.status == 200 and r.json["scheme"] == "https" for r in answers), answers


def test_01a_check_diff_shows_the_plan_and_changes_nothing():
    r = playbook("rollout.yml", "--check", "--diff")
    out = out_of(r)
    assert r.returncode == 0, out[-3000:]
    assert re.search(r"^\+\s*bind :::80 v6only", out, re.M), out[-3000:]
    assert re.search(r"^\+\s*bind \[::1\]:8404", out, re.M), out[-3000:]
    assert {h: print_of(h) for h in APPS + [LB]} == STATE["before"]


def test_01b_maintenance_set_only_at_run_time_stops_preflight():
    srv = server_of("dsr-h-app2")
    runtime("set server app/%s state maint" % srv)
    try:
        r = playbook("rollout.yml")
        out = out_of(r)
        assert r.returncode != 0, out[-3000:]
        assert "Preflight failed; nothing was changed anywhere" in out
        assert "HAProxy runs app/%s (maint) set through its runtime API" % srv in re.sub(r"\s+", " ", out), out[-3000:]
    finally:
        runtime("set server app/%s state ready" % srv)
    assert {h: print_of(h) for h in APPS + [LB]} == STATE["before"]


def test_02_rollout_stops_at_the_faulty_wave_and_restores_that_host():
    wait_up()
    r = playbook("rollout.yml")
    out = out_of(r)
    assert r.returncode != 0, out[-3000:]
    assert "host dsr-h-app3: migration failed" in out, out[-3000:]
    # HAProxy's own binds: the IPv6 twins, each family its own socket
    ls = listeners(LB)
    assert "0.0.0.0:80" in ls and "[::]:80" in ls and "127.0.0.1:8404" in ls and "[::1]:8404" in ls, ls
    assert re.search(r"^\tbind :::80 v6only$", config(), re.M), config()
    assert host(LB).file("/etc/haproxy/haproxy.cfg").mode == 0o644
    # the canary and the healthy host: on IPv6, in the file and as HAProxy runs
    for h in ("dsr-h-app1", "dsr-h-app2"):
        assert is_dual(h), h
        v6 = addresses(host(h))["ipv6"][0]
        assert servers()[server_of(h)][0] == v6, servers()
        assert re.search(r"server %s \[%s\]:80 " % (server_of(h), re.escape(v6)), config()), config()
    # the faulty host: back exactly as before, on IPv4, ready
    assert print_of("dsr-h-app3") == STATE["before"]["dsr-h-app3"]
    assert not is_dual("dsr-h-app3")
    srv3 = server_of("dsr-h-app3")
    assert servers()[srv3][0] == addresses(host("dsr-h-app3"))["ipv4"][0]
    assert servers()[srv3][1] & 0x09 == 0, servers()   # neither forced drain nor maint
    assert nginx_on_lb_untouched()
    wait_up()
    assert all(x.status == 200 for x in through_lb(4) + through_lb(6))


def test_03_rollout_completes_once_the_fault_is_gone():
    host("dsr-h-app3").check_output("systemctl stop sandbox-squatter.service")
    r = playbook("rollout.yml")
    assert r.returncode == 0, out_of(r)[-3000:]
    for h in APPS:
        assert is_dual(h), h
        v6 = addresses(host(h))["ipv6"][0]
        assert servers()[server_of(h)][0] == v6
        assert "[%s]:80" % v6 in config()
    wait_up()
    # the app sees the real client and https over both families, through HAProxy
    for family in (4, 6):
        own = addresses(host(CLIENT))[FAMILY[family]][0]
        answers = through_lb(family, frm=CLIENT)
        assert all(a.status == 200 and a.json["client"] == own and a.json["scheme"] == "https"
                   for a in answers), (family, answers)
    assert nginx_on_lb_untouched()


def test_03_audit_sees_haproxy_dual_stack(tmp_path):
    reports = str(tmp_path / "reports")
    r = playbook("audit.yml", "-e", "dsr_report_dir=%s" % reports, "-e", "dsr_report_stamp=after")
    assert r.returncode == 0, out_of(r)[-3000:]
    assert all(v["changed"] == 0 for v in recap(out_of(r)).values()), recap(out_of(r))
    rows = {h["host"]: h for h in json.load(open(os.path.join(reports, "audit-after.json")))["hosts"]}
    lb = rows[LB]
    # HAProxy's sockets are its own, every bind has its twin; the stopped nginx is not judged
    assert lb["haproxy"]["coverage"] == "complete" and "[::]:80" in lb["haproxy"]["listeners"], lb
    # (Docker's embedded DNS on 127.0.0.11 is the container's, not HAProxy's)
    assert [u["listener"] for u in lb["unmanaged"] if not u["listener"].startswith("127.0.0.11:")] == [], lb
    assert lb["nginx"] is None and lb["state"] == "dual-stack", lb
    assert lb["reach"] == {"4": True, "6": True}, lb
    for h in APPS:
        assert rows[h]["state"] == "dual-stack", rows[h]


def test_03a_a_reload_keeps_the_servers_on_ipv6():
    host(LB).check_output("systemctl reload haproxy.service")
    time.sleep(1)
    for h in APPS:
        assert servers()[server_of(h)][0] == addresses(host(h))["ipv6"][0], servers()


def test_03b_second_rollout_changes_nothing():
    r = playbook("rollout.yml")
    out = out_of(r)
    assert r.returncode == 0, out[-3000:]
    changed = {h: v["changed"] for h, v in recap(out).items() if h != "localhost"}
    assert set(changed) == set(APPS + [LB]) and all(v == 0 for v in changed.values()), changed


def test_04_drain_waits_for_the_requests_in_flight():
    """Three clients keep slow requests going through HAProxy (round robin
    over three servers: each server always has one in flight) while one host
    is rolled back: its drain waits until its request ends, and not one
    request fails, before, during or after."""
    wait_up()
    target = url(addresses(host(LB))["ipv4"][0], 80, "/slow?s=6")
    clients = ("dsr-h-app2", "dsr-h-app3", LB)
    # Each request lasts 6 s: less than half of gunicorn's 30 s worker
    # time-out. A sync worker with more than one listener (the dual-stack
    # binds) notifies its arbiter before it waits for a connection, up to
    # half the time-out, not after: a request of 25 s was killed (500, 502).
    # The requests follow one another, so whenever the drain comes, the
    # host has one in flight; no single request has to outlast the run.
    loop = ("rm -f /tmp/.dsr-stop /tmp/.dsr-codes; while [ ! -e /tmp/.dsr-stop ]; do "
            "curl -g -s -o /dev/null --max-time 30 -w '%%{http_code}\\n' %s >>/tmp/.dsr-codes; done" % target)
    threads = [threading.Thread(target=host(c).run, args=(loop,)) for c in clients]
    for t in threads:
        t.start()
    time.sleep(3)
    try:
        r = playbook("rollback.yml", "--limit", "dsr-h-app1", "-v")
    finally:
        for c in clients:
            host(c).run("touch /tmp/.dsr-stop")
        for t in threads:
            t.join(60)
    codes = {c: host(c).check_output("cat /tmp/.dsr-codes").split() for c in clients}
    out = out_of(r)
    assert r.returncode == 0, out[-3000:]
    assert all(codes.values()) and all(x == "200" for v in codes.values() for x in v), codes
    # the drain returned only once app1's request had ended: it waited for
    # it (the module reports how long), and app1 was not restarted before
    waited = [float(w) for w in re.findall(r'"?waited"?: ([0-9.]+)', out)]
    assert waited and max(waited) > 0, (waited, out[-3000:])
    assert not is_dual("dsr-h-app1")
    assert servers()[server_of("dsr-h-app1")][0] == addresses(host("dsr-h-app1"))["ipv4"][0]
    assert print_of("dsr-h-app1") == STATE["before"]["dsr-h-app1"]


def test_04b_a_server_its_operator_put_in_maintenance_stays_there():
    """An operator takes dsr-h-app2's server out (runtime API) after the
    rollout; rolling that host back moves it to IPv4 but leaves it in
    maintenance: neither drained out of it nor put back ready."""
    srv = server_of("dsr-h-app2")
    runtime("set server app/%s state maint" % srv)
    try:
        r = playbook("rollback.yml", "--limit", "dsr-h-app2")
        assert r.returncode == 0, out_of(r)[-3000:]
        addr, flags, _ = servers()[srv]
        assert addr == addresses(host("dsr-h-app2"))["ipv4"][0] and flags & 0x01, servers()
        assert print_of("dsr-h-app2") == STATE["before"]["dsr-h-app2"]
    finally:
        runtime("set server app/%s state ready" % srv)


def test_05_rollback_restores_every_byte():
    r = playbook("rollback.yml")
    assert r.returncode == 0, out_of(r)[-3000:]
    for h in APPS + [LB]:
        assert print_of(h) == STATE["before"][h], h
    assert config() == STATE["config"]
    for h in APPS:
        assert not is_dual(h), h
        assert servers()[server_of(h)][0] == addresses(host(h))["ipv4"][0]
    assert "[::]:80" not in listeners(LB) and "[::1]:8404" not in listeners(LB)
    assert nginx_on_lb_untouched()
    wait_up()
    assert all(x.status == 200 and x.json["scheme"] == "https" for x in through_lb(4))
