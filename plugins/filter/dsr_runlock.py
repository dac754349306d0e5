"""The run lock, judged on the controller (filter plugin).

Each host (and the balancer) carries a lock file naming the run that holds
it (module dsr_lock). A second rollout or rollback that finds a live holder
stops in preflight, naming it. A holder is gone, and its lock may be taken
over, when:
  - it ran on this controller and its ansible-playbook process is no longer
    alive (a killed run: the next run finishes its work);
  - it is older than the lock's time to live (dsr_lock_ttl, seconds), for a
    holder on another controller that cannot be asked;
  - the operator breaks it on purpose (dsr_break_lock: true).
"""
from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import datetime, timezone


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % int(pid), "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except (IOError, OSError, ValueError):
        return None


def _parent(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (IOError, OSError, ValueError, IndexError):
        return None


def playbook_pid(start=None):
    """The pid of the ansible-playbook process this code runs under: the
    outermost of the ancestors whose command line is ansible-playbook's.
    Filters run in forked workers, which carry the same command line and
    end with their task: the lock must name the process that lives as long
    as the run."""
    pid = start or os.getpid()
    found = None
    seen = set()
    while pid and pid > 1 and pid not in seen:
        seen.add(pid)
        cmd = _cmdline(pid)
        if cmd and "ansible-playbook" in cmd:
            found = pid
        elif found:
            break
        pid = _parent(pid)
    return found or os.getpid()


def lock_holder(run_id, playbook=""):
    """This run, as the lock file records it."""
    return {"run_id": str(run_id), "controller": socket.gethostname(), "pid": playbook_pid(),
            "user": getpass.getuser(), "playbook": os.path.basename(str(playbook)),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _alive(holder):
    cmd = _cmdline(holder.get("pid") or 0)
    return cmd is not None and "ansible-playbook" in cmd


def lock_verdict(text, run_id, ttl=7200, break_lock=False, now=None, controller=None, alive=_alive):
    """{ok, reason, replace, holder} for a lock file's text (empty: no lock).

    `replace` is the run id the new run may take the lock from (None when
    the lock is free or already this run's)."""
    text = (text or "").strip()
    if not text:
        return {"ok": True, "reason": "free", "replace": None, "holder": None}
    try:
        holder = json.loads(text)
        if not isinstance(holder, dict):
            raise ValueError
    except ValueError:
        return {"ok": bool(break_lock), "replace": "unreadable lock file", "holder": None,
                "reason": "the lock file cannot be read" + ("; broken (dsr_break_lock)" if break_lock else
                                                            "; remove it, or set dsr_break_lock: true")}
    held = str(holder.get("run_id"))
    if held == str(run_id):
        return {"ok": True, "reason": "this run", "replace": None, "holder": holder}
    desc = "run %s (controller %s, pid %s, user %s, %s, since %s)" % (
        held, holder.get("controller"), holder.get("pid"), holder.get("user"), holder.get("playbook") or "?",
        holder.get("since"))
    if break_lock:
        return {"ok": True, "reason": "broken on purpose: " + desc, "replace": held, "holder": holder}
    here = controller or socket.gethostname()
    if holder.get("controller") == here and not alive(holder):
        return {"ok": True, "reason": "its holder is gone: " + desc, "replace": held, "holder": holder}
    try:
        since = datetime.strptime(holder.get("since", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        age = ((now or datetime.now(timezone.utc)) - since).total_seconds()
    except ValueError:
        age = None
    if age is not None and age > int(ttl):
        return {"ok": True, "reason": "expired (%d s old): %s" % (age, desc), "replace": held, "holder": holder}
    return {"ok": False, "replace": None, "holder": holder,
            "reason": "held by %s; wait for that run to end, or if it is gone set dsr_break_lock: true" % desc}


class FilterModule(object):
    def filters(self):
        return {"dsr_lock_holder": lock_holder, "dsr_lock_verdict": lock_verdict}
