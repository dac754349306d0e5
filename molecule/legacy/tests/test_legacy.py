"""The fleet's real stack after migrate-host.yml, then rollback.yml.

Hosts: Debian 11, Python 2.7.18 as Ansible's and the app's interpreter,
gunicorn 19.9.0 + gevent 1.3.5, Flask 1.1.1, Werkzeug 0.16.0. One host runs
its three services under systemd, the other under supervisord; in each, one
service has its bind in -b flags, one in GUNICORN_CMD_ARGS, one in a -c file.
Every check is a real socket or a real HTTP request from the peer.
"""
import os
import re
import subprocess
import sys

import pytest
import testinfra

from conftest import addresses, http_get, url

ROOT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HOSTS = ["dsr-legacy-systemd", "dsr-legacy-supervisor"]
PORTS = {8000: "webapp", 8001: "api", 8002: "reports"}


def host(name):
    return testinfra.get_host("docker://" + name)


@pytest.fixture(scope="module")
def peer_host():
    return host("dsr-legacy-peer")


def listens(name):
    return set(host(name).check_output("ss -ltnH | awk '{print $4}'").split())


def recap(output):
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)}


def playbook(name, *args):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0")
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
           os.path.join(ROOT, name)] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)


def test_controller_is_ansible_core_2_16():
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "--version"],
                         capture_output=True, text=True).stdout
    assert re.search(r"core 2\.16\.", out), out


@pytest.mark.parametrize("name", HOSTS)
def test_the_stack_is_the_fleets(name):
    h = host(name)
    assert h.check_output("python2.7 -V 2>&1") == "Python 2.7.18"
    assert h.check_output("/usr/local/bin/gunicorn --version 2>&1") == "gunicorn (version 19.9.0)"
    versions = h.check_output("python2.7 -c 'import gevent, flask, werkzeug; "
                              "print(gevent.__version__, flask.__version__, werkzeug.__version__)'")
    assert versions == "('1.3.5', '1.1.1', '0.16.0')"


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
        assert j["python"] == "2.7.18"
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
    sysd, sup = listens("dsr-legacy-systemd"), listens("dsr-legacy-supervisor")
    for port in PORTS:
        # separate (default): the IPv4 socket stays, an IPv6 wildcard joins it
        # (v6only=0 under bindv6only=0, beside 0.0.0.0 thanks to reuse_port)
        assert "0.0.0.0:%d" % port in sysd and ("[::]:%d" % port in sysd or "*:%d" % port in sysd), sysd
        # dual: one socket answering both families
        assert "*:%d" % port in sup and "0.0.0.0:%d" % port not in sup


def test_rollback_restores_every_byte_and_the_ipv4_listeners(peer_host):
    r = playbook("rollback.yml")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
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
