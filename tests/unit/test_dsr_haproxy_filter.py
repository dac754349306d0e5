"""HAProxy's configuration (plugins/filter/dsr_haproxy_cfg.py): bind lines,
server lines and the dual-stack plan, judged by HAProxy itself.

The corpus (tests/corpus/haproxy/*, sources in its README) holds one
haproxy.cfg per case and a case.yml with the expected binds, servers, added
lines, problems and notes. Every case also proves: only whole lines were
inserted (every other byte kept), a second plan adds nothing, and
`haproxy -c` accepts the result (and refuses the original where case.yml
says HAProxy 2.x refuses it, a case the plan must stop on). A planned config
is started for real to show that each `bind :::PORT v6only` twin listens on
IPv6 only, beside the IPv4 socket, and answers a request over ::1.

The server edit (dsr_haproxy_server_edit) is checked on a table of lines
(only the edited lines differ, a second edit changes nothing, IPv6 and back
gives the original bytes), on its refusals, and by `haproxy -c` on the
edited configurations (inline ones and corpus ones).

`python tests/unit/test_dsr_haproxy_filter.py CASE` prints a case's actual
result in case.yml's form (to review by hand, never to paste unread).
"""
import difflib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from http.client import HTTPConnection, HTTPSConnection

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import dsr_haproxy_cfg as dh  # noqa: E402  (plugins/filter is on the test path)
from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_ss  # noqa: E402

CORPUS = os.path.join(ROOT, "tests", "corpus", "haproxy")
CASES = sorted(d for d in os.listdir(CORPUS) if os.path.isfile(os.path.join(CORPUS, d, "case.yml")))
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
OPENSSL = shutil.which("openssl")
NO_HAPROXY = ("haproxy is not installed on this controller: scripts/ensure-test-tools.sh installs Debian's "
              "package (`apt-get install haproxy`, never started); `haproxy -c` and the live checks skip")
CTX = {"path": "haproxy.cfg"}


# --- the grammar -------------------------------------------------------------------------------------

@pytest.mark.parametrize("line,words", [
    ("    bind :80", ["bind", ":80"]),
    ("\tbind\t*:8080\tname \"clear text\"", ["bind", "*:8080", "name", "clear text"]),
    ("global#the global section", ["global"]),
    ("    bind :8081 name clear\\ 2#comment", ["bind", ":8081", "name", "clear 2"]),
    ("    http-request set-header X-Note \"a # inside quotes\"", ["http-request", "set-header", "X-Note",
                                                               "a # inside quotes"]),
    ("    log-format '%{+Q}o %t'\\ %s", ["log-format", "%{+Q}o %t %s"]),
    ("    x \\x41\\#\\\\", ["x", "A#\\"]),
    ("# all comment", []),
])
def test_words_are_cut_as_haproxy_cuts_them(line, words):
    got, error = dh.tokenize(line)
    assert error is None and [w["value"] for w in got] == words


def test_environment_variables_only_count_inside_double_quotes():
    got, _ = dh.tokenize('    bind "${ADDR}:80" $NOT:81 \'${NOR}\':82')
    assert [w["env"] for w in got] == [False, True, False, False]
    assert dh.tokenize('bind "unterminated')[1] == "unterminated double quote"


@pytest.mark.parametrize("word,family,host,port,wildcard", [
    (":80", "ipv4", "0.0.0.0", "80", True),
    ("*:80", "ipv4", "0.0.0.0", "80", True),
    ("0.0.0.0:80", "ipv4", "0.0.0.0", "80", True),
    (":::80", "ipv6", "::", "80", True),
    ("[::]:443", "ipv6", "::", "443", True),
    ("ipv4@:80", "ipv4", "0.0.0.0", "80", True),
    ("ipv6@:80", "ipv6", "::", "80", True),
    ("tcp6@[2001:db8::1]:80", "ipv6", "2001:db8::1", "80", False),
    ("::1:8404", "ipv6", "::1", "8404", False),
    ("10.0.0.1:10080", "ipv4", "10.0.0.1", "10080", False),
    (":8100-8102", "ipv4", "0.0.0.0", "8100-8102", True),
    ("unix@/run/x.sock", "unix", "/run/x.sock", None, False),
    ("/run/x.sock", "unix", "/run/x.sock", None, False),
    ("abns@name", "abns", "name", None, False),
    ("fd@3", "fd", "3", None, False),
    ("sockpair@4", "sockpair", "4", None, False),
    ("localhost:80", "name", "localhost", "80", False),
])
def test_address_forms(word, family, host, port, wildcard):
    a = dh.parse_address(word)
    assert (a["family"], a["host"], a["port"], a["wildcard"], a["error"]) == (family, host, port, wildcard, None)


def test_address_errors_and_transports():
    assert dh.parse_address("ipv4@::1:80")["error"] == "the prefix ipv4@ says ipv4, the address is ipv6"
    assert dh.parse_address("foo@:80")["error"] == "unknown address prefix foo@"
    assert dh.parse_address("quic4@:443")["transport"] == "quic"
    assert dh.parse_address("udp@:514")["transport"] == "dgram"
    assert dh.parse_address("${X}:80", env=True)["family"] == "env"
    assert dh.parse_address("web1.example.com:+1000", server=True)["port"] == "+1000"
    # An IPv6 address without brackets ends at its last colon: HAProxy takes `13` for the port.
    assert dh.parse_address("ipv6@2001:db8::13", server=True)["error"] == (
        "ipv6@2001:db8::13: HAProxy takes the number after the last colon as the port, which leaves 2001:db8:, "
        "no address (write [IPv6]:port)")
    assert dh.parse_address("[2001:db8::13]", server=True)["host"] == "2001:db8::13"


def test_lines_the_plan_refuses():
    cfg = ("frontend f\n    bind 10.0.0.1\n    bind \"unterminated :80\n    bind\n    bind ipv4@[::1]:80\n"
           "backend b\n    bind :81\n")
    assert dh.dualstack_plan(cfg, {"10.0.0.1": ["2001:db8::1"]}, CTX)["problems"] == [
        "haproxy.cfg line 2: cannot give it an IPv6 twin safely (10.0.0.1 has no port): bind 10.0.0.1",
        "haproxy.cfg line 3: unterminated double quote: bind \"unterminated :80",
        "haproxy.cfg line 4: bind without an address: bind",
        "haproxy.cfg line 5: cannot give it an IPv6 twin safely (the prefix ipv4@ says ipv4, the address is ipv6): "
        "bind ipv4@[::1]:80"]


BRIEF = """\
global
    stats socket /run/haproxy/admin.sock mode 660 level admin
defaults
    mode http
frontend a
    bind :80
    bind *:80
    bind 0.0.0.0:80,0.0.0.0:81
listen b
    bind :::80 v4v6
    bind [::]:443 ssl crt /etc/haproxy/site.pem
    bind ipv4@:80
    bind ipv6@:80
    bind unix@/run/b.sock
    bind "fd@${FD_B}"
"""


def test_binds_of_every_form_with_section_line_and_family():
    got = [(b["section"], b["line"], [(a["address"], a["family"]) for a in b["addresses"]], b["options"])
           for b in dh.binds(BRIEF)]
    assert got == [
        ("frontend a", 6, [(":80", "ipv4")], []),
        ("frontend a", 7, [("*:80", "ipv4")], []),
        ("frontend a", 8, [("0.0.0.0:80", "ipv4"), ("0.0.0.0:81", "ipv4")], []),
        ("listen b", 10, [(":::80", "ipv6")], ["v4v6"]),
        ("listen b", 11, [("[::]:443", "ipv6")], ["ssl", "crt", "/etc/haproxy/site.pem"]),
        ("listen b", 12, [("ipv4@:80", "ipv4")], []),
        ("listen b", 13, [("ipv6@:80", "ipv6")], []),
        ("listen b", 14, [("unix@/run/b.sock", "unix")], []),
        ("listen b", 15, [("fd@${FD_B}", "fd")], []),
    ]
    dual = dh.binds(BRIEF)[3]["addresses"][0]
    assert dual["covers_ipv4"] is True
    plain = dh.binds("frontend x\n    bind :::80\n    bind :::81 v6only\n")
    assert [b["addresses"][0]["covers_ipv4"] for b in plain] == [None, False]


def test_the_plan_copies_options_and_drops_what_a_twin_cannot_share():
    cfg = ("frontend pub\n"
           "    bind :443 name secure id 7 ssl crt \"/etc/haproxy/my site.pem\" alpn h2,http/1.1 v4v6 # tls\n"
           "    bind 127.0.0.1:8404 name stats\n")
    plan = dh.dualstack_plan(cfg, ctx=CTX)
    assert plan["added"] == [
        {"after": 2, "section": "frontend pub",
         "line": 'bind :::443 v6only name secure ssl crt "/etc/haproxy/my site.pem" alpn h2,http/1.1'},
        {"after": 3, "section": "frontend pub", "line": "bind [::1]:8404 name stats"}]
    assert plan["problems"] == [] and plan["text"].count("\n") == 5
    assert [(l["address"], l["port"], l["added"]) for l in plan["listens"]] == [("::", 443, True),
                                                                              ("::1", 8404, True)]


def test_the_plan_keeps_indentation_and_crlf():
    cfg = "frontend pub\r\n\t\tbind :80\r\n    default_backend app\r\n"
    plan = dh.dualstack_plan(cfg)
    assert plan["text"] == "frontend pub\r\n\t\tbind :80\r\n\t\tbind :::80 v6only\r\n    default_backend app\r\n"
    assert plan["edits"] == [{"after": 2, "insert": "\t\tbind :::80 v6only\r\n"}]


def test_specific_addresses_need_their_interface_s_ipv6_address():
    cfg = "listen l\n    bind 192.0.2.5:80,192.0.2.6:80\n"
    plan = dh.dualstack_plan(cfg, {"192.0.2.5": ["2001:DB8::5"]}, CTX)
    assert plan["added"] == [] and plan["text"] == cfg
    assert plan["problems"] == [
        "haproxy.cfg line 2: cannot give it an IPv6 twin safely (192.0.2.6 is a specific IPv4 address and the "
        "IPv6 address of its interface is not known): bind 192.0.2.5:80,192.0.2.6:80"]
    plan = dh.dualstack_plan(cfg, {"192.0.2.5": ["2001:db8::5"], "192.0.2.6": ["2001:db8::6", "2001:db8::7"]})
    assert [a["line"] for a in plan["added"]] == ["bind [2001:db8::5]:80,[2001:db8::6]:80"]


def test_server_lines_and_the_host_map():
    cfg = ("backend app\n    server web1 192.0.2.11:80 check\n    server web2 [2001:db8::12]:80\n"
           "    server-template web 3 app.example.com:80\n    default-server inter 2s\n"
           "peers p\n    server lb1 192.0.2.1:10000\n"
           "listen l\n    server web3 192.0.2.13\n")
    got = [(s["backend"], s["server"], s["address"], s["port"], s["family"], s["template"])
           for s in dh.servers(cfg)]
    assert got == [("app", "web1", "192.0.2.11", "80", "ipv4", False),
                   ("app", "web2", "2001:db8::12", "80", "ipv6", False),
                   ("app", "web", "app.example.com", "80", "name", True),
                   ("l", "web3", "192.0.2.13", None, "ipv4", False)]
    hostvars = {"a1": {"dsr_lb_address": "192.0.2.11"}, "a2": {"dsr_lb_address": "192.0.2.99",
                                                                "dsr_lb_address6": "2001:DB8::12"}}
    assert dh.server_names(cfg, ["a1", "a2"], hostvars) == {"a1": ["app/web1"], "a2": ["app/web2"]}
    with pytest.raises(dh.AnsibleFilterError) as e:
        dh.server_names(dh.servers(cfg), ["a1", "a3"], dict(hostvars, a3={"dsr_lb_address": "192.0.2.50"}))
    assert str(e.value) == "HAProxy's configuration has no server line for a3 (192.0.2.50)"


def test_filter_module():
    assert sorted(dh.FilterModule().filters()) == [
        "dsr_haproxy_dualstack_plan", "dsr_haproxy_server_edit",
        "dsr_haproxy_server_edit_problems", "dsr_haproxy_server_names", "dsr_haproxy_servers",
        "dsr_haproxy_source_problems"]


# --- the corpus --------------------------------------------------------------------------------------

def load(case):
    with open(os.path.join(CORPUS, case, "case.yml")) as f:
        meta = yaml.safe_load(f)
    with open(os.path.join(CORPUS, case, "haproxy.cfg"), "rb") as f:
        text = f.read().decode("utf-8")
    return meta, text


def run(meta, text):
    return dh.dualstack_plan(text, meta.get("interfaces") or {}, CTX)


def compact(text, plan):
    binds = []
    for b in dh.binds(text):
        if b["error"]:
            binds.append("%d %s: error %s" % (b["line"], b["section"], b["error"]))
            continue
        addrs = ", ".join("%s %s%s" % (a["address"], a["family"], "*" if a["wildcard"] else "")
                          for a in b["addresses"])
        binds.append("%d %s: %s%s" % (b["line"], b["section"], "(section line) " if b["header"] else "", addrs))
    return {
        "binds": binds,
        "servers": ["%s/%s %s" % (s["backend"], s["server"], _server_addr(s)) for s in dh.servers(text)],
        "added": ["%d: %s" % (a["after"], a["line"]) for a in plan["added"]],
        "problems": plan["problems"], "notes": plan["notes"],
    }


def _server_addr(s):
    if s["family"] in ("ipv4", "ipv6", "name"):
        host = "[%s]" % s["address"] if s["family"] == "ipv6" else s["address"]
        return host + (":%s" % s["port"] if s["port"] else "")
    return "%s (%s)" % (s["raw"], s["family"])


def test_corpus_is_large_enough():
    assert len(CASES) >= 18


@pytest.mark.parametrize("case", CASES)
def test_expected_plan(case):
    meta, text = load(case)
    got = compact(text, run(meta, text))
    exp = meta["expected"]
    assert got["binds"] == (exp.get("binds") or [])
    assert got["servers"] == (exp.get("servers") or [])
    assert got["added"] == (exp.get("added") or [])
    for kind in ("problems", "notes"):
        want = exp.get(kind) or []
        assert len(got[kind]) == len(want), got[kind]
        for g, w in zip(got[kind], want):
            assert g.startswith(w), (g, w)
    if meta.get("haproxy_c") == "refused":
        assert got["problems"], "HAProxy refuses this configuration: the plan must stop on it"


@pytest.mark.parametrize("case", CASES)
def test_only_whole_lines_are_inserted_and_a_second_plan_adds_nothing(case):
    meta, text = load(case)
    plan = run(meta, text)
    a, b = text.splitlines(True), plan["text"].splitlines(True)
    inserted = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 == len(a) and i2 - i1 == 1 and not text.endswith("\n"):
            # The last line has no LF: it gets one, and the twin follows it.
            assert b[j1].rstrip("\r\n") == a[i1], (a[i1], b[j1])
            inserted.extend(x.strip() for x in b[j1 + 1:j2])
            continue
        assert tag == "insert", (tag, a[i1:i2], b[j1:j2])
        inserted.extend(x.strip() for x in b[j1:j2])
    assert inserted == [x["line"] for x in plan["added"]]
    again = run(meta, plan["text"])
    assert again["added"] == [] and again["text"] == plan["text"]


def _cert(tmp_path):
    pem = tmp_path / "cert.pem"
    if not pem.exists():
        if not OPENSSL:
            pytest.skip("openssl is not installed: no certificate for the TLS binds")
        key, crt = tmp_path / "key.pem", tmp_path / "crt.pem"
        subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(crt), "-days", "30", "-subj", "/CN=localhost"], check=True, capture_output=True)
        pem.write_bytes(crt.read_bytes() + key.read_bytes())
    return str(pem)


def _dhparam(tmp_path):
    out = tmp_path / "dhparam.pem"
    if not OPENSSL:
        pytest.skip("openssl is not installed: no DH parameters")
    if not out.exists():
        subprocess.run([OPENSSL, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "dh_param:ffdhe2048",
                        "-out", str(out)], check=True, capture_output=True)
    return str(out)


def _errorfile(tmp_path):
    out = tmp_path / "503.http"
    out.write_bytes(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nno server\n")
    return str(out)


def haproxy_check(meta, text, tmp_path):
    """`haproxy -c` on `text`, with the files case.yml names made in a scratch directory
    (absolute paths rewritten there, relative ones made beside the configuration)."""
    work = tmp_path / "etc"
    work.mkdir(exist_ok=True)
    for path, kind in sorted((meta.get("files") or {}).items()):
        made = {"cert": _cert, "dhparam": _dhparam, "errorfile": _errorfile}[kind](tmp_path)
        if os.path.isabs(path):
            local = str(work / path.strip("/").replace("/", "_").replace("<", "").replace(">", "")
                        .replace("+", "_"))
            text = text.replace(path, local)
        else:
            local = str(work / path)
        shutil.copyfile(made, local)
    cfg = work / "haproxy.cfg"
    cfg.write_bytes(text.encode("utf-8"))
    env = dict(os.environ, **{k: str(v) for k, v in (meta.get("env") or {}).items()})
    fds, socks = [], []
    for name in meta.get("fds") or []:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        fds.append(s.fileno())
        env[name] = str(s.fileno())
    try:
        r = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, cwd=str(work),
                           env=env, pass_fds=fds, timeout=60)
    finally:
        for s in socks:
            s.close()
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("case", CASES)
def test_haproxy_accepts_the_result(case, tmp_path):
    if not HAPROXY:
        pytest.skip(NO_HAPROXY)
    meta, text = load(case)
    plan = run(meta, text)
    rc, out = haproxy_check(meta, text, tmp_path)
    if meta.get("haproxy_c") == "refused":
        assert rc != 0, "HAProxy accepts the original after all: %s" % out
        assert meta["haproxy_c_why"] in out
        return
    assert rc == 0, out
    rc, out = haproxy_check(meta, plan["text"], tmp_path)
    assert rc == 0, out
    assert "WARNING" not in out or case in ("kubeadm-ha-apiserver", "octopi-v4v6"), out


# --- a planned configuration, running ---------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """{"0.0.0.0", "[::]", "*", "[::1]", ...}: the local addresses `ss` lists for TCP port `port`
    (`[::]` is an IPv6-only socket, `*` a dual-stack one)."""
    out = subprocess.run(["ss", "-ltnH", "sport", "= :%d" % port], capture_output=True, text=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


def tcp6_ports():
    ports = set()
    with open("/proc/net/tcp6") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":
                ports.add((local.split(":")[0], int(local.split(":")[1], 16)))
    return ports


LIVE = """\
global
    stats socket {dir}/admin.sock mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend public
    bind :{p1}
    bind *:{p2} ssl crt {cert} alpn h2,http/1.1
    http-request return status 200 content-type text/plain lf-string "public %[dst]"

frontend stats
    bind 127.0.0.1:{p3} name stats
    http-request return status 200 content-type text/plain lf-string "stats %[dst]"
"""


def test_the_planned_twins_listen_and_answer_over_ipv6(tmp_path):
    if not HAPROXY:
        pytest.skip(NO_HAPROXY)
    if not shutil.which("ss"):
        pytest.skip("ss (iproute2) is not installed: the listening sockets cannot be read")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 on loopback here")
    p1, p2, p3 = free_port(), free_port(), free_port()
    text = LIVE.format(dir=tmp_path, p1=p1, p2=p2, p3=p3, cert=_cert(tmp_path))
    plan = dh.dualstack_plan(text, ctx=CTX)
    assert [a["line"] for a in plan["added"]] == [
        "bind :::%d v6only" % p1, "bind :::%d v6only ssl crt %s alpn h2,http/1.1" % (p2, _cert(tmp_path)),
        "bind [::1]:%d name stats" % p3]
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(plan["text"])
    assert subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True).returncode == 0
    log = open(str(tmp_path / "haproxy.log"), "w")
    proc = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while not os.path.exists(str(tmp_path / "admin.sock")):
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "haproxy.log").read_text()
            time.sleep(0.05)
        # Each wildcard twin is an IPv6-only socket beside the IPv4 one (ss lists a dual-stack one as `*`).
        assert listening(p1) == {"0.0.0.0", "[::]"}
        assert listening(p2) == {"0.0.0.0", "[::]"}
        assert listening(p3) == {"127.0.0.1", "[::1]"}
        # The plan's listens are what the rollout's own listener check
        # (dsr_listener_check on ss -ltne) must find after the reload.
        ss = [subprocess.run(["ss"] + args, capture_output=True, text=True).stdout for args in (["-V"], ["-ltne"])]
        assert dsr_ss.listener_check(dsr_ss.parse_ss(ss[1], ss[0]), plan["listens"]) == []
        v6 = tcp6_ports()
        assert ("0" * 32, p1) in v6 and ("0" * 32, p2) in v6 and ("0" * 24 + "01000000", p3) in v6
        for host in ("127.0.0.1", "::1"):
            conn = HTTPConnection(host, p1, timeout=5)
            conn.request("GET", "/")
            assert conn.getresponse().read().decode() == "public %s" % host
            conn.close()
            tls = HTTPSConnection(host, p2, timeout=5, context=ssl._create_unverified_context())
            tls.request("GET", "/")
            assert tls.getresponse().read().decode() == "public %s" % host
            tls.close()
            conn = HTTPConnection(host, p3, timeout=5)
            conn.request("GET", "/")
            assert conn.getresponse().read().decode() == "stats %s" % host
            conn.close()
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


# --- editing server addresses ------------------------------------------------------------------------

B = "backend app\n"

# (id, configuration, changes, the configuration expected)
EDITS = [
    ("ipv4-to-ipv6-with-options", B + "    server web1 192.0.2.11:80 check inter 2s\n", {"app/web1": "2001:db8::11"},
     B + "    server web1 [2001:db8::11]:80 check inter 2s\n"),
    ("ipv6-to-ipv4", B + "    server web2 [2001:db8::12]:80 check\n", {"app/web2": "192.0.2.12"},
     B + "    server web2 192.0.2.12:80 check\n"),
    ("ipv6-to-ipv6", B + "    server web2 [2001:db8::12]:80\n", {"app/web2": "2001:db8::99"},
     B + "    server web2 [2001:db8::99]:80\n"),
    ("ipv4-to-ipv4", B + "    server web1 192.0.2.11:80\n", {"app/web1": "198.51.100.11"},
     B + "    server web1 198.51.100.11:80\n"),
    ("no-port-ipv4-to-ipv6", B + "    server web3 192.0.2.13\n", {"app/web3": "2001:db8::13"},
     B + "    server web3 [2001:db8::13]\n"),
    ("no-port-ipv6-to-ipv4-with-prefix", B + "    server web3 ipv6@[2001:db8::13] check port 80\n",
     {"app/web3": "192.0.2.13"}, B + "    server web3 ipv4@192.0.2.13 check port 80\n"),
    ("prefix-ipv4-to-ipv6", B + "    server web1 ipv4@192.0.2.11:80 check\n", {"app/web1": "2001:db8::11"},
     B + "    server web1 ipv6@[2001:db8::11]:80 check\n"),
    ("prefix-tcp4-stream", B + "    server a tcp4@192.0.2.11:80\n    server b stream+ipv4@192.0.2.12:80\n"
     "    server c ip@192.0.2.13:80\n", {"app/a": "2001:db8::a", "app/b": "2001:db8::b", "app/c": "2001:db8::c"},
     B + "    server a tcp6@[2001:db8::a]:80\n    server b stream+ipv6@[2001:db8::b]:80\n"
     "    server c ip@[2001:db8::c]:80\n"),
    ("unbracketed-ipv6-with-port", B + "    server web2 2001:db8::12:80 check\n", {"app/web2": "192.0.2.12"},
     B + "    server web2 192.0.2.12:80 check\n"),
    ("bracketed-ipv4", B + "    server web1 [192.0.2.11]:80\n", {"app/web1": "2001:db8::11"},
     B + "    server web1 [2001:db8::11]:80\n"),
    ("compressed-lowercase-form", B + "    server web1 192.0.2.11:80\n", {"app/web1": "2001:DB8:0:0::11"},
     B + "    server web1 [2001:db8::11]:80\n"),
    ("crlf", "backend app\r\n    server web1 192.0.2.11:80 check\r\n    server web2 192.0.2.12:80 check\r\n",
     {"app/web1": "2001:db8::11"},
     "backend app\r\n    server web1 [2001:db8::11]:80 check\r\n    server web2 192.0.2.12:80 check\r\n"),
    ("tabs", "backend app\n\tserver\tweb1\t192.0.2.11:80\t\tcheck\t# tabs\n", {"app/web1": "2001:db8::11"},
     "backend app\n\tserver\tweb1\t[2001:db8::11]:80\t\tcheck\t# tabs\n"),
    ("comment-right-after-the-address", B + "    server web1 192.0.2.11:80# the old one\n",
     {"app/web1": "2001:db8::11"}, B + "    server web1 [2001:db8::11]:80# the old one\n"),
    ("comment-with-an-address-inside", B + "    server web1 192.0.2.11:80 check # was 192.0.2.11:80\n",
     {"app/web1": "2001:db8::11"}, B + "    server web1 [2001:db8::11]:80 check # was 192.0.2.11:80\n"),
    ("quoted-word", B + "    server web1 \"192.0.2.11:80\" check\n    server web2 '192.0.2.12'\n",
     {"app/web1": "2001:db8::11", "app/web2": "2001:db8::12"},
     B + "    server web1 \"[2001:db8::11]:80\" check\n    server web2 '[2001:db8::12]'\n"),
    ("one-of-several-backends", "backend a\n    server web1 192.0.2.11:80\nbackend b\n    server web1 192.0.2.11:80\n"
     "listen c\n    bind :8080\n    server web1 192.0.2.11:80\n", {"b/web1": "2001:db8::11"},
     "backend a\n    server web1 192.0.2.11:80\nbackend b\n    server web1 [2001:db8::11]:80\n"
     "listen c\n    bind :8080\n    server web1 192.0.2.11:80\n"),
    ("listen-section", "listen l\n    bind :80\n    server web1 192.0.2.11:80\n", {"l/web1": "2001:db8::11"},
     "listen l\n    bind :80\n    server web1 [2001:db8::11]:80\n"),
    ("inside-an-if-block", B + ".if defined(CANARY)\n    server web1 192.0.2.11:80\n.endif\n",
     {"app/web1": "2001:db8::11"}, B + ".if defined(CANARY)\n    server web1 [2001:db8::11]:80\n.endif\n"),
    ("several-at-once", B + "    server web1 192.0.2.11:80\n    server web2 192.0.2.12:80\n"
     "    server web3 192.0.2.13:80\n", {"app/web3": "2001:db8::13", "app/web1": "2001:db8::11"},
     B + "    server web1 [2001:db8::11]:80\n    server web2 192.0.2.12:80\n    server web3 [2001:db8::13]:80\n"),
    ("no-final-newline", B + "    server web1 192.0.2.11:80", {"app/web1": "2001:db8::11"},
     B + "    server web1 [2001:db8::11]:80"),
    ("already-there-written-otherwise", B + "    server web1 [0:0::1]:80\n    server web2 192.0.2.12:80\n",
     {"app/web1": "::1", "app/web2": "192.0.2.12"}, B + "    server web1 [0:0::1]:80\n    server web2 192.0.2.12:80\n"),
    ("nothing-to-change", B + "    server web1 192.0.2.11:80\n", {}, B + "    server web1 192.0.2.11:80\n"),
    ("the-rest-of-the-file-stays", "global\n    daemon\n\ndefaults\n    mode http\n# server web1 192.0.2.11:80\n"
     "frontend f\n    bind :80\n    default_backend app\n" + B + "    default-server inter 3s\n"
     "    server web1 192.0.2.11:80 check\n    server-template dyn 2 app.example.com:80\n"
     "    http-request set-header X-Web1 192.0.2.11:80\n", {"app/web1": "2001:db8::11"},
     "global\n    daemon\n\ndefaults\n    mode http\n# server web1 192.0.2.11:80\n"
     "frontend f\n    bind :80\n    default_backend app\n" + B + "    default-server inter 3s\n"
     "    server web1 [2001:db8::11]:80 check\n    server-template dyn 2 app.example.com:80\n"
     "    http-request set-header X-Web1 192.0.2.11:80\n"),
]


def changed_lines(before, after):
    """The numbers of the lines that differ; the two texts must have as many lines."""
    a, b = before.splitlines(True), after.splitlines(True)
    assert len(a) == len(b), (a, b)
    return [i + 1 for i, (x, y) in enumerate(zip(a, b)) if x != y]


@pytest.mark.parametrize("cfg,changes,want", [c[1:] for c in EDITS], ids=[c[0] for c in EDITS])
def test_server_edit(cfg, changes, want):
    got = dh.server_edit(cfg, changes, CTX)
    assert got == want
    # Only the edited servers' lines differ, and each of them only in its address word.
    edited = sorted(s["line"] for s in dh.servers(cfg) if "%s/%s" % (s["backend"], s["server"]) in changes)
    assert set(changed_lines(cfg, got)) <= set(edited)
    for n in changed_lines(cfg, got):
        old, new = cfg.splitlines(True)[n - 1], got.splitlines(True)[n - 1]
        ow, nw = dh.tokenize(old.rstrip("\r\n"))[0], dh.tokenize(new.rstrip("\r\n"))[0]
        assert [w["raw"] for i, w in enumerate(ow) if i != 2] == [w["raw"] for i, w in enumerate(nw) if i != 2]
    # The servers now have the new addresses, with the same ports.
    after = dict(("%s/%s" % (s["backend"], s["server"]), s) for s in dh.servers(got))
    before = dict(("%s/%s" % (s["backend"], s["server"]), s) for s in dh.servers(cfg))
    for name, address in changes.items():
        assert dh._same(after[name]["address"], address) and after[name]["error"] is None
        assert after[name]["port"] == before[name]["port"]
    # A second edit changes nothing.
    assert dh.server_edit(got, changes, CTX) == got


def _canonical(s):
    """Whether server `s`'s address is written as the edit writes it: IPv4 bare, IPv6 compressed in brackets."""
    host = s["raw"].split("@")[-1]
    host = host[:host.index("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0] if s["port"] else host
    return host == ("[%s]" % s["address"] if s["family"] == "ipv6" else s["address"])


@pytest.mark.parametrize("cfg,changes,want", [c[1:] for c in EDITS if c[2]], ids=[c[0] for c in EDITS if c[2]])
def test_server_edit_round_trip_gives_the_original_bytes(cfg, changes, want):
    named = [s for s in dh.servers(cfg) if "%s/%s" % (s["backend"], s["server"]) in changes]
    back = dict(("%s/%s" % (s["backend"], s["server"]), s["address"]) for s in named)
    there = dict(("%s/%s" % (s["backend"], s["server"]),
                  "2001:db8::ff%d" % i if s["family"] == "ipv4" else "203.0.113.%d" % (i + 1))
                 for i, s in enumerate(named))
    moved = dh.server_edit(cfg, there, CTX)
    assert changed_lines(cfg, moved) == [s["line"] for s in named]
    restored = dh.server_edit(moved, back, CTX)
    # Written otherwise than the edit writes (no brackets around IPv6, brackets around IPv4, 0:0::1), a
    # line comes back with the same address in the edit's form; every other line byte for byte.
    assert changed_lines(cfg, restored) == [s["line"] for s in named if not _canonical(s)]
    assert [(s["address"], s["port"]) for s in dh.servers(restored)] == [(s["address"], s["port"])
                                                                          for s in dh.servers(cfg)]
    if all(_canonical(s) for s in named):
        assert restored == cfg


def test_ipv4_to_ipv6_and_back_is_the_original_byte_for_byte():
    cfg = ("global\r\n    daemon\r\n" + "backend app\r\n\tserver web1 ipv4@192.0.2.11:80 check\tinter 2s # w1\r\n"
           "    server web2 192.0.2.12 weight 5\r\n    server web3 \"192.0.2.13:8080\"#q\r\n")
    v6 = dh.server_edit(cfg, {"app/web1": "2001:db8::11", "app/web2": "2001:db8::12", "app/web3": "::1"})
    assert changed_lines(cfg, v6) == [4, 5, 6]
    assert v6.splitlines(True)[3:] == ["\tserver web1 ipv6@[2001:db8::11]:80 check\tinter 2s # w1\r\n",
                                       "    server web2 [2001:db8::12] weight 5\r\n",
                                       "    server web3 \"[::1]:8080\"#q\r\n"]
    back = dh.server_edit(v6, {"app/web1": "192.0.2.11", "app/web2": "192.0.2.12", "app/web3": "192.0.2.13"})
    assert back == cfg and back.encode() == cfg.encode()


REFUSALS = B + """\
    server web1 192.0.2.11:80 check
    server name1 app1.example.com:80
    server env1 "${WEB_ADDR}:80"
    server off1 192.0.2.21:+1000
    server off2 192.0.2.22:-1
    server range1 192.0.2.23:8000-8002
    server-template dyn 3 192.0.2.30:80
    server sock /run/app.sock
    server any 0.0.0.0
    server bad ipv4@[2001:db8::1]:80
    server esc 192.0.2.11:8\\0
    server twice 192.0.2.41:80
.if defined(CANARY)
    server twice 192.0.2.42:80
.endif
listen l
    bind :8080
"""


@pytest.mark.parametrize("changes,message", [
    ({"app/web9": "2001:db8::1"}, "haproxy.cfg: there is no server app/web9 in a backend or listen section"),
    ({"other/web1": "2001:db8::1"}, "haproxy.cfg: there is no server other/web1 in a backend or listen section"),
    ({"l/web1": "2001:db8::1"}, "haproxy.cfg: there is no server l/web1 in a backend or listen section"),
    ({"app/name1": "2001:db8::1"}, "haproxy.cfg line 3: cannot point app/name1 at 2001:db8::1 (app1.example.com is "
                                   "a host name, not an IP address): server name1 app1.example.com:80"),
    ({"app/env1": "2001:db8::1"}, "haproxy.cfg line 4: cannot point app/env1 at 2001:db8::1 (the address "
                                  "\"${WEB_ADDR}:80\" comes from an environment variable)"),
    ({"app/off1": "2001:db8::1"}, "haproxy.cfg line 5: cannot point app/off1 at 2001:db8::1 (the port +1000 is an "
                                  "offset from the client's port)"),
    ({"app/off2": "2001:db8::1"}, "haproxy.cfg line 6: cannot point app/off2 at 2001:db8::1 (the port -1 is an "
                                  "offset"),
    ({"app/range1": "2001:db8::1"}, "haproxy.cfg line 7: cannot point app/range1 at 2001:db8::1 (cannot read the "
                                    "port of 192.0.2.23:8000-8002)"),
    ({"app/dyn": "2001:db8::1"}, "haproxy.cfg line 8: app/dyn is a server-template, whose addresses are not "
                                 "edited: server-template dyn 3 192.0.2.30:80"),
    ({"app/dyn2": "2001:db8::1"}, "haproxy.cfg line 8: app/dyn2 is made by a server-template"),
    ({"app/sock": "2001:db8::1"}, "haproxy.cfg line 9: cannot point app/sock at 2001:db8::1 (/run/app.sock is not "
                                  "an IP socket)"),
    ({"app/any": "2001:db8::1"}, "haproxy.cfg line 10: cannot point app/any at 2001:db8::1 (0.0.0.0 is the "
                                 "unspecified address"),
    ({"app/bad": "192.0.2.1"}, "haproxy.cfg line 11: cannot point app/bad at 192.0.2.1 (the prefix ipv4@ says "
                               "ipv4, the address is ipv6)"),
    ({"app/esc": "2001:db8::1"}, "haproxy.cfg line 12: cannot point app/esc at 2001:db8::1 (the address word "
                                 "192.0.2.11:8\\0 has quotes or escapes inside)"),
    ({"app/twice": "2001:db8::1"}, "haproxy.cfg line 13: the server app/twice appears 2 times (lines 13, 15): "
                                   "which one to edit is not known"),
    ({"app/web1": "192.0.2.11:80"}, "haproxy.cfg: app/web1: '192.0.2.11:80' is not a bare IPv4 or IPv6 address"),
    ({"app/web1": "[2001:db8::1]"}, "haproxy.cfg: app/web1: '[2001:db8::1]' is not a bare IPv4 or IPv6 address"),
    ({"app/web1": "web1.example.com"}, "haproxy.cfg: app/web1: 'web1.example.com' is not a bare"),
    ({"app/web1": None}, "haproxy.cfg: app/web1: None is not a bare"),
    ({"app/web1": "fe80::1%eth0"}, "haproxy.cfg: app/web1: fe80::1%eth0 has a scope"),
    ({"app/web1": "::"}, "haproxy.cfg: app/web1: :: is the unspecified address"),
    ({"web1": "2001:db8::1"}, "haproxy.cfg: 'web1' is not BACKEND/SERVER"),
    ({"app/web1/x": "2001:db8::1"}, "haproxy.cfg: 'app/web1/x' is not BACKEND/SERVER"),
])
def test_server_edit_refuses(changes, message):
    with pytest.raises(dh.AnsibleFilterError) as e:
        dh.server_edit(REFUSALS, changes, CTX)
    assert str(e.value).startswith("HAProxy's server lines were not edited: " + message), str(e.value)


def test_server_edit_refuses_all_or_nothing_and_names_host_and_file():
    with pytest.raises(dh.AnsibleFilterError) as e:
        dh.server_edit(REFUSALS, {"app/web1": "2001:db8::11", "app/name1": "2001:db8::1", "app/nope": "::1"},
                       {"path": "/etc/haproxy/haproxy.cfg", "host": "lb1"})
    assert str(e.value) == (
        "HAProxy's server lines were not edited: host lb1: /etc/haproxy/haproxy.cfg line 3: cannot point app/name1 "
        "at 2001:db8::1 (app1.example.com is a host name, not an IP address): server name1 app1.example.com:80; "
        "host lb1: /etc/haproxy/haproxy.cfg: there is no server app/nope in a backend or listen section")
    with pytest.raises(dh.AnsibleFilterError) as e:
        dh.server_edit(REFUSALS, [("app/web1", "2001:db8::11")])
    assert "the changes must be a dict" in str(e.value)
    # A server of the same name in a peers section is not a backend's server.
    with pytest.raises(dh.AnsibleFilterError):
        dh.server_edit("peers p\n    server lb1 192.0.2.1:10000\n", {"p/lb1": "2001:db8::1"})
    # The duplicates that are not named do not matter.
    assert dh.server_edit(REFUSALS, {"app/web1": "2001:db8::11"}).count("[2001:db8::11]:80 check") == 1


# --- the edit, judged by haproxy -c --------------------------------------------------------------------

ORACLE = """\
global
    stats socket /tmp/dsr-never-started.sock mode 600 level admin

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend public
    bind 127.0.0.1:8080
    default_backend app

backend app
    balance roundrobin
    server web1 192.0.2.11:80 check inter 2s
    server web2 ipv4@192.0.2.12:80 check
    server web3 192.0.2.13
    server web4 tcp4@192.0.2.14:8080 weight 10
    server web5 "192.0.2.15:80" check
\tserver\tweb6\t192.0.2.16:80# the old one
.if version_atleast(2.4)
    server web7 192.0.2.17:80 check
.endif

listen stats
    bind 127.0.0.1:8404
    server web8 [2001:db8::18]:80 check
    server web9 ipv6@[2001:db8::19] check port 80
    server web10 2001:db8::20:80
    server web11 stream+ipv4@192.0.2.21:80
"""


def _swap(s, i):
    """A documentation address of the other family for server `s`."""
    return "2001:db8::%x" % (0x100 + i) if s["family"] == "ipv4" else "198.51.100.%d" % (i + 1)


def _all_swapped(text):
    return dict(("%s/%s" % (s["backend"], s["server"]), _swap(s, i)) for i, s in enumerate(dh.servers(text))
                if s["family"] in ("ipv4", "ipv6") and not s["template"] and not s["error"]
                and s["address"] not in ("0.0.0.0", "::"))


ORACLE_CASES = ["inline", "inline-crlf", "crlf-comments-quotes", "manual-address-forms", "kubeadm-ha-apiserver",
                "haproxy-example-content-sw-sample", "rhel8-default", "mozilla-ssl-intermediate", "conditional-blocks"]


@pytest.mark.parametrize("case", ORACLE_CASES)
def test_haproxy_accepts_the_edited_servers(case, tmp_path):
    if not HAPROXY:
        pytest.skip(NO_HAPROXY)
    if case.startswith("inline"):
        meta, text = {}, ORACLE.replace("\n", "\r\n") if case.endswith("crlf") else ORACLE
    else:
        meta, text = load(case)
    changes = _all_swapped(text)
    assert changes
    edited = dh.server_edit(text, changes, CTX)
    edited_lines = sorted(s["line"] for s in dh.servers(text) if "%s/%s" % (s["backend"], s["server"]) in changes)
    assert changed_lines(text, edited) == edited_lines
    for s in dh.servers(edited):
        name = "%s/%s" % (s["backend"], s["server"])
        if name in changes:
            assert dh._same(s["address"], changes[name]) and s["error"] is None, s
    rc, out = haproxy_check(meta, text, tmp_path)
    assert rc == 0, out
    rc, out = haproxy_check(meta, edited, tmp_path)
    assert rc == 0 and "Configuration file is valid" in out, out
    # And back: the original addresses, the original bytes.
    back = dict(("%s/%s" % (s["backend"], s["server"]), s["address"]) for s in dh.servers(text)
                if "%s/%s" % (s["backend"], s["server"]) in changes)
    restored = dh.server_edit(edited, back, CTX)
    if case.startswith("inline"):
        # web10 is written `2001:db8::20:80` (no brackets); back, it gets them.
        assert changed_lines(text, restored) == [s["line"] for s in dh.servers(text) if s["server"] == "web10"]
    else:
        assert restored == text
    rc, out = haproxy_check(meta, restored, tmp_path)
    assert rc == 0, out


if __name__ == "__main__":
    name = sys.argv[1]
    m, t = load(name) if os.path.exists(os.path.join(CORPUS, name, "case.yml")) else ({}, open(
        os.path.join(CORPUS, name, "haproxy.cfg")).read())
    print(yaml.safe_dump({"expected": compact(t, run(m, t))}, sort_keys=False, width=200))


# --- sources: an IPv4 `source` cannot reach a server moved to IPv6 -----------------------------------

SRC_NAMES = {"app1": ["app/a1"], "app2": ["app/a2"], "app3": ["other/a3"]}


@pytest.mark.parametrize("case, text, flagged", [
    ("no source anywhere",
     "backend app\n    server a1 10.0.0.11:80\n    server a2 10.0.0.12:80\n", []),
    ("the server's own IPv4 source",
     "backend app\n    server a1 10.0.0.11:80 check source 10.0.0.2\n    server a2 10.0.0.12:80\n", ["app/a1"]),
    ("an IPv6 source is fine",
     "backend app\n    server a1 10.0.0.11:80 source [fd00::2]:0\n", []),
    ("the section's source, wherever it is",
     "backend app\n    server a1 10.0.0.11:80\n    server a2 10.0.0.12:80\n    source 10.0.0.2\n",
     ["app/a1", "app/a2"]),
    ("transparent source (usesrc)",
     "backend app\n    source 0.0.0.0 usesrc clientip\n    server a1 10.0.0.11:80\n", ["app/a1"]),
    ("default-server applies to the servers after it only",
     "backend app\n    server a1 10.0.0.11:80\n    default-server source 10.0.0.2\n    server a2 10.0.0.12:80\n",
     ["app/a2"]),
    ("the server's own IPv6 source wins over the section's",
     "backend app\n    source 10.0.0.2\n    server a1 10.0.0.11:80 source ipv6@fd00::2\n", []),
    ("defaults apply to the proxies after them",
     "defaults\n    source 10.0.0.2\nbackend app\n    server a1 10.0.0.11:80\n", ["app/a1"]),
    ("a later defaults section replaces the earlier one",
     "defaults\n    source 10.0.0.2\ndefaults\n    mode http\nbackend app\n    server a1 10.0.0.11:80\n", []),
    ("defaults' default-server source",
     "defaults\n    default-server source 10.0.0.2 check\nbackend app\n    server a1 10.0.0.11:80\n", ["app/a1"]),
    ("another backend's source is not this one's",
     "backend other\n    source 10.0.0.2\n    server a3 10.0.0.13:80\nbackend app\n    server a1 10.0.0.11:80\n",
     ["other/a3"]),
    ("a defaults default-server source beats the section's source (HAProxy 2.6)",
     "defaults\n    default-server source 10.0.0.2\nbackend app\n    source [fd00::2]\n    server a1 10.0.0.11:80\n",
     ["app/a1"]),
    ("the section's default-server beats the defaults' default-server",
     "defaults\n    default-server source 10.0.0.2\nbackend app\n    default-server source [fd00::2]\n"
     "    server a1 10.0.0.11:80\n", []),
    ("servers of no app host are not judged",
     "backend app\n    source 10.0.0.2\n    server x 10.0.0.99:80\n", []),
])
def test_source_problems(case, text, flagged):
    problems = dh.source_problems(text, SRC_NAMES, {"host": "lb1", "path": "/etc/haproxy/haproxy.cfg"})
    got = sorted(re.search(r"server (\S+) \(host", p).group(1) for p in problems)
    assert got == sorted(flagged), (case, problems)
    for p in problems:
        assert p.startswith("host lb1: /etc/haproxy/haproxy.cfg line ") and "lb_haproxy__ipv6_upstreams: false" in p


def test_the_source_rule_matches_haproxy_itself(tmp_path):
    """HAProxy accepts each form above (haproxy -c), so the rule reads real configurations."""
    if not HAPROXY:
        pytest.skip(NO_HAPROXY)
    text = ("defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n"
            "    default-server source 10.0.0.2\nfrontend f\n    bind 127.0.0.1:%d\n    default_backend app\n"
            "backend app\n    source 0.0.0.0 usesrc clientip\n    server a1 10.0.0.11:80 source [fd00::2]:0\n"
            "    default-server source 10.0.0.3\n    server a2 10.0.0.12:80\n" % free_port())
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    r = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [re.search(r"server (\S+) \(host", p).group(1) for p in dh.source_problems(text, SRC_NAMES)] == ["app/a2"]


def test_server_edit_problems_find_in_preflight_what_the_edit_would_refuse():
    both = (".if defined(A)\n    server web1 10.0.0.11:80\n.else\n    server web1 10.0.0.11:81\n.endif\n")
    text = "backend app\n" + both + "    server web2 web2.internal:80\n    server web3 10.0.0.13:80\n"
    assert dh.server_edit_problems(text, {"h3": ["app/web3"]}) == []
    assert dh.server_edit_problems(text, {}) == []
    (p,) = dh.server_edit_problems(text, {"h1": ["app/web1"]}, {"host": "lb1"})
    assert "app/web1" in p and "2 times" in p
    (p,) = dh.server_edit_problems(text, {"h2": ["app/web2"]}, {"host": "lb1"})
    assert "app/web2" in p
