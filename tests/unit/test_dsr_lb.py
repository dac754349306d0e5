import os

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


# `ps -e -o pid=,args=` of a balancer before and after `nginx -s reload`
# while one old worker still finishes a request (nginx 1.22, captured form).
PS_BEFORE = """    1 /sbin/init
   38 nginx: master process /usr/sbin/nginx -g daemon on; master_process on;
   39 nginx: worker process
   40 nginx: worker process
   41 nginx: cache manager process
"""
PS_AFTER = """    1 /sbin/init
   38 nginx: master process /usr/sbin/nginx -g daemon on; master_process on;
   40 nginx: worker process is shutting down
   52 nginx: worker process
   53 nginx: worker process
"""


def test_old_workers_are_those_of_before_still_alive():
    from dsr_lb import nginx_old_workers
    assert nginx_old_workers(PS_BEFORE, PS_AFTER) == [40]
    # Not yet told of the reload: still holds its requests.
    assert nginx_old_workers(PS_BEFORE, PS_BEFORE) == [39, 40]
    assert nginx_old_workers(PS_BEFORE, PS_AFTER.replace("   40 nginx: worker process is shutting down\n", "")) == []
    # A pid reused by something else is not a worker.
    assert nginx_old_workers(PS_BEFORE, "   39 /usr/bin/python3 app.py\n") == []
    assert nginx_old_workers("", PS_AFTER) == []


def test_a_real_nginx_reload_keeps_the_worker_of_a_slow_request_until_it_ends(tmp_path):
    """The oracle: a real nginx proxies a 2 s request; after `nginx -s
    reload` the worker that holds it stays (shutting down) until the answer
    is sent, and the filter names it until then, and nothing after."""
    import http.server
    import shutil
    import socket
    import subprocess
    import threading
    import time
    import urllib.request

    from dsr_lb import nginx_old_workers

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        pytest.skip("no nginx on this machine (scripts/ensure-test-tools.sh installs it)")

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(2)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"slow")

        def log_message(self, *a):
            pass

    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "nginx.conf"
    conf.write_text("""pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
worker_processes 2;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %(d)s; proxy_temp_path %(d)s; fastcgi_temp_path %(d)s;
    uwsgi_temp_path %(d)s; scgi_temp_path %(d)s;
    server { listen 127.0.0.1:%(p)d; location / { proxy_pass http://127.0.0.1:%(b)d; } }
}
""" % {"d": tmp_path, "p": port, "b": backend.server_address[1]})
    subprocess.run([nginx, "-c", str(conf), "-p", str(tmp_path)], check=True)
    try:
        for _ in range(50):
            if (tmp_path / "nginx.pid").exists():
                break
            time.sleep(0.1)
        # Only this nginx's workers: other nginx (test containers) may run on this machine.
        ps = ["ps", "--ppid", (tmp_path / "nginx.pid").read_text().strip(), "-o", "pid=,args="]
        answer = {}
        t = threading.Thread(target=lambda: answer.update(
            body=urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=10).read()))
        t.start()
        time.sleep(0.5)  # the request is in a worker, waiting on the backend
        before = subprocess.run(ps, capture_output=True, text=True).stdout
        subprocess.run([nginx, "-c", str(conf), "-p", str(tmp_path), "-s", "reload"], check=True)
        time.sleep(0.5)
        held = nginx_old_workers(before, subprocess.run(ps, capture_output=True, text=True).stdout)
        assert len(held) == 1, held  # only the worker holding the request
        t.join(10)
        assert answer.get("body") == b"slow"  # the reload did not cut it
        for _ in range(50):
            if not nginx_old_workers(before, subprocess.run(ps, capture_output=True, text=True).stdout):
                break
            time.sleep(0.1)
        assert nginx_old_workers(before, subprocess.run(ps, capture_output=True, text=True).stdout) == []
    finally:
        subprocess.run([nginx, "-c", str(conf), "-p", str(tmp_path), "-s", "stop"])
        backend.shutdown()


def test_targets_for_an_operators_balancer_say_where_to_reach_each_host():
    from dsr_lb import targets
    hv = {"a": {"dsr_lb_address": "10.0.0.1", "dsr_lb_address6": "fd00::1", "dsr_dualstack_ok": True},
          "b": {"dsr_lb_address": "10.0.0.2", "dsr_lb_address6": "fd00::2"},
          "c": {"dsr_lb_address": "10.0.0.3", "dsr_lb_address6": "fd00::3", "dsr_dualstack_ok": True,
                "dsr_trust": {"ipv6_upstream_ok": False}}}
    assert targets(["a", "b", "c"], hv) == [
        {"host": "a", "ipv4": "10.0.0.1", "ipv6": "fd00::1", "address": "fd00::1"},
        {"host": "b", "ipv4": "10.0.0.2", "ipv6": "fd00::2", "address": "10.0.0.2"},  # not verified dual-stack
        {"host": "c", "ipv4": "10.0.0.3", "ipv6": "fd00::3", "address": "10.0.0.3"}]  # a trust rule has no twin
    assert [t["address"] for t in targets(["a"], hv, False)] == ["10.0.0.1"]  # rollback: IPv4
    assert targets([], hv) == []


# --- HAProxy: runtime against file, drain and enable lists -------------------------------------

from dsr_lb import haproxy_drain, haproxy_enable, haproxy_runtime  # noqa: E402

HA_HV = {
    "app1": {"dsr_lb_address": "10.0.0.11", "dsr_lb_address6": "fd00::11", "dsr_dualstack_ok": True},
    "app2": {"dsr_lb_address": "10.0.0.12", "dsr_lb_address6": "fd00::12", "dsr_dualstack_ok": False},
    "app3": {"dsr_lb_address": "10.0.0.13", "dsr_lb_address6": "fd00::13", "dsr_dualstack_ok": True,
             "dsr_trust": {"ipv6_upstream_ok": False}},
}
HA_NAMES = {"app1": ["web/a1", "api/a1"], "app2": ["web/a2"], "app3": ["web/a3"]}
CTX = {"host": "lb1", "path": "/etc/haproxy/haproxy.cfg"}


def _conf(*entries):
    return [{"backend": b, "server": s, "address": a, "port": 80, "line": n, "raw": a, "conditional": cond}
            for b, s, a, n, cond in entries]


def _run(*entries):
    """(backend, server, address, forced[, srv_admin_state flags])"""
    return [{"backend": e[0], "server": e[1], "address": e[2], "port": 80, "forced": e[3], "admin": e[3],
             "admin_flags": e[4] if len(e) > 4 else {"ready": 0, "drain": 8, "maint": 1}[e[3]]} for e in entries]


CONF = _conf(("web", "a1", "10.0.0.11", 10, False), ("api", "a1", "10.0.0.11", 20, False),
             ("web", "a2", "10.0.0.12", 11, False), ("web", "a3", "10.0.0.13", 12, False),
             ("web", "other", "10.0.0.99", 13, False))
RUN_OK = _run(("web", "a1", "10.0.0.11", "ready"), ("api", "a1", "10.0.0.11", "ready"),
              ("web", "a2", "10.0.0.12", "ready"), ("web", "a3", "10.0.0.13", "maint", 5),
              ("web", "other", "10.0.0.99", "ready"))


def test_runtime_as_the_file_says_has_no_problem():
    r = haproxy_runtime(HA_NAMES, RUN_OK, CONF, HA_HV, CTX)
    assert r["problems"] == [] and r["unfinished"] == [] and r["names"] == HA_NAMES
    # maintenance from the file (CMAINT, `disabled` on the server or a default-server) survives a reload
    assert r["runtime_only"] == []
    assert r["forced"] == {"web/a1": "ready", "api/a1": "ready", "web/a2": "ready", "web/a3": "maint"}


def test_runtime_only_maintenance_and_drain_are_named_for_every_server():
    run = _run(("web", "a1", "10.0.0.11", "ready"), ("api", "a1", "10.0.0.11", "ready"),
               ("web", "a2", "10.0.0.12", "maint"), ("web", "a3", "10.0.0.13", "maint", 5),
               ("web", "other", "10.0.0.99", "drain"))
    assert haproxy_runtime(HA_NAMES, run, CONF, HA_HV)["runtime_only"] == ["web/a2 (maint)", "web/other (drain)"]


def test_a_server_the_file_names_but_haproxy_does_not_run_is_a_problem():
    run = [x for x in RUN_OK if x["backend"] != "api"]
    r = haproxy_runtime(HA_NAMES, run, CONF, HA_HV, CTX)
    assert r["problems"] == [
        "load balancer lb1: /etc/haproxy/haproxy.cfg line 20 names server api/a1 for app1, but HAProxy does not "
        "run it (runtime API): reload HAProxy so that it runs the file on disk"]


def test_a_server_in_a_conditional_block_haproxy_did_not_take_is_not_a_problem_unless_it_is_all_there_is():
    conf = CONF + _conf(("web", "a2b", "10.0.0.12", 30, True))
    r = haproxy_runtime(dict(HA_NAMES, app2=["web/a2", "web/a2b"]), RUN_OK, conf, HA_HV, CTX)
    assert r["problems"] == [] and r["names"]["app2"] == ["web/a2"]
    conf = [c for c in CONF if c["server"] != "a2"] + _conf(("web", "a2b", "10.0.0.12", 30, True))
    run = [x for x in RUN_OK if x["server"] != "a2"]
    r = haproxy_runtime(dict(HA_NAMES, app2=["web/a2b"]), run, conf, HA_HV, CTX)
    assert r["problems"] == ["load balancer lb1: app2: HAProxy runs none of its servers (web/a2b): each is in a "
                             "conditional block HAProxy did not take"]


def test_runtime_address_that_is_none_of_the_hosts_is_a_problem_its_other_address_is_unfinished():
    run = _run(("web", "a1", "fd00::11", "ready"), ("api", "a1", "10.0.0.11", "ready"),
               ("web", "a2", "10.0.0.77", "ready"), ("web", "a3", "10.0.0.13", "drain"))
    r = haproxy_runtime(HA_NAMES, run, CONF, HA_HV, {"host": "lb1"})
    assert len(r["problems"]) == 1
    assert "HAProxy runs server web/a2 (app2) at 10.0.0.77:80, but haproxy.cfg line 11 says 10.0.0.12:80" \
        in r["problems"][0]
    # app1: moved at run time by an earlier run, not yet in the file; app3: left drained
    assert r["unfinished"] == ["app1", "app3"]


def test_a_server_haproxy_runs_at_a_hosts_address_but_the_file_names_otherwise_is_a_problem():
    conf = CONF + [{"backend": "api", "server": "a2", "address": "web2.internal", "raw": "web2.internal:8080",
                    "port": 8080, "line": 40, "conditional": False}]
    run = RUN_OK + _run(("api", "a2", "10.0.0.12", "ready"), ("dyn", "srv1", "10.0.0.13", "ready"))
    r = haproxy_runtime(HA_NAMES, run, conf, HA_HV, CTX)
    assert r["problems"] == [
        "load balancer lb1: HAProxy runs server api/a2 at 10.0.0.12:80, the address of app2, but it is written "
        "web2.internal:8080 on /etc/haproxy/haproxy.cfg line 40: the tool can neither drain it with the host nor "
        "move it; write the host's address on its server line",
        "load balancer lb1: HAProxy runs server dyn/srv1 at 10.0.0.13:80, the address of app3, but it comes from "
        "a server-template or the runtime API, not a server line: the tool can neither drain it with the host "
        "nor move it; write the host's address on its server line"]


def test_drain_leaves_alone_what_its_operator_took_out_before_the_run_or_since():
    assert haproxy_drain(["app1", "app2", "app3"], HA_NAMES) == ["web/a1", "api/a1", "web/a2", "web/a3"]
    # before the first run: web/a3 in maintenance, web/a2 draining; since preflight: api/a1 in maintenance
    assert haproxy_drain(["app1", "app2", "app3"], HA_NAMES, {"web/a3": "maint", "web/a2": "drain"},
                         _run(("api", "a1", "10.0.0.11", "maint"))) == ["web/a1"]
    # drained by an interrupted run of this tool (ready before the first run): drained again
    assert haproxy_drain(["app1"], HA_NAMES, {"web/a1": "ready"}, {"web/a1": "drain"}) == ["web/a1", "api/a1"]
    assert haproxy_drain([], HA_NAMES) == []


def test_enable_moves_each_server_and_gives_back_the_state_its_operator_chose():
    out = haproxy_enable(["app1", "app2", "app3"], HA_HV, HA_NAMES, {"web/a2": "maint"}, {"api/a1": "maint"})
    assert out == [
        {"host": "app1", "server": "web/a1", "address": "fd00::11", "state": "ready"},
        # put in maintenance since preflight: it stays there
        {"host": "app1", "server": "api/a1", "address": "fd00::11", "state": "maint"},
        # not dual-stack: IPv4, and kept in the maintenance its operator set before the run
        {"host": "app2", "server": "web/a2", "address": "10.0.0.12", "state": "maint"},
        # dual-stack, but a rule that trusts the balancer has no IPv6 twin: IPv4
        {"host": "app3", "server": "web/a3", "address": "10.0.0.13", "state": "ready"}]
    # draining before the first run: still draining; left drained by an interrupted run: ready again
    out = haproxy_enable(["app2"], HA_HV, HA_NAMES, {"web/a2": "drain"}, {"web/a2": "drain"})
    assert out[0]["state"] == "drain"
    out = haproxy_enable(["app2"], HA_HV, HA_NAMES, {"web/a2": "ready"}, {"web/a2": "drain"})
    assert out[0]["state"] == "ready"
    # rollback.yml: IPv4 for everyone
    assert [x["address"] for x in haproxy_enable(["app1"], HA_HV, HA_NAMES, None, None, False)] == ["10.0.0.11"] * 2


def test_haproxy_old_workers_are_those_of_before_the_reload_still_alive():
    # as ps shows master-worker HAProxy (Debian's unit, -Ws) before and after a reload
    before = ("    1     0 /sbin/init\n  288     1 /usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid\n"
              " 1235   288 /usr/sbin/haproxy -sf 309 -x sockpair@3 -Ws -f /etc/haproxy/haproxy.cfg\n"
              " 1300     1 /usr/bin/python3 haproxy-exporter\n")
    now = ("  288     1 /usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid\n"
           " 1235   288 /usr/sbin/haproxy -sf 309 -x sockpair@3 -Ws -f /etc/haproxy/haproxy.cfg\n"
           " 1993   288 /usr/sbin/haproxy -sf 1235 -x sockpair@4 -Ws -f /etc/haproxy/haproxy.cfg\n")
    from dsr_lb import haproxy_old_workers
    assert haproxy_old_workers(before, now) == [1235]
    gone = now.replace(" 1235   288 /usr/sbin/haproxy -sf 309 -x sockpair@3 -Ws -f /etc/haproxy/haproxy.cfg\n", "")
    assert haproxy_old_workers(before, gone) == []
    assert haproxy_old_workers("", now) == []
