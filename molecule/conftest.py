"""Shared testinfra helpers for the Molecule scenarios.

Every check here talks to real containers: commands run through
`docker exec` (testinfra's docker backend) and HTTP requests are made with
curl from inside the hosts, over the containers' real IPv4 and IPv6
addresses on the scenario's dual-stack network.
"""
import json
import os
import shlex
from dataclasses import dataclass

import pytest
import testinfra
import testinfra.utils.ansible_runner

CURL_CONNECT_REFUSED = 7
CURL_TIMEOUT = 28


@dataclass
class Response:
    """What one real HTTP request produced."""

    curl_rc: int
    status: int
    body: str
    error: str

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def answered(self):
        return self.curl_rc == 0 and self.status > 0


def http_get(from_host, url, timeout=5, headers=None):
    """GET `url` with curl on `from_host` (with `headers`, {name: value});
    never raises for network errors."""
    extra = "".join(" -H %s" % shlex.quote("%s: %s" % kv) for kv in sorted((headers or {}).items()))
    cmd = "curl -g -sS --max-time {t}{h} -o /tmp/.dsr-body -w '%{{http_code}}' {u}; rc=$?; " \
        "echo; echo \"rc=$rc\"; cat /tmp/.dsr-body 2>/dev/null; rm -f /tmp/.dsr-body".format(t=timeout, u=url, h=extra)
    out = from_host.run(cmd)
    lines = out.stdout.split("\n", 2)
    status = int(lines[0]) if lines[0].strip().isdigit() else 0
    rc = int(lines[1].split("=", 1)[1])
    body = lines[2] if len(lines) > 2 else ""
    return Response(curl_rc=rc, status=status, body=body, error=out.stderr.strip())


def url(address, port, path="/"):
    """An http URL for a literal IPv4 or IPv6 address."""
    host = "[{}]".format(address) if ":" in address else address
    return "http://{}:{}{}".format(host, port, path)


def addresses(host, dev="eth0"):
    """The global IPv4 and IPv6 addresses of `dev` on `host`, from `ip -j`.
    /bin/ip by its path: a host may carry an `ip` shim without -j earlier in
    PATH (images/shims), which the tool under test must cope with, not the tests."""
    data = json.loads(host.check_output("/bin/ip -j addr show dev %s", dev))
    found = {"ipv4": [], "ipv6": []}
    for info in data[0].get("addr_info", []):
        if info.get("scope") != "global":
            continue
        found["ipv4" if info["family"] == "inet" else "ipv6"].append(info["local"])
    return found


def group_names(host):
    return host.ansible.get_variables().get("group_names", [])


@pytest.fixture(scope="module")
def peer():
    """The scenario's peer container: a second host on the same network."""
    name = os.environ.get("DSR_PEER")
    if not name:
        inv = os.environ["MOLECULE_INVENTORY_FILE"]
        runner = testinfra.utils.ansible_runner.AnsibleRunner(inv)
        peers = runner.get_hosts("peers")
        assert peers, "the scenario defines no host in group 'peers'"
        name = peers[0]
    return testinfra.get_host("docker://" + name)


@pytest.fixture()
def app_host(host):
    """The testinfra host, when it is an app host; other hosts are skipped."""
    if "app_hosts" not in group_names(host):
        pytest.skip("not an app host")
    return host


# --- driving the entry points (scenarios whose tests run the playbooks) -----

ROOT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
WATCHED = "/etc/nginx /etc/systemd/system /etc/sysctl.d /etc/sandbox-app /etc/default"


def docker_host(name):
    return testinfra.get_host("docker://" + name)


def fingerprint(name, watched=WATCHED):
    """sha256, mode and owner of every file under the watched directories of a host."""
    return docker_host(name).check_output(
        "for d in %s; do [ -d $d ] && find $d \\( -type f -o -type l \\) -print; done | sort | "
        "while read f; do printf '%%s %%s\\n' \"$(stat -c '%%a %%U:%%G %%F' \"$f\")\" "
        "\"$(sha256sum < \"$f\" 2>/dev/null | cut -c1-64)  $f\"; done" % watched)


def run_playbook(journal, name, *args):
    """ansible-playbook NAME against Molecule's inventory, journal in `journal`;
    the output is kept there too, numbered, for the failure report."""
    import subprocess
    import sys
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
           os.path.join(ROOT, name), "-e", "dsr_journal_dir=%s" % journal] + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    log = os.path.join(journal, "%s-%d.log" % (os.path.basename(name), len(os.listdir(journal))))
    with open(log, "w") as f:
        f.write(r.stdout + r.stderr)
    return r
