"""The opt-in Mitogen strategy (ANSIBLE_STRATEGY=mitogen_linear) loads
through the project's ansible.cfg and runs the project's own modules: a real
ansible-playbook on this machine over Mitogen's `local` connection, against
the same play under the stock strategy."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PLAY = r"""
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Several reads in one call (an action plugin, through the connection's shell)
      dualstack.rollout.dsr_commands:
        commands: [[echo, one], [uname, -s]]
      register: reads
    - name: Files read by one of the project's Python modules, on the host's interpreter
      dualstack.rollout.dsr_read_files:
        paths: [/proc/sys/kernel/ostype]
      register: files
    - name: The process that runs the tasks (Mitogen names its interpreters)
      ansible.builtin.shell: tr '\0' ' ' < /proc/$PPID/cmdline
      register: parent
      changed_when: false
    - name: Record it
      ansible.builtin.copy:
        content: >-
          {{ {'parent': parent.stdout, 'out': reads.results | map(attribute='stdout') | list,
              'files': files.files | map(attribute='content') | map('b64decode') | list} | to_json }}
        dest: "{{ out }}"
        mode: "0600"
"""


def run(tmp_path, strategy):
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    out = tmp_path / ("%s.json" % strategy)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STRATEGY=strategy, ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                        str(play), "-e", "out=%s" % out],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return json.loads(out.read_text())


def test_mitogen_linear_runs_the_project_modules(tmp_path):
    mitogen = run(tmp_path, "mitogen_linear")
    stock = run(tmp_path, "linear")
    assert mitogen["out"] == stock["out"] == ["one\n", "Linux\n"]
    assert mitogen["files"] == stock["files"] == ["Linux\n"]
    assert "(mitogen:" in mitogen["parent"]
    assert "mitogen" not in stock["parent"]
