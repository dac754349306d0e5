"""Bad input through the real entry points: rollout.yml, rollback.yml and
playbooks/migrate-host.yml stop in their first play, on the controller,
before any host is contacted (the hosts here do not even exist)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

INVENTORY = """\
all:
  vars:
    ansible_connection: community.docker.docker
    dsr_waves: {waves}
  children:
    lb:
      hosts:
        lb1: {{}}
    app_hosts:
      hosts:
        app1: {app1}
        app2: {{}}
"""


def run(tmp_path, entry, app1="{}", waves='[1, "100%"]', extra=()):
    inv = tmp_path / "hosts.yml"
    inv.write_text(INVENTORY.format(app1=app1, waves=waves))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0")
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inv),
                        os.path.join(ROOT, entry), "-e", "dsr_journal_dir=%s" % (tmp_path / "journal")] + list(extra),
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    return r.returncode, r.stdout + r.stderr


def nothing_ran_on_a_host(out):
    """Every host in the recap has ok=0 and changed=0: the only task ran on the controller."""
    rows = re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)", out, re.M)
    return bool(rows) and all(ok == "0" and ch == "0" for _, ok, ch in rows)


@pytest.mark.parametrize("entry", ["rollout.yml", "rollback.yml", "playbooks/migrate-host.yml"])
def test_bad_policy_stops_before_any_host(tmp_path, entry):
    rc, out = run(tmp_path, entry, app1='{ipv6_kernel__bindv6only: "maybe"}')
    assert rc != 0
    assert "Bad input; nothing was changed anywhere" in out, out[-2000:]
    assert "host app1:" in out and "ipv6_kernel__bindv6only" in out and "maybe" in out
    assert nothing_ran_on_a_host(out), out[-2000:]


def test_several_problems_are_reported_together(tmp_path):
    rc, out = run(tmp_path, "rollout.yml", app1="{dsr_lb_address: 10.1.2.300, dsr_exposure_accept: [0]}",
                  waves='[1, "x%"]')
    assert rc != 0
    for words in ("host app1: dsr_lb_address '10.1.2.300' is not an IPv4 address",
                  "host app1: dsr_exposure_accept: 0 is not a TCP port",
                  "dsr_waves: 'x%' is not a host count or a percentage ansible-core can read"):
        assert words in out, (words, out[-2000:])
    assert nothing_ran_on_a_host(out), out[-2000:]


def test_empty_group_via_dsr_app_group(tmp_path):
    rc, out = run(tmp_path, "rollout.yml", extra=["-e", "dsr_app_group=web"])
    assert rc != 0
    assert "inventory group web (variable dsr_app_group) is empty or missing" in out, out[-2000:]
    assert nothing_ran_on_a_host(out), out[-2000:]


def test_good_input_goes_on_to_preflight(tmp_path):
    """With valid input the run reaches the hosts: here they do not exist, so preflight names them."""
    rc, out = run(tmp_path, "rollout.yml")
    assert rc != 0
    assert "Bad input" not in out
    assert "Preflight failed; nothing was changed anywhere" in out, out[-2000:]
    for h in ("app1", "app2", "lb1"):
        assert re.search(r"%s\s+NO\s+" % h, out), (h, out[-3000:])


def test_limit_judges_only_the_limited_hosts(tmp_path):
    """One wave as its own run (an AWX workflow node): --limit app1 judges app1 alone."""
    rc, out = run(tmp_path, "rollout.yml", extra=["--limit", "app1"])
    assert rc != 0
    assert re.search(r"app1\s+NO\s+unreachable", out), out[-3000:]
    assert not re.search(r"(app2|lb1)\s+NO\s+", out), out[-3000:]
