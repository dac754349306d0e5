"""dsr_host_state: the host's state read and parsed in one task
(plugins/action/dsr_host_state.py, dsr_contract.state_commands / host_state).
The reads run through a real /bin/sh as the connection would run them, with
this machine's own ss, ps and sysctl, against sockets the test holds open."""
import importlib.util
import os
import socket
import subprocess

import pytest

import dsr_host_state  # documentation only (the work is the action plugin's)
from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_contract as c
from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_shell

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("dsr_host_state_action",
                                               os.path.join(ROOT, "plugins", "action", "dsr_host_state.py"))
action = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(action)

SERVICES = [{"unit": "app.service", "manager": "systemd"}, {"unit": "supervisor:api", "manager": "supervisor"},
            {"unit": "nginx.service", "manager": "systemd"}]


def read(commands):
    p = subprocess.run(["/bin/sh", "-c", dsr_shell.build_script(commands, True, 20)],
                       capture_output=True, text=True, timeout=60)
    return dict(zip(c.STATE_NAMES, dsr_shell.parse_output(p.stdout, commands)))


def test_commands_read_each_unit_once_and_supervisor_only_when_a_program_is_managed():
    cmds = c.state_commands(SERVICES)
    assert len(cmds) == len(c.STATE_NAMES)
    systemctl = cmds[c.STATE_NAMES.index("systemctl")]
    assert systemctl[-2:] == ["app.service", "nginx.service"] and systemctl.count("nginx.service") == 1
    assert cmds[c.STATE_NAMES.index("supervisor")] == ["supervisorctl", "status"]
    assert c.state_commands(SERVICES[:1])[c.STATE_NAMES.index("supervisor")] == ["true"]
    assert c.state_commands([])[c.STATE_NAMES.index("systemctl")][-1] == "nginx.service"


@pytest.mark.skipif(not all(os.path.exists(p) for p in ("/usr/bin/ss", "/usr/bin/ps")), reason="needs iproute2's ss and ps")
def test_state_of_this_machine_holds_the_sockets_the_test_listens_on():
    held = []
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((addr, 0))
        s.listen(1)
        held.append((addr, s.getsockname()[1], s))
    try:
        by_name = read(c.state_commands(SERVICES[:1]))
        assert c.state_read_problems(by_name, {"host": "h"}) == [] or \
            all("systemctl" in p for p in c.state_read_problems(by_name, {"host": "h"}))
        state = c.host_state(by_name, SERVICES[:1])
    finally:
        for _a, _p, s in held:
            s.close()
    assert set(state) == {"ss_version", "listeners", "summary", "unix", "run_states", "kernel"}
    found = dict(((l["address"], l["port"]), l) for l in state["listeners"])
    for addr, port, _s in held:
        assert (addr, port) in found, (addr, port, state["summary"])
        assert found[(addr, port)]["owner"] is None  # no service of the plan holds it
    assert [s["owner"] for s in state["run_states"]] == ["app.service", "nginx.service"]
    assert all(k.startswith("net.ipv6.") for k in state["kernel"])


def test_a_failed_read_names_host_and_command_and_optional_reads_do_not_count():
    ok = {"cmd": ["x"], "rc": 0, "stdout": "", "stderr": ""}
    by_name = dict((n, ok) for n in c.STATE_NAMES)
    by_name["supervisor"] = {"cmd": ["supervisorctl", "status"], "rc": 3, "stdout": "", "stderr": ""}
    by_name["ss_unix"] = {"cmd": ["ss", "-lxn"], "rc": 1, "stdout": "", "stderr": ""}
    assert c.state_read_problems(by_name, {"host": "h1"}) == []
    by_name["ps"] = {"cmd": ["ps", "-e", "-o", "pid=,ppid="], "rc": 1, "stdout": "", "stderr": "ps: not here\n"}
    del by_name["kernel"]
    assert c.state_read_problems(by_name, {"host": "h1"}) == [
        "host h1: ps -e -o pid=,ppid= exited 1: ps: not here", "host h1: kernel was not read"]
