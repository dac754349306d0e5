"""dsr_journal: a host's journal entry written on the controller by the
action plugin itself (plugins/action/dsr_journal.py), no module started."""
import importlib.util
import json
import os
import stat

import pytest

import dsr_journal  # documentation only (the work is the action plugin's)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("dsr_journal_action", os.path.join(ROOT, "plugins", "action", "dsr_journal.py"))
action = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(action)


def test_entry_is_written_whole_private_and_replaces_an_older_one(tmp_path):
    path = str(tmp_path / "app1.json")
    action.write_entry(path, {"host": "app1", "wave": 1, "times": {"start": "2026-11-26T00:00:00+00:00"}, "note": "é"})
    action.write_entry(path, {"host": "app1", "wave": 2})
    assert json.load(open(path, encoding="utf-8")) == {"host": "app1", "wave": 2}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ["app1.json"]  # no temporary file left


def test_a_missing_journal_directory_is_an_error_not_created(tmp_path):
    missing = tmp_path / "run-x"
    with pytest.raises(Exception, match="does not exist"):
        action.write_entry(str(missing / "app1.json"), {"host": "app1"})
    assert not missing.exists()


def test_a_real_play_writes_the_entry_and_publishes_the_stats(tmp_path):
    """Through ansible-playbook itself (local connection): the entry lands on
    the controller and the strategy merges the stats of every host, as it
    does set_stats' (ANSIBLE_SHOW_CUSTOM_STATS prints them)."""
    import subprocess
    import sys
    book = tmp_path / "journal.yml"
    book.write_text("""- hosts: h1,h2
  gather_facts: false
  connection: local
  tasks:
    - dualstack.rollout.dsr_journal:
        path: "%s/{{ inventory_hostname }}.json"
        entry: {host: "{{ inventory_hostname }}", wave: 1}
        stats:
          dsr_results: "{{ {inventory_hostname: {'wave': 1, 'result': 'migrated'}} }}"
""" % tmp_path)
    bindir = os.path.dirname(sys.executable)
    r = subprocess.run([os.path.join(bindir, "ansible-playbook"), "-i", "h1,h2,", str(book)], capture_output=True,
                       text=True, timeout=120, cwd=ROOT,
                       env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                                ANSIBLE_SHOW_CUSTOM_STATS="true", ANSIBLE_PYTHON_INTERPRETER=sys.executable))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for h in ("h1", "h2"):
        assert json.load(open(str(tmp_path / (h + ".json")))) == {"host": h, "wave": 1}
    stats = r.stdout[r.stdout.index("CUSTOM STATS"):]
    assert "dsr_results" in stats and "h1" in stats and "h2" in stats and "migrated" in stats
