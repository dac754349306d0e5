# -*- coding: utf-8 -*-
"""dsr_journal: write a host's journal entry on the controller and publish
its result in the run's stats, in one task (action plugin; documentation in
plugins/modules/dsr_journal.py).

The entry used to be an ansible.builtin.copy delegated to localhost: a
module, so a Python interpreter and Ansible's module_utils started on the
controller for every host (about 0.4 s of the controller's CPU each, the
costliest task of a host's rollout), then a set_stats task of its own. An
action plugin runs on the controller already: it writes the file itself
(atomically, mode 0600) and returns the stats as set_stats does.
"""
from __future__ import annotations

import json
import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = dict(
    path=dict(type="path", required=True),
    entry=dict(type="dict", required=True),
    stats=dict(type="dict", default={}),
)


def write_entry(path, entry):
    """Write `entry` as JSON (as to_nice_json formats it) to `path`, mode
    0600, through a temporary file in the same directory, so a reader never
    sees half an entry. The directory must exist: the run created it."""
    d = os.path.dirname(path) or "."
    if not os.path.isdir(d):
        raise AnsibleActionFail("dsr_journal: the journal directory %s does not exist" % d)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".%s." % os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(entry, f, indent=4, sort_keys=True, separators=(",", ": "), ensure_ascii=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        # A record on the controller, not a change to any host.
        result["changed"] = False
        if self._task.check_mode:
            result["msg"] = "check mode: no journal entry written"
            return result
        write_entry(args["path"], args["entry"])
        result["path"] = args["path"]
        if args["stats"]:
            # What ansible.builtin.set_stats returns: the strategy adds it to
            # the run's stats (for AWX workflow nodes and callbacks).
            result["ansible_stats"] = {"data": args["stats"], "per_host": False, "aggregate": True}
        return result
