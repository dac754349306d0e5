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
