"""The run lock: the controller's verdict on a holder (plugins/filter/dsr_runlock.py)
and the module that takes and gives it back (plugins/modules/dsr_lock.py),
run for real through ansible against this machine."""
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import dsr_runlock as lk

NOW = datetime(2026, 11, 25, 18, 0, tzinfo=timezone.utc)
HOLDER = {"run_id": "R1", "controller": "ctl1", "pid": 4242, "user": "ops", "playbook": "rollout.yml",
          "since": "2026-11-25T17:30:00Z"}


def verdict(holder=HOLDER, run_id="R2", **kw):
    kw.setdefault("now", NOW)
    kw.setdefault("controller", "ctl1")
    return lk.lock_verdict(json.dumps(holder) if holder is not None else "", run_id, **kw)


def test_free_and_own_locks():
    assert verdict(None)["ok"] and verdict(None)["replace"] is None
    assert verdict(run_id="R1")["reason"] == "this run"


def test_a_live_holder_on_this_controller_stops_the_run_and_is_named():
    v = verdict(alive=lambda h: True)
    assert not v["ok"]
    assert v["reason"].startswith("held by run R1 (controller ctl1, pid 4242, user ops, rollout.yml")
    assert "dsr_break_lock: true" in v["reason"]


def test_a_killed_holder_on_this_controller_is_taken_over():
    v = verdict(alive=lambda h: False)
    assert v["ok"] and v["replace"] == "R1" and v["reason"].startswith("its holder is gone")


def test_another_controllers_holder_until_it_expires():
    assert not verdict(controller="ctl2", alive=lambda h: False)["ok"]
    v = verdict(controller="ctl2", ttl=600)
    assert v["ok"] and v["reason"].startswith("expired (1800 s old)")


def test_breaking_and_unreadable():
    assert verdict(controller="ctl2", break_lock=True)["replace"] == "R1"
    v = lk.lock_verdict("{not json", "R2")
    assert not v["ok"] and "cannot be read" in v["reason"]
    assert lk.lock_verdict("{not json", "R2", break_lock=True)["ok"]


def test_this_process_is_found_alive_and_a_dead_pid_is_not():
    assert lk._alive({"pid": 1}) is False or "ansible-playbook" in (lk._cmdline(1) or "")
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert lk._alive({"pid": p.pid}) is False
    holder = lk.lock_holder("R9", "/x/rollout.yml")
    assert holder["run_id"] == "R9" and holder["playbook"] == "rollout.yml" and holder["pid"] > 0


def test_a_forked_worker_names_the_playbook_process_not_itself(tmp_path):
    # ansible-playbook's workers are forks with its command line; they end
    # with their task, so a lock naming one would look abandoned at once
    # and the next run would take it over.
    script = tmp_path / "ansible-playbook"
    script.write_text(
        "import json, os, sys\n"
        "sys.path.insert(0, %r)\n"
        "import dsr_runlock\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    print(json.dumps([dsr_runlock.playbook_pid(), os.getppid(), os.getpid()]))\n"
        "    sys.stdout.flush()\n"
        "    os._exit(0)\n"
        "os.waitpid(child, 0)\n" % os.path.dirname(lk.__file__))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    found, parent, worker = json.loads(r.stdout)
    assert found == parent != worker


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def module(tmp_path, **args):
    """Run the dsr_lock module on this machine through ansible itself."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local",
                        "-i", "localhost,", "-m", "dualstack.rollout.dsr_lock", "-a", json.dumps(args),
                        "-e", "ansible_python_interpreter=%s" % sys.executable],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    return r.returncode, r.stdout


def test_module_takes_replaces_and_releases(tmp_path):
    path = str(tmp_path / "state" / "lock.json")
    mine = {"run_id": "R2", "pid": 1}
    rc, out = module(tmp_path, path=path, holder=mine)
    assert rc == 0 and "CHANGED" in out and json.load(open(path)) == mine
    assert os.stat(path).st_mode & 0o777 == 0o600
    rc, out = module(tmp_path, path=path, holder={"run_id": "R3"})
    assert rc != 0 and "held by run R2" in out and json.load(open(path)) == mine
    rc, out = module(tmp_path, path=path, holder={"run_id": "R3"}, replace="R2")
    assert rc == 0 and json.load(open(path))["run_id"] == "R3"
    rc, out = module(tmp_path, path=path, holder=mine, state="released")
    assert rc == 0 and os.path.exists(path)  # not ours: left alone
    rc, out = module(tmp_path, path=path, holder={"run_id": "R3"}, state="released")
    assert rc == 0 and not os.path.exists(path)
