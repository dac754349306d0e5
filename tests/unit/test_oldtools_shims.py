"""The old-tools shims of the py36 image (images/shims, README there).

The image is Debian 12 (iproute2 6.1, systemd 252) made to answer like a
CentOS 7 / Debian 9 host: `ip` without -j, `systemd-analyze` without
cat-config, `ss` printing listening TCP sockets as iproute2 4.9 does. Here
the shims run from their files against this machine's real /usr/bin tools.

ss: a child process (its name set to "gunicorn: maste", as setproctitle
does) opens listening sockets on 127.0.0.1, 0.0.0.0, [::] with v6only 0 and
1, ::1 and ::ffff:127.0.0.1; this machine's /usr/bin/ss lists them (-4 and
-6), the shim's renderer lays them out as 4.9, and the project's parser must
read the same listeners from both texts. The renderer must also give the
4.9 captures of tests/corpus/oldtools byte for byte from render_ss.py's
socket list.
"""
import ast
import glob
import importlib.machinery
import importlib.util
import os
import shutil
import socket
import subprocess
import sys

import pytest

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import parse_ss, ss_format
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_sysctl import sysctl_d_command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIMS = os.path.join(ROOT, "images", "shims")
CORPUS = os.path.join(ROOT, "tests", "corpus", "oldtools")
NEW_V = "ss utility, iproute2-6.1.0"
OLD_V = "ss utility, iproute2-ss161212"
REAL_SS, REAL_IP, REAL_SA = "/usr/bin/ss", "/usr/bin/ip", "/usr/bin/systemd-analyze"


def load_ss_shim():
    path = os.path.join(SHIMS, "ss")
    loader = importlib.machinery.SourceFileLoader("dsr_oldtools_ss_shim", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


shim = load_ss_shim()


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, **kw)


def need(path):
    if not os.access(path, os.X_OK):
        pytest.skip("%s is not on this machine" % path)


# -- ss: the renderer against the 4.9 captures -------------------------------

def render_ss_socks():
    """SOCKS of tests/corpus/oldtools/render_ss.py (which prints when imported)."""
    with open(os.path.join(CORPUS, "render_ss.py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SOCKS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("no SOCKS in render_ss.py")


@pytest.mark.parametrize("name,with_p", [("ss-ltnpe-iproute2-4.9-debian9.txt", True),
                                         ("ss-ltne-iproute2-4.9-debian9.txt", False)])
def test_renderer_gives_the_4_9_captures_byte_for_byte(name, with_p):
    socks = []
    for n, (a, port, peer, backlog, uid, ino, users, v6only) in enumerate(render_ss_socks()):
        family = 6 if peer == "::" else 4
        socks.append({
            "state": "LISTEN", "rq": 0, "wq": backlog, "family": family,
            "local": "0.0.0.0" if a == "*" else a, "port": port, "iface": None,
            "peer": "::" if family == 6 else "0.0.0.0", "peer_port": "*",
            "users": [tuple(u) for u in users] if with_p else None,
            "uid": uid, "ino": ino, "sk": "%x" % (0x1a + n), "fwmark": None, "v6only": v6only,
            "shutdown": "<->"})
    with open(os.path.join(CORPUS, name)) as f:
        assert shim.render(socks) == f.read()


def test_widths_of_an_80_column_pipe_and_of_terminals():
    assert shim.widths(80) == (10, 7, 18)
    assert shim.widths(120) == (10, 27, 18)
    assert shim.widths(81) == (11, 7, 18)  # an odd width goes to the State column


def test_header_and_no_header():
    assert shim.render([]) == ("State      Recv-Q Send-Q Local Address:Port               "
                               "Peer Address:Port              \n")
    assert shim.render([], header=False) == ""


def test_setproctitle_capture_keeps_the_name_with_a_space():
    with open(os.path.join(CORPUS, "ss-ltnpe-iproute2-6.1-setproctitle.txt")) as f:
        modern = f.read()
    old = shim.convert(modern, "")
    assert old.splitlines()[1] == (
        'LISTEN     0      1      127.0.0.1:18765                    *:*                   '
        'users:(("gunicorn: maste",pid=9285,fd=3)) ino:301036 sk:54 <->')
    assert parse_ss(old, OLD_V)[0]["processes"] == parse_ss(modern, NEW_V)[0]["processes"]


def test_modern_addresses_with_interfaces():
    modern4 = "LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:* ino:1 sk:1 cgroup:/system.slice/x.service <->\n"
    modern6 = "LISTEN 0 5 [fe80::1]%eth0:8080 [::]:* ino:2 sk:2 cgroup:/ v6only:1 <->\n"
    old = shim.convert(modern4, modern6, header=False).splitlines()
    assert old[0].split()[3] == "127.0.0.53%lo:53" and "cgroup" not in old[0]
    assert old[1].split()[3:5] == ["fe80::1%eth0:8080", ":::*"]
    ls = parse_ss("\n".join(old), OLD_V)
    assert [(l["address"], l["interface"], l["v6only"]) for l in ls] == [
        ("127.0.0.53", "lo", None), ("fe80::1", "eth0", 1)]


@pytest.mark.parametrize("args,flags", [
    (["-ltnpe"], {"listen", "tcp", "numeric", "processes", "extended"}),
    (["-l", "-t", "-n", "-H"], {"listen", "tcp", "numeric", "no_header"}),
    (["-tln", "-e", "-6"], {"listen", "tcp", "numeric", "extended", "ipv6"}),
    (["--listening", "--tcp", "--numeric", "--processes"], {"listen", "tcp", "numeric", "processes"}),
    (["-V"], {"version"}),
    (["-lxn"], None), (["-ltn", "sport", "=", ":80"], None), (["-ltnpei"], None), (["-ltp"], None),
    (["-atn"], None), (["-ltun"], None),
])
def test_which_command_lines_the_shim_answers(args, flags):
    assert shim.parse_args(args) == flags


# -- ss: real sockets, this machine's ss -------------------------------------

CHILD = r"""
import socket, sys
with open("/proc/self/comm", "w") as f:
    f.write("gunicorn: maste")
socks = []
def listen(family, host, v6only=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind((host, 0))
    s.listen(7)
    socks.append(s)
listen(socket.AF_INET, "127.0.0.1")
listen(socket.AF_INET, "0.0.0.0")
listen(socket.AF_INET6, "::", 0)
listen(socket.AF_INET6, "::", 1)
listen(socket.AF_INET6, "::1", 1)
listen(socket.AF_INET6, "::ffff:127.0.0.1", 0)
print(" ".join(str(s.getsockname()[1]) for s in socks))
sys.stdout.flush()
sys.stdin.read()
"""
# (address as the parser gives it, family, v6only, accepts) of CHILD's sockets
EXPECTED = [("127.0.0.1", 4, None, [4]), ("0.0.0.0", 4, None, [4]), ("::", 6, 0, [4, 6]),
            ("::", 6, 1, [6]), ("::1", 6, 1, [6]), ("::ffff:7f00:1", 6, 0, [4])]


@pytest.fixture(scope="module")
def listeners():
    """A child process named "gunicorn: maste" listening on six sockets: (pid, ports)."""
    need(REAL_SS)
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 on this machine")
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         universal_newlines=True)
    try:
        ports = [int(x) for x in p.stdout.readline().split()]
        assert len(ports) == len(EXPECTED)
        yield p.pid, ports
    finally:
        p.stdin.close()
        p.wait(timeout=10)


def ours(listeners_, ports):
    return {(l["address"], l["port"]): l for l in listeners_ if l["port"] in ports}


@pytest.mark.parametrize("flags", ["-ltnpe", "-ltne", "-ltnp", "-ltn"])
def test_renderer_on_a_real_capture_reads_as_the_same_listeners(listeners, flags):
    pid, ports = listeners
    modern4 = run([REAL_SS, flags, "-4"]).stdout
    modern6 = run([REAL_SS, flags, "-6"]).stdout
    old = shim.convert(modern4, modern6)
    assert ss_format(OLD_V) == "old"
    new_ls = parse_ss(modern4 + modern6, NEW_V)
    old_ls = parse_ss(old, OLD_V)
    assert len(old_ls) == len(new_ls)
    for line in old.splitlines()[1:]:
        assert "[" not in line.split()[3] and "cgroup:" not in line
    new, old_ = ours(new_ls, ports), ours(old_ls, ports)
    assert sorted(old_) == sorted(new) == sorted(zip([e[0] for e in EXPECTED], ports))
    for (address, family, v6only, accepts), port in zip(EXPECTED, ports):
        n, o = new[(address, port)], old_[(address, port)]
        for key in ("address", "port", "family", "wildcard", "loopback", "interface", "processes"):
            assert o[key] == n[key], (key, o, n)
        assert o["family"] == family
        if "e" in flags:
            assert (o["v6only"], o["accepts"]) == (n["v6only"], n["accepts"]) == (v6only, accepts)
        else:  # without -e neither old ss nor the old parser can tell v6only of [::]
            assert o["v6only"] is None
        assert o["unit"] is None  # no cgroup: field before iproute2 5.x
        if "p" in flags and n["processes"]:
            assert o["processes"] == [{"name": "gunicorn: maste", "pid": pid, "fd": o["processes"][0]["fd"]}]
    # old ss: `*:P` is the IPv4 wildcard, `:::P` the IPv6 one whatever its v6only
    locals_ = [l.split()[3] for l in old.splitlines()[1:]]
    assert "*:%d" % ports[1] in locals_
    assert ":::%d" % ports[2] in locals_ and ":::%d" % ports[3] in locals_
    assert "::ffff:127.0.0.1:%d" % ports[5] in locals_


def test_the_ss_shim_end_to_end(listeners):
    pid, ports = listeners
    path = os.path.join(SHIMS, "ss")
    r = run([path, "-ltnpe"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == shim.render([]).rstrip("\n")
    v4 = [i for i, l in enumerate(lines[1:]) if not l.split()[3].startswith(":")
          and l.split()[3].count(":") == 1]
    assert v4 == list(range(len(v4)))  # IPv4 first
    ls = ours(parse_ss(r.stdout, run([path, "-V"]).stdout), ports)
    assert ls[("::", ports[2])]["accepts"] == [4, 6] and ls[("::", ports[3])]["accepts"] == [6]
    assert run([path, "-ltnH"]).stdout.splitlines()[0].startswith("LISTEN")
    assert run([path, "-l", "-t", "-n", "-6"]).stdout.count("*:") == 0


def test_ss_version_and_what_goes_to_the_real_ss():
    need(REAL_SS)
    path = os.path.join(SHIMS, "ss")
    assert run([path, "-V"]).stdout == "ss utility, iproute2-ss161212\n"
    filtered = run([path, "-ltn", "sport", "=", ":1"])
    assert filtered.stdout == run([REAL_SS, "-ltn", "sport", "=", ":1"]).stdout  # the new layout
    assert run([path, "-lxn"]).stdout.split("\n", 1)[0].split()[:2] == ["Netid", "State"]


def pyenv_pythons():
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = []
    for minor in ("3.6", "3.13"):
        found += sorted(glob.glob(os.path.join(root, "versions", minor + ".*", "bin", "python" + minor)))[-1:]
    return found


@pytest.mark.parametrize("python", pyenv_pythons() or [None])
def test_the_ss_shim_runs_on_old_and_new_python(python, listeners):
    """The image's /usr/bin/python3 is Debian 12's 3.11; the shim is kept to
    what 3.6 has (and 3.13 still has)."""
    if python is None:
        pytest.skip("no pyenv Python 3.6 or 3.13 on this machine")
    path = os.path.join(SHIMS, "ss")
    r = run([python, path, "-ltnpe"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] and run([python, path, "-V"]).stdout == "ss utility, iproute2-ss161212\n"
    assert sorted(ours(parse_ss(r.stdout, OLD_V), listeners[1])) == sorted(
        zip([e[0] for e in EXPECTED], listeners[1]))


# -- ip ------------------------------------------------------------------------

@pytest.mark.parametrize("args,shown", [
    (["-j", "addr"], "-j"), (["-json", "addr"], "-json"), (["--json", "addr"], "-json"),
    (["-js", "link"], "-js"), (["--j", "addr"], "-j"), (["-o", "-4", "-j", "addr", "show"], "-j"),
    (["-family", "inet6", "-j", "addr"], "-j"), (["-jp", "addr"], "-jp"),
])
def test_ip_has_no_json(args, shown):
    need(REAL_IP)
    r = run([os.path.join(SHIMS, "ip")] + args)
    assert (r.returncode, r.stdout) == (255, "")
    assert r.stderr == 'Option "%s" is unknown, try "ip -help".\n' % shown


@pytest.mark.parametrize("args", [["-o", "addr", "show"], ["-o", "-4", "addr", "show", "scope", "global"],
                                  ["addr", "show", "-j"]])
def test_ip_without_json_is_the_real_ip(args):
    need(REAL_IP)
    r, real = run([os.path.join(SHIMS, "ip")] + args), run([REAL_IP] + args)
    assert (r.returncode, r.stdout, r.stderr) == (real.returncode, real.stdout, real.stderr)
    if args[0] == "-o":
        assert r.returncode == 0 and r.stdout


# -- systemd-analyze -----------------------------------------------------------

@pytest.mark.parametrize("args", [["cat-config", "sysctl.d"], ["cat-config", "sysctl.d", "--root=/"],
                                  ["--no-pager", "cat-config", "sysctl.d"], ["--root", "/", "cat-config"],
                                  ["-H", "host", "cat-config"], ["--", "cat-config"]])
def test_systemd_analyze_has_no_cat_config(args):
    r = run([os.path.join(SHIMS, "systemd-analyze")] + args)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "Unknown operation cat-config.\n")


@pytest.mark.parametrize("args", [["--version"], ["cat-config", "--help"], ["calendar", "2024-01-01 00:00:00 UTC"]])
def test_systemd_analyze_other_verbs_are_the_real_one(args):
    need(REAL_SA)
    r, real = run([os.path.join(SHIMS, "systemd-analyze")] + args), run([REAL_SA] + args)
    assert (r.returncode, r.stdout) == (real.returncode, real.stdout)
    assert r.stdout


def test_the_sysctl_fallback_accepts_the_shims_answer(tmp_path):
    """dsr_sysctl_d_command('auto') lists the files itself when cat-config is unknown."""
    root = tmp_path / "root"
    (root / "etc" / "sysctl.d").mkdir(parents=True)
    (root / "etc" / "sysctl.d" / "60-dualstack-rollout.conf").write_text("net.ipv6.bindv6only = 0\n")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    shutil.copy(os.path.join(SHIMS, "systemd-analyze"), str(bin_ / "systemd-analyze"))
    env = dict(os.environ, PATH=str(bin_) + os.pathsep + os.environ["PATH"])
    auto = run(sysctl_d_command("auto") + ["sh", str(root)], env=env)
    fallback = run(sysctl_d_command("fallback") + ["sh", str(root)])
    assert auto.returncode == 0, auto.stderr
    assert auto.stdout == fallback.stdout and "net.ipv6.bindv6only = 0" in auto.stdout
    assert "(Unknown operation cat-config.)" in auto.stderr
