"""The fleet's real stack after rollout.yml over SSH, then the audit,
rollback.yml, a failed rollout, the same again under sudo's requiretty, and
a rollout and rollback with Mitogen's strategy.

Hosts: Debian 11, Python 2.7.18 as Ansible's and the app's interpreter,
gunicorn 19.9.0 + gevent 1.3.5, Flask 1.1.1, Werkzeug 0.16.0. One host runs
its three services under systemd, the other under supervisord; in each, one
service has its bind in -b flags, one in GUNICORN_CMD_ARGS, one in a -c file.
A third is Debian 12 with CPython 3.6 and the same stack, and the old tools'
behaviour through shims (images/shims). Ansible reaches them all over SSH as
`deploy` with sudo; the tests look at them through Docker.
Every check is a real socket or a real HTTP request from the peer.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest
import testinfra

from conftest import addresses, http_get, url

ROOT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HOSTS = ["dsr-legacy-systemd", "dsr-legacy-supervisor", "dsr-legacy-py36"]
PY27 = ["dsr-legacy-systemd", "dsr-legacy-supervisor"]
PY36 = "dsr-legacy-py36"
PORTS = {8000: "webapp", 8001: "api", 8002: "reports"}
# The scenario's own key and options (molecule.yml) for a direct ssh.
JOURNAL = os.path.join(ROOT, "journal")


def host(name):
    return testinfra.get_host("docker://" + name)


@pytest.fixture(scope="module")
def peer_host():
    return host("dsr-legacy-peer")


def listens(name):
    return set(host(name).check_output("/bin/ss -ltnH | awk '{print $4}'").split())


def recap(output):
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)}


def has_py36():
    return host(PY36).file("/usr/local/bin/python3.6").exists


def python_of(name):
    return "3.6.15" if name == PY36 and has_py36() else "2.7.18"


# This scenario's own report directory: other scenarios may run beside it.
REPORTS = tempfile.mkdtemp(prefix="dsr-legacy-reports-")


def playbook(name, *args, **env_extra):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", **env_extra)
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
           os.path.join(ROOT, name), "-e", "dsr_report_dir=%s" % REPORTS] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)


def test_controller_is_ansible_core_2_16():
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "--version"],
                         capture_output=True, text=True).stdout
    assert re.search(r"core 2\.16\.", out), out


def test_ansible_came_over_ssh_as_deploy_and_used_sudo():
    """sshd logged the deploy user's key logins, sudo the commands it ran as root."""
    for name in HOSTS + ["dsr-legacy-peer"]:
        h = host(name)
        sshd = h.check_output("journalctl --no-pager -q -u ssh.service | grep -c 'Accepted publickey for deploy' || true")
        assert int(sshd) > 0, name
        sudo = h.check_output("journalctl --no-pager -q _COMM=sudo | grep -c 'deploy : .*USER=root' || true")
        assert int(sudo) > 0, name


def test_the_python36_host_has_the_old_tools():
    """What the tool met there (images/shims): no `ip -j`, no cat-config, iproute2 4.9's ss."""
    if not has_py36():
        pytest.skip("this machine has no CPython 3.6 build in pyenv: dsr-legacy-py36 ran the Python 2.7 image")
    h = host(PY36)
    r = h.run("ip -j addr show")
    assert r.rc != 0 and "is unknown" in r.stderr, r
    r = h.run("systemd-analyze cat-config sysctl.d")
    assert r.rc != 0 and "Unknown operation" in r.stderr, r
    assert h.check_output("ss -V") == "ss utility, iproute2-ss161212"
    old = h.check_output("ss -ltn")
    assert "*:8000" in old and ":::8000" in old and "[" not in old, old


@pytest.mark.parametrize("name", HOSTS)
def test_the_stack_is_the_fleets(name):
    """Python 2.7.18 (Debian 11), or CPython 3.6.15 copied onto Debian 12;
    gunicorn 19.9.0, gevent 1.3.5, Flask 1.1.1, Werkzeug 0.16.0 on each."""
    if name == PY36 and not has_py36():
        pytest.skip("this machine has no CPython 3.6 build in pyenv: dsr-legacy-py36 ran the Python 2.7 image")
    h = host(name)
    python = "/usr/local/bin/python3.6" if name == PY36 else "python2.7"
    assert h.check_output("%s -V 2>&1" % python) == "Python " + python_of(name)
    assert h.check_output("/usr/local/bin/gunicorn --version 2>&1") == "gunicorn (version 19.9.0)"
    versions = h.check_output("%s -c 'import gevent, flask, werkzeug; "
                              "print(\"%%s %%s %%s\" %% (gevent.__version__, flask.__version__, werkzeug.__version__))'"
                              % python)
    assert versions == "1.3.5 1.1.1 0.16.0"


def test_supervisord_runs_the_programs():
    status = host("dsr-legacy-supervisor").check_output("supervisorctl status || true")
    for name in PORTS.values():
        assert re.search(r"^%s\s+RUNNING" % name, status, re.M), status


def test_a_stopped_program_stays_stopped_and_its_section_untouched():
    """batch is kept STOPPED by its operator: the migration neither starts it nor rewrites it."""
    h = host("dsr-legacy-supervisor")
    assert re.search(r"^batch\s+STOPPED", h.check_output("supervisorctl status || true"), re.M)
    assert "--bind 0.0.0.0:8003" in h.file("/etc/supervisor/conf.d/batch.conf").content_string
    assert ":8003" not in " ".join(listens("dsr-legacy-supervisor"))


@pytest.mark.parametrize("name", HOSTS)
@pytest.mark.parametrize("port", sorted(PORTS))
def test_every_service_answers_from_the_peer_over_both_families(name, port, peer_host):
    a = addresses(host(name))
    for family in ("ipv4", "ipv6"):
        r = http_get(peer_host, url(a[family][0], port))
        assert r.status == 200, (name, port, family, r)
        j = r.json
        assert j["service"] == PORTS[port]
        assert j["server_software"] == "gunicorn/19.9.0"
        assert j["python"] == python_of(name)
        assert j["socket_module"].startswith("gevent"), j  # gevent workers
        seen_as = addresses(peer_host)[family][0]
        assert j["remote_addr"] in (seen_as, "::ffff:" + seen_as), j


@pytest.mark.parametrize("name", HOSTS)
def test_nginx_keeps_https_over_both_families(name, peer_host):
    """gunicorn 19.9.0 compares forwarded_allow_ips as exact strings: with a dual
    socket nginx's 127.0.0.1 arrives as ::ffff:127.0.0.1 and must be listed."""
    a = addresses(host(name))
    for family in ("ipv4", "ipv6"):
        r = http_get(peer_host, url(a[family][0], 80))
        assert r.status == 200 and r.json["scheme"] == "https", (name, family, r)


def test_sockets_follow_the_strategy():
    sup = listens("dsr-legacy-supervisor")
    for name in ("dsr-legacy-systemd", PY36):
        sysd = listens(name)
        for port in PORTS:
            # separate (default): the IPv4 socket stays, an IPv6 wildcard joins it
            # (v6only=0 under bindv6only=0, beside 0.0.0.0 thanks to reuse_port)
            assert "0.0.0.0:%d" % port in sysd and ("[::]:%d" % port in sysd or "*:%d" % port in sysd), (name, sysd)
    for port in PORTS:
        # dual: one socket answering both families
        assert "*:%d" % port in sup and "0.0.0.0:%d" % port not in sup


@pytest.mark.parametrize("name", HOSTS)
def test_the_snapshot_is_roots_alone(name):
    """Written through sudo: owned by root, the directory 0700, every file 0600."""
    h = host(name)
    assert h.check_output("stat -c '%a %U:%G' /var/lib/dualstack-rollout/snapshot") == "700 root:root"
    modes = set(h.check_output("find /var/lib/dualstack-rollout/snapshot -type f -printf '%m %u:%g\\n'").split("\n"))
    assert modes == {"600 root:root"}, modes
    dirs = set(h.check_output("find /var/lib/dualstack-rollout/snapshot -type d -printf '%m %u:%g\\n'").split("\n"))
    assert dirs == {"700 root:root"}, dirs


def test_the_journal_is_the_controller_users_alone():
    """Written on the controller without sudo: the user running Ansible owns it, 0600."""
    run = sorted(d for d in os.listdir(JOURNAL) if os.path.isdir(os.path.join(JOURNAL, d)))[-1]
    for name in HOSTS:
        st = os.stat(os.path.join(JOURNAL, run, name + ".json"))
        assert (st.st_uid, st.st_mode & 0o777) == (os.getuid(), 0o600), (name, oct(st.st_mode))


BALANCER_LOG = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"), "balancer.log")


def balancer_steps():
    """The steps the operator's balancer tasks (balancer.yml) recorded since
    the last call: [(step, [(host, address), ...]), ...] in order."""
    if not os.path.exists(BALANCER_LOG):
        return []
    with open(BALANCER_LOG) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    os.remove(BALANCER_LOG)
    return [(e["step"], [(t["host"], t["address"]) for t in e["targets"]]) for e in entries]


def by_wave(steps):
    """[(drain, enable, verify)] per wave, checked to come in that order."""
    assert [s for s, _ in steps] == ["drain", "enable", "verify"] * (len(steps) // 3), steps
    return [steps[i:i + 3] for i in range(0, len(steps), 3)]


def fingerprints():
    return {name: host(name).check_output("/usr/local/sbin/dsr-fingerprint") for name in HOSTS}


def test_the_audit_over_ssh_changes_nothing():
    before = fingerprints()
    r = playbook("audit.yml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert fingerprints() == before


def test_rollback_restores_every_byte_and_the_ipv4_listeners(peer_host):
    balancer_steps()
    r = playbook("rollback.yml")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    # The operator's balancer drained each wave, then took it back on IPv4.
    steps = balancer_steps()
    assert [s for s, _ in steps] == ["drain", "enable"] * (len(steps) // 2) and steps, steps
    assert sorted(h for s, t in steps if s == "drain" for h, _ in t) == sorted(HOSTS), steps
    for _, targets in steps[1::2]:
        for h, address in targets:
            assert address == addresses(host(h))["ipv4"][0], (h, address)
    for name in HOSTS:
        h = host(name)
        assert h.check_output("/usr/local/sbin/dsr-fingerprint") == h.file("/var/tmp/dsr-before.txt").content_string.strip()
        ls = listens(name)
        for port in PORTS:
            assert "0.0.0.0:%d" % port in ls and "[::]:%d" % port not in ls and "*:%d" % port not in ls, ls
        a = addresses(h)
        r4 = http_get(peer_host, url(a["ipv4"][0], 80))
        assert r4.status == 200 and r4.json["scheme"] == "https"
        assert http_get(peer_host, url(a["ipv6"][0], 80)).curl_rc != 0
    assert "RUNNING" in host("dsr-legacy-supervisor").check_output("supervisorctl status webapp")
    assert "STOPPED" in host("dsr-legacy-supervisor").check_output("supervisorctl status batch || true")


def test_second_rollback_changes_nothing():
    r = playbook("rollback.yml")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    changed = {h: c for h, c in recap(out).items() if h in HOSTS}
    assert changed and all(c == 0 for c in changed.values()), changed


def as_before(peer_host):
    """Every host as prepare left it: the same bytes, IPv4-only listeners,
    the programs running, batch still STOPPED, nginx answering on IPv4."""
    for name in HOSTS:
        h = host(name)
        assert h.check_output("/usr/local/sbin/dsr-fingerprint") == h.file("/var/tmp/dsr-before.txt").content_string.strip(), name
        ls = listens(name)
        for port in PORTS:
            assert "0.0.0.0:%d" % port in ls and "[::]:%d" % port not in ls and "*:%d" % port not in ls, (name, ls)
        r4 = http_get(peer_host, url(addresses(h)["ipv4"][0], 80))
        assert r4.status == 200 and r4.json["scheme"] == "https", (name, r4)
    assert "STOPPED" in host("dsr-legacy-supervisor").check_output("supervisorctl status batch || true")


def dual_stack(peer_host):
    for name in HOSTS:
        a = addresses(host(name))
        for port in sorted(PORTS):
            for family in ("ipv4", "ipv6"):
                r = http_get(peer_host, url(a[family][0], port))
                assert r.status == 200 and r.json["service"] == PORTS[port], (name, port, family, r)


def rollout_fails_and_restores(peer_host, **env):
    """A rewrite that moves every service to loopback (dsr_test_sabotage) is
    caught against the host's own before-state and put back, into the
    balancer too: on IPv4, and the run stops after that first wave."""
    balancer_steps()
    r = playbook("rollout.yml", "-e", '{"dsr_test_sabotage": true}', **env)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "no longer listens on 0.0.0.0:8000" in out, out[-3000:]
    as_before(peer_host)
    (drain, enable, _), = by_wave(balancer_steps())
    assert drain[1] == enable[1] and len(drain[1]) == 1, (drain, enable)
    h, address = enable[1][0]
    assert address == addresses(host(h))["ipv4"][0], enable


def test_a_failed_rollout_over_ssh_leaves_every_host_as_before(peer_host):
    rollout_fails_and_restores(peer_host)


# sudo's requiretty: sudo then needs a terminal, which Ansible's ssh
# connection asks for (-tt) only when it does not pipeline.
@pytest.fixture()
def requiretty():
    for name in HOSTS + ["dsr-legacy-peer"]:
        host(name).check_output("echo 'Defaults requiretty' > /etc/sudoers.d/00-requiretty && "
                                "chmod 0440 /etc/sudoers.d/00-requiretty && visudo -c -q")
    yield
    for name in HOSTS + ["dsr-legacy-peer"]:
        host(name).check_output("rm -f /etc/sudoers.d/00-requiretty")


def test_requiretty_with_pipelining_stops_at_the_first_sudo(requiretty):
    """What the tool needs: with requiretty, pipelining off (or
    `Defaults:deploy !requiretty`). With it on, sudo refuses at the first
    task: the rollout stops with sudo's reason and nothing changed; the
    audit reports every host unreadable, with that reason."""
    before = fingerprints()
    r = playbook("rollout.yml")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "you must have a tty to run sudo" in out, out[-3000:]
    assert fingerprints() == before
    r = playbook("audit.yml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    report = sorted(f for f in os.listdir(REPORTS) if f.startswith("audit-") and f.endswith(".json"))[-1]
    with open(os.path.join(REPORTS, report)) as f:
        rows = {h["host"]: h for h in json.load(f)["hosts"]}
    for name in HOSTS:
        assert rows[name]["state"] == "unreadable" and "you must have a tty" in rows[name]["error"], rows[name]


def test_requiretty_without_pipelining_rolls_out_and_back(requiretty, peer_host):
    """(The failing rollout and the audit over SSH run with pipelining
    above; here what requiretty changes: every sudo through a terminal.)"""
    env = {"ANSIBLE_PIPELINING": "False"}
    balancer_steps()
    r = playbook("rollout.yml", **env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    dual_stack(peer_host)
    # Canary, then the waves: each drained on IPv4, back on IPv6 once dual-stack.
    waves = by_wave(balancer_steps())
    assert [len(d[1]) for d, _, _ in waves] == [1, 1, 1], waves
    assert sorted(h for d, _, _ in waves for h, _ in d[1]) == sorted(HOSTS)
    for drain, enable, verify in waves:
        (h, drained_at), = drain[1]
        assert drained_at == addresses(host(h))["ipv4"][0], drain
        assert enable[1] == verify[1] == [(h, addresses(host(h))["ipv6"][0])], (enable, verify)
    r = playbook("rollback.yml", **env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    as_before(peer_host)


def test_mitogen_over_ssh_rolls_out_and_back(peer_host):
    env = {"ANSIBLE_STRATEGY": "mitogen_linear"}
    r = playbook("rollout.yml", **env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    dual_stack(peer_host)
    r = playbook("rollback.yml", **env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    as_before(peer_host)
