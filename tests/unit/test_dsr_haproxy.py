"""The HAProxy balancer module (plugins/modules/dsr_haproxy.py), judged by a
real HAProxy: each test talks to an haproxy started here, unprivileged, with
its runtime API sockets in a temporary directory and a backend of two small
Python HTTP servers (one of them also on ::1, for the move to IPv6), one
with a slow endpoint so that a request is in flight while its server drains.

The parsing and the socket protocol are also tested on their own (answers
written as HAProxy writes them, and a fake runtime API for the texts of
older versions), the module runs once for real through `ansible`, and its
functions run under the fleet's Python 2.7 and 3.6 against the same haproxy.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

import pytest

from conftest import pyenv_python

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(ROOT, "plugins", "modules", "dsr_haproxy.py")
import dsr_haproxy as hx  # noqa: E402  (plugins/modules is on the test path)
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
NO_HAPROXY = ("haproxy is not installed on this controller: scripts/ensure-test-tools.sh installs Debian's "
              "package (`apt-get install haproxy`, never started); the tests against a real HAProxy skip")
SLOW = 3.0  # seconds the slow endpoint takes


# --- answers as HAProxy 2.6 writes them -------------------------------------------------------------

HEADER = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,"
          "status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,"
          "type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,"
          "hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,"
          "comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,"
          "agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,"
          "agent_fall,agent_health,addr,cookie,mode,algo,")


def stat_row(**values):
    names = HEADER[2:].split(",")
    return ",".join(values.get(n, "") for n in names)


STAT = "\n".join([
    HEADER,
    stat_row(pxname="fe", svname="FRONTEND", scur="3", status="OPEN", type="0"),
    stat_row(pxname="app", svname="web1", qcur="0", scur="1", status="DRAIN", weight="1", type="2",
             check_status="L7OK", last_chk='"OK, or so"', addr="127.0.0.1:8001"),
    stat_row(pxname="app", svname="web2", qcur="2", scur="0", status="UP", weight="1", type="2",
             addr="[2001:db8::12]:8002"),
    stat_row(pxname="app", svname="BACKEND", scur="1", status="UP", type="1"),
    "", ""])

SERVERS_STATE = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
    "srv_check_addr srv_agent_addr srv_agent_port\n"
    "3 app 1 web1 127.0.0.1 2 8 1 1 4 15 3 4 6 0 0 0 - 8001 - 0 0 - - 0\n"
    "3 app 2 web2 2001:db8::12 2 0 1 1 4 15 3 4 6 0 0 0 - 8002 - 0 0 - - 0\n\n")


def test_csv_fields_are_found_by_their_header_name_and_quotes_are_read():
    rows = hx.parse_stat(STAT)
    assert [r["svname"] for r in rows] == ["FRONTEND", "web1", "web2", "BACKEND"]
    assert rows[1]["last_chk"] == "OK, or so" and rows[1]["addr"] == "127.0.0.1:8001"
    # Columns in another order (a later HAProxy may insert some): found by name all the same.
    names = HEADER[2:].split(",")
    order = list(reversed(names))
    row = dict(zip(names, stat_row(pxname="app", svname="web1", scur="7", type="2").split(",")))
    text = "# " + ",".join(order) + "\n" + ",".join(row[n] for n in order) + "\n"
    assert hx.parse_stat(text)[0]["scur"] == "7"
    assert hx.split_csv('a,"b\nc",d\n') == [["a", "b\nc", "d"]]
    assert hx.split_csv('"x ""y""",z') == [['x "y"', "z"]]


def test_views_join_show_stat_and_show_servers_state():
    views = hx.server_views(hx.parse_stat(STAT), hx.parse_servers_state(SERVERS_STATE))
    assert [(v["backend"], v["server"]) for v in views] == [("app", "web1"), ("app", "web2")]
    w1, w2 = views
    assert (w1["status"], w1["scur"], w1["admin"], w1["forced"], w1["admin_names"]) == ("DRAIN", 1, "drain",
                                                                                       "drain", ["FDRAIN"])
    assert (w1["address"], w1["port"], w1["addr"]) == ("127.0.0.1", 8001, "127.0.0.1:8001")
    assert (w2["address"], w2["port"], w2["addr"], w2["qcur"]) == ("2001:db8::12", 8002, "[2001:db8::12]:8002", 2)
    # HAProxy 1.5 has no `show servers state`: the state comes from show stat's status.
    old = hx.server_views(hx.parse_stat(STAT))
    assert old[0]["admin"] == "drain" and old[0]["admin_flags"] is None and old[1]["port"] == 8002


def test_admin_flags():
    assert hx.admin_state(0x01) == hx.forced_state(0x01) == "maint"
    assert hx.admin_state(0x08) == hx.forced_state(0x08) == "drain"
    assert (hx.admin_state(0x10), hx.forced_state(0x10)) == ("drain", "ready")   # inherited from a tracked server
    assert (hx.admin_state(0x04), hx.forced_state(0x04)) == ("ready", "ready")   # `disabled`, put back since
    assert (hx.admin_state(0x05), hx.forced_state(0x05)) == ("maint", "maint")   # `disabled`, as configured
    assert hx.admin_names(0x29) == ["FMAINT", "FDRAIN", "RMAINT"]


@pytest.mark.parametrize("kind,text,error", [
    ("state", "\n", None),
    ("state", "No such server.\n\n", "No such server."),
    ("state", "[3]: No such server.\n\n", "No such server."),
    ("state", "[err]: No such backend.\n\n", "No such backend."),
    ("state", "Permission denied\n\n", "Permission denied"),
    ("state", "Require 'admin' level.\n", "Require 'admin' level."),
    ("state", "Unknown command. Please enter one of the following commands only :\n  help\n",
     "Unknown command. Please enter one of the following commands only :\n  help"),
    ("addr", "IP changed from '127.0.0.1' to '::1', port changed from '8001' to '8003' by 'stats socket command'\n\n",
     None),
    ("addr", "[4]: no need to change the addr, port changed from '8001' to '8003' by 'stats socket command'\n", None),
    ("addr", "[warning]: Invalid addr 'zz' by 'stats socket command'\n\n",
     "Invalid addr 'zz' by 'stats socket command'"),
    ("addr", "", "(an empty answer)"),
    ("show stat", STAT, None),
    ("show stat", "Permission denied\n", "Permission denied"),
    ("show servers state", SERVERS_STATE, None),
    ("show servers state", "Unknown command.\n", "Unknown command."),
    ("show info", "Name: HAProxy\nVersion: 2.6.12\n", None),
])
def test_runtime_api_answers(kind, text, error):
    assert hx.answer_error(kind, text) == error


def test_wait_idle_polls_until_idle_and_times_out_naming_each_server():
    now = [0.0]
    reads = iter([{"app/a": {"scur": 2, "qcur": 0}, "app/b": {"scur": 0, "qcur": 1}},
                  {"app/a": {"scur": 1, "qcur": 0}, "app/b": {"scur": 0, "qcur": 0}},
                  {"app/a": {"scur": 0, "qcur": 0}, "app/b": {"scur": 0, "qcur": 0}}])

    def sleep(s):
        now[0] += s
    views, waited = hx.wait_idle(lambda: next(reads), ["app/a", "app/b"], 10, 0.5, clock=lambda: now[0],
                                 sleep=sleep)
    assert waited == 1.0 and views["app/a"]["scur"] == 0
    busy = {"app/a": {"scur": 3, "qcur": 0}, "app/b": {"scur": 0, "qcur": 1}}
    now[0] = 0.0
    with pytest.raises(hx.Busy) as e:
        hx.wait_idle(lambda: busy, ["app/a", "app/b"], 2, 0.5, clock=lambda: now[0], sleep=sleep)
    assert str(e.value) == "still busy after 2 s of drain: app/a scur=3, app/b scur=0 qcur=1"
    assert now[0] == 2.0


def test_plan_orders_the_move_and_the_state():
    views = {"app/w": {"forced": "drain", "address": "127.0.0.1", "port": 8001}}
    assert hx.plan(views, ["app/w"], "ready", "2001:db8:0::11", 8001) == [
        "set server app/w addr 2001:db8::11 port 8001", "set server app/w state ready"]
    assert hx.plan(views, ["app/w"], "maint", "127.0.0.1") == ["set server app/w state maint"]
    assert hx.plan(views, ["app/w"], "drain", None, 8002) == ["set server app/w addr 127.0.0.1 port 8002"]
    assert hx.plan(views, ["app/w"], "drain") == []


@pytest.mark.parametrize("params,message", [
    ({"state": "read", "servers": ["a/b"], "address": "::1"}, "need state drain, ready or maint"),
    ({"state": "ready", "servers": ["a/b", "a/c"], "address": "::1"}, "move one server"),
    ({"state": "ready", "servers": ["a/b"], "address": "web1.example.com"}, "not an IPv4 or IPv6 address"),
    ({"state": "ready", "servers": ["a/b"], "port": 0}, "not a TCP port"),
    ({"state": "ready", "servers": ["a/b"], "wait_idle": True}, "wait_idle waits after a drain"),
    ({"state": "drain", "servers": []}, "needs the servers to change"),
    ({"state": "drain", "servers": ["a/b"], "wait_idle": True, "interval": 0}, "interval more than 0"),
])
def test_arguments_that_cannot_work_fail_before_any_connection(params, message, tmp_path):
    with pytest.raises(hx.ModuleFailure) as e:
        hx.run(dict(params, socket=str(tmp_path / "none.sock")))
    assert message in e.value.msg


def test_a_missing_socket_is_named(tmp_path):
    with pytest.raises(hx.ModuleFailure) as e:
        hx.run({"socket": str(tmp_path / "admin.sock")})
    assert e.value.msg.startswith("there is no socket %s" % (tmp_path / "admin.sock"))


class FakeApi(object):
    """A runtime API socket that answers each command with a canned text (an older HAProxy's)."""

    def __init__(self, path, answers):
        self.path, self.answers, self.seen = path, answers, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                cmd = data.decode().strip()
                self.seen.append(cmd)
                answer = self.answers.get(cmd)
                if answer is None:
                    answer = next((v for k, v in self.answers.items() if cmd.startswith(k)), "Unknown command.\n")
                conn.sendall(answer.encode())

    def close(self):
        self.sock.close()


def test_older_haproxy_texts_become_failures_and_15_is_read_without_show_servers_state(tmp_path):
    path = str(tmp_path / "old.sock")
    api = FakeApi(path, {
        "show info": "Name: HAProxy\nVersion: 1.5.18\n",
        "show stat": STAT,
        "show servers state": "Unknown command. Please enter one of the following commands only :\n",
        "set server": "Require 'admin' level.\n",
    })
    try:
        r = hx.run({"socket": path, "servers": ["app/web2"]})
        assert r["version"] == "1.5.18" and r["servers"][0]["admin"] == "ready" and r["servers"][0]["port"] == 8002
        with pytest.raises(hx.ModuleFailure) as e:
            hx.run({"socket": path, "servers": ["app/web2"], "state": "drain"})
        assert e.value.msg == ("HAProxy refused `set server app/web2 state drain` on %s: Require 'admin' level."
                               % path)
        assert e.value.result["commands"] == [] and not e.value.result["changed"]
    finally:
        api.close()


def test_an_answer_that_is_no_csv_is_an_error(tmp_path):
    path = str(tmp_path / "odd.sock")
    api = FakeApi(path, {"show info": "Name: HAProxy\nVersion: 2.6\n", "show stat": "Permission denied\n"})
    try:
        with pytest.raises(hx.ModuleFailure) as e:
            hx.run({"socket": path})
        assert e.value.msg == "HAProxy refused `show stat` on %s: Permission denied" % path
    finally:
        api.close()


# --- a real HAProxy ----------------------------------------------------------------------------------

class ThreadingServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True


class ThreadingServer6(ThreadingServer):
    address_family = socket.AF_INET6


def app_server(name, cls=ThreadingServer, host="127.0.0.1"):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/slow"):
                time.sleep(SLOW)
            body = json.dumps({"server": name, "client": self.client_address[0]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    srv = cls((host, 0), Handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Balancer(object):
    pass


@pytest.fixture(scope="module")
def lb(tmp_path_factory):
    if not HAPROXY:
        pytest.skip(NO_HAPROXY)
    d = tmp_path_factory.mktemp("haproxy")
    b = Balancer()
    b.web1, b.web2 = app_server("web1"), app_server("web2")
    b.web1v6 = app_server("web1-over-ipv6", ThreadingServer6, "::1")
    b.p1, b.p2, b.p6 = b.web1.server_address[1], b.web2.server_address[1], b.web1v6.server_address[1]
    b.front = free_port()
    b.admin, b.operator = str(d / "admin.sock"), str(d / "operator.sock")
    cfg = d / "haproxy.cfg"
    cfg.write_text(textwrap.dedent("""\
        global
            stats socket {admin} mode 600 level admin
            stats socket {operator} mode 600 level operator
            stats timeout 30s

        defaults
            mode http
            timeout connect 2s
            timeout client 30s
            timeout server 30s

        frontend fe
            bind 127.0.0.1:{front}
            default_backend app

        backend app
            balance roundrobin
            server web1 127.0.0.1:{p1}
            server web2 127.0.0.1:{p2}
        """).format(admin=b.admin, operator=b.operator, front=b.front, p1=b.p1, p2=b.p2))
    log = open(str(d / "haproxy.log"), "w")
    b.proc = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while True:
        try:
            hx.send(b.admin, "show info", 2)
            break
        except hx.RuntimeApiError:
            if b.proc.poll() is not None or time.time() > deadline:
                log.close()
                pytest.fail("haproxy did not start: %s" % (d / "haproxy.log").read_text())
            time.sleep(0.05)
    yield b
    b.proc.terminate()
    b.proc.wait(10)
    log.close()
    for srv in (b.web1, b.web2, b.web1v6):
        srv.shutdown()
        srv.server_close()


def reset(lb):
    """Both servers ready on their first addresses (set directly, not through the module)."""
    for name, port in (("web1", lb.p1), ("web2", lb.p2)):
        hx.command(lb.admin, "set server app/%s addr 127.0.0.1 port %d" % (name, port), "addr")
        hx.command(lb.admin, "set server app/%s state ready" % name, "state")


def get(lb, path="/"):
    conn = HTTPConnection("127.0.0.1", lb.front, timeout=SLOW + 10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read().decode() or "{}")
    finally:
        conn.close()


def run(lb, **params):
    params.setdefault("socket", lb.admin)
    return hx.run(params)


def one(result):
    assert len(result["servers"]) == 1
    return result["servers"][0]


def in_flight(lb):
    """Start a slow request that web1 answers (web2 in maint meanwhile); wait until HAProxy counts it."""
    hx.command(lb.admin, "set server app/web2 state maint", "state")
    out = {}
    t = threading.Thread(target=lambda: out.update(answer=get(lb, "/slow")))
    t.start()
    deadline = time.time() + 5
    while one(run(lb, servers=["app/web1"]))["scur"] != 1:
        assert time.time() < deadline, "the slow request never reached web1"
        time.sleep(0.02)
    hx.command(lb.admin, "set server app/web2 state ready", "state")
    return t, out


def test_read_every_server(lb):
    reset(lb)
    r = run(lb)
    assert not r["changed"] and r["commands"] == [] and r["version"].startswith("2.")
    assert [(v["backend"], v["server"], v["addr"], v["admin"], v["scur"]) for v in r["servers"]] == [
        ("app", "web1", "127.0.0.1:%d" % lb.p1, "ready", 0), ("app", "web2", "127.0.0.1:%d" % lb.p2, "ready", 0)]
    assert r["servers"][0]["status"] == "no check" and r["servers"][0]["weight"] == 1


def test_drain_keeps_the_request_in_flight_and_wait_idle_waits_for_it(lb):
    reset(lb)
    t, out = in_flight(lb)
    start = time.time()
    r = run(lb, servers=["app/web1"], state="drain")
    assert r["changed"] and r["commands"] == ["set server app/web1 state drain"]
    assert one(r)["status"] == "DRAIN" and one(r)["admin"] == "drain" and one(r)["scur"] == 1
    assert r["before"][0]["admin"] == "ready"
    v = one(run(lb, servers=["app/web1"], state="read"))
    assert (v["status"], v["scur"], v["admin"], v["admin_names"]) == ("DRAIN", 1, "drain", ["FDRAIN"])
    # New requests go to the other server only; the one in flight stays on web1.
    assert {get(lb)[1]["server"] for _ in range(4)} == {"web2"}
    # Out of time: the failure names the server and its sessions.
    with pytest.raises(hx.ModuleFailure) as e:
        run(lb, servers=["app/web1"], state="drain", wait_idle=True, timeout=1, interval=0.1)
    assert e.value.msg == "still busy after 1 s of drain: app/web1 scur=1"
    assert not e.value.result["changed"] and e.value.result["servers"][0]["scur"] == 1
    # Time enough: it returns once the request is answered.
    r = run(lb, servers=["app/web1"], state="drain", wait_idle=True, timeout=SLOW + 10, interval=0.1)
    assert not r["changed"] and one(r)["scur"] == 0 and 0 < r["waited"] < SLOW + 1
    assert time.time() - start >= SLOW - 0.5
    t.join(5)
    assert out["answer"] == (200, {"server": "web1", "client": "127.0.0.1"})
    # ready puts it back, once.
    r = run(lb, servers=["app/web1"], state="ready")
    assert r["changed"] and r["commands"] == ["set server app/web1 state ready"]
    assert one(r)["status"] == "no check" and one(r)["admin"] == "ready"
    assert {get(lb)[1]["server"] for _ in range(4)} == {"web1", "web2"}
    assert not run(lb, servers=["app/web1"], state="ready")["changed"]


def test_maint_and_check_mode(lb):
    reset(lb)
    r = hx.run({"socket": lb.admin, "servers": ["app/web2"], "state": "maint"}, check_mode=True)
    assert r["changed"] and r["commands"] == ["set server app/web2 state maint"]
    assert one(run(lb, servers=["app/web2"]))["admin"] == "ready"  # check mode changed nothing
    r = run(lb, servers=["app/web2"], state="maint")
    assert r["changed"] and one(r)["status"] == "MAINT" and one(r)["admin_names"] == ["FMAINT"]
    assert {get(lb)[1]["server"] for _ in range(3)} == {"web1"}
    r = run(lb, servers=["app/web2"], state="drain")
    assert r["commands"] == ["set server app/web2 state drain"] and one(r)["admin_names"] == ["FDRAIN"]
    reset(lb)


def test_move_to_ipv6_and_back(lb):
    reset(lb)
    run(lb, servers=["app/web1"], state="drain")
    r = run(lb, servers=["app/web1"], state="ready", address="::1", port=lb.p6)
    assert r["changed"] and r["commands"] == ["set server app/web1 addr ::1 port %d" % lb.p6,
                                              "set server app/web1 state ready"]
    assert (one(r)["address"], one(r)["port"], one(r)["addr"]) == ("::1", lb.p6, "[::1]:%d" % lb.p6)
    rows = hx.parse_servers_state(hx.send(lb.admin, "show servers state app"))
    row = [x for x in rows if x["srv_name"] == "web1"][0]
    assert (row["srv_addr"], row["srv_port"]) == ("::1", str(lb.p6))
    # The balancer now reaches web1 over IPv6: the app sees it come from ::1.
    answers = [get(lb)[1] for _ in range(4)]
    assert {"server": "web1-over-ipv6", "client": "::1"} in answers
    assert not run(lb, servers=["app/web1"], state="ready", address="0:0::1", port=lb.p6)["changed"]
    # Rollback: back on IPv4.
    r = run(lb, servers=["app/web1"], state="ready", address="127.0.0.1", port=lb.p1)
    assert r["commands"] == ["set server app/web1 addr 127.0.0.1 port %d" % lb.p1]
    assert one(r)["addr"] == "127.0.0.1:%d" % lb.p1
    assert {get(lb)[1]["server"] for _ in range(4)} == {"web1", "web2"}


def test_an_unknown_name_fails_before_any_change_listing_what_exists(lb):
    reset(lb)
    with pytest.raises(hx.ModuleFailure) as e:
        run(lb, servers=["app/web1", "app/web9"], state="drain")
    assert e.value.msg == "backend app has no server web9; its servers: web1, web2"
    assert one(run(lb, servers=["app/web1"]))["admin"] == "ready"
    with pytest.raises(hx.ModuleFailure) as e:
        run(lb, servers=["www/web1"])
    assert e.value.msg == "HAProxy has no backend www (for server web1); backends with servers: app"
    with pytest.raises(hx.ModuleFailure) as e:
        run(lb, servers=["web1"])
    assert e.value.msg == "'web1' is not BACKEND/SERVER"


def test_an_operator_level_socket_reads_but_its_refusal_is_a_failure(lb):
    reset(lb)
    assert one(run(lb, socket=lb.operator, servers=["app/web1"]))["admin"] == "ready"
    with pytest.raises(hx.ModuleFailure) as e:
        run(lb, socket=lb.operator, servers=["app/web1"], state="drain")
    assert e.value.msg == "HAProxy refused `set server app/web1 state drain` on %s: Permission denied" % lb.operator
    assert one(run(lb, servers=["app/web1"]))["admin"] == "ready"


def test_haproxy_s_own_refusals_keep_its_text(lb):
    reset(lb)
    with pytest.raises(hx.RuntimeApiError) as e:
        hx.command(lb.admin, "set server app/web1 addr zz", "addr")
    assert str(e.value) == ("HAProxy refused `set server app/web1 addr zz` on %s: Invalid addr 'zz' by "
                            "'stats socket command'" % lb.admin)
    with pytest.raises(hx.RuntimeApiError) as e:
        hx.command(lb.admin, "set server app/web1 state sleepy", "state")
    assert "'set server <srv> state' expects 'ready', 'drain' and 'maint'" in str(e.value)
    with pytest.raises(hx.RuntimeApiError) as e:
        hx.command(lb.admin, "show servers statez", "show servers state")
    assert "Unknown command" in str(e.value)


def ansible(args, check=False):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local",
           "-i", "localhost,", "-M", "plugins/modules", "-m", "dsr_haproxy", "-a", json.dumps(args),
           "-e", "ansible_python_interpreter=%s" % sys.executable] + (["--check"] if check else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    out = json.loads(r.stdout)
    return r.returncode, out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_the_module_through_ansible(lb):
    reset(lb)
    rc, res = ansible({"socket": lb.admin, "servers": ["app/web1"], "state": "read"})
    assert rc == 0 and not res["changed"]
    assert [(v["server"], v["addr"], v["admin"]) for v in res["servers"]] == [
        ("web1", "127.0.0.1:%d" % lb.p1, "ready")]
    rc, res = ansible({"socket": lb.admin, "servers": ["app/web1"], "state": "drain"}, check=True)
    assert rc == 0 and res["changed"] and res["commands"] == ["set server app/web1 state drain"]
    assert one(run(lb, servers=["app/web1"]))["admin"] == "ready"
    rc, res = ansible({"socket": lb.admin, "servers": ["app/nope"], "state": "drain"})
    assert rc != 0 and res["failed"] and res["msg"] == "backend app has no server nope; its servers: web1, web2"




FLEET_PY = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, %r)
    import dsr_haproxy as hx
    sock = sys.argv[1]
    out = [hx.run({"socket": sock, "servers": ["app/web2"], "state": "drain"})["commands"],
           hx.run({"socket": sock, "servers": ["app/web2"]})["servers"][0]["status"],
           hx.run({"socket": sock, "servers": ["app/web2"], "state": "ready"})["servers"][0]["admin"]]
    try:
        hx.run({"socket": sock, "servers": ["app/web7"]})
    except hx.ModuleFailure as e:
        out.append(e.msg)
    print(json.dumps(out))
""")


@pytest.mark.parametrize("version,exe", [("2.7.18", "python2.7"), ("3.6.15", "python3.6")])
def test_the_fleet_s_python_talks_to_haproxy(version, exe, lb, tmp_path):
    py = pyenv_python(version, exe)
    r = subprocess.run([py, "-c", "import py_compile, sys; py_compile.compile(sys.argv[1], sys.argv[2], doraise=True)",
                        MODULE, str(tmp_path / "dsr_haproxy.pyc")], capture_output=True, text=True,
                       env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    reset(lb)
    r = subprocess.run([py, "-c", FLEET_PY % os.path.dirname(MODULE), lb.admin], capture_output=True, text=True,
                       cwd=str(tmp_path), env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [["set server app/web2 state drain"], "DRAIN", "ready",
                                    "backend app has no server web7; its servers: web1, web2"]
