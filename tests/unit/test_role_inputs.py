"""Bad role inputs stop the play before any task runs, naming the variable.

Each case runs the real ansible-playbook against localhost with one role and
one bad value. Role argument specs are validated before the role's first
task, so nothing on this machine is touched.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = [
    ("ipv6_kernel", {"ipv6_kernel__bindv6only": "yes"}, "ipv6_kernel__bindv6only"),
    ("gunicorn_dualstack", {"gunicorn_dualstack__wildcard_strategy": "both"}, "gunicorn_dualstack__wildcard_strategy"),
    ("gunicorn_dualstack", {"gunicorn_dualstack__listen_timeout": "soon"}, "gunicorn_dualstack__listen_timeout"),
    ("listener_verify", {"listener_verify__nginx_ports": ["http"]}, "listener_verify__nginx_ports"),
    ("listener_verify", {"listener_verify__expect_json": "https"}, "listener_verify__expect_json"),
    ("nginx_dualstack", {"nginx_dualstack__fail_on_proxy_localhost": "maybe"}, "nginx_dualstack__fail_on_proxy_localhost"),
]


def run_role(tmp_path, role, bad):
    import json
    pb = tmp_path / "pb.yml"
    pb.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: %s\n      vars: %s\n" % (role, json.dumps(bad)))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    bindir = os.path.dirname(sys.executable)
    return subprocess.run([os.path.join(bindir, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "--check", str(pb)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("role,bad,variable", CASES)
def test_bad_value_is_refused_naming_the_variable(tmp_path, role, bad, variable):
    r = run_role(tmp_path, role, bad)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Validating arguments against arg spec" in out
    assert variable in out, out
