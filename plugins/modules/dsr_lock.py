#!/usr/bin/python
# -*- coding: utf-8 -*-
# Runs on the managed host: Python 2.7 and 3.6+.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: dsr_lock
short_description: The run lock of a host, so that two rollouts or rollbacks never touch it at once
description:
  - The lock is a JSON file that names the run that holds it (run id, controller, process id,
    user, start time). Whether a holder is still alive is judged on the controller
    (filter C(dsr_lock_verdict)); this module only takes and gives back the file, atomically.
  - C(state=acquired) takes the lock for I(holder) when the file is absent, already holds this
    run, or still holds the run I(replace) names (the holder the controller judged gone, or
    that the operator broke). Any other holder means another run took the lock since it was
    read, so the module fails and names it.
  - C(state=released) removes the file when it holds this run, and leaves any other holder's.
  - Supports check mode; it reports what it would do and writes nothing.
options:
  path:
    description: The lock file.
    type: path
    default: /var/lib/dualstack-rollout/lock.json
  state:
    description: acquired or released.
    type: str
    choices: [acquired, released]
    default: acquired
  holder:
    description: This run, a dict with at least C(run_id).
    type: dict
    required: true
  replace:
    description: The run id of a holder that may be replaced (judged gone, or broken on purpose).
    type: str
author: dualstack-rollout contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Take the run lock
  dsr_lock:
    holder: {run_id: 20261125T180000Z, controller: ctl1, pid: 4242}
"""

RETURN = r"""
previous:
  description: The lock file's content before the call (null when there was none).
  returned: always
  type: dict
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (IOError, OSError):
        return None
    except ValueError:
        return {"run_id": "unreadable lock file"}


def write(path, data):
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        os.makedirs(d, 0o700)
    fd, tmp = tempfile.mkstemp(dir=d)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def main():
    module = AnsibleModule(
        argument_spec=dict(path=dict(type="path", default="/var/lib/dualstack-rollout/lock.json"),
                           state=dict(type="str", choices=["acquired", "released"], default="acquired"),
                           holder=dict(type="dict", required=True),
                           replace=dict(type="str")),
        supports_check_mode=True)
    p = module.params
    mine = str(p["holder"].get("run_id") or "")
    if not mine:
        module.fail_json(msg="holder needs a run_id")
    current = read(p["path"])
    held_by = str((current or {}).get("run_id") or "")
    if p["state"] == "released":
        if current is None or held_by != mine:
            module.exit_json(changed=False, previous=current)
        if not module.check_mode:
            os.remove(p["path"])
        module.exit_json(changed=True, previous=current)
    if current is not None and held_by not in (mine, p["replace"] or ""):
        module.fail_json(msg="the run lock %s is held by run %s (%s): another run took it since it was read"
                             % (p["path"], held_by, json.dumps(current, sort_keys=True)), previous=current)
    if current == p["holder"]:
        module.exit_json(changed=False, previous=current)
    if not module.check_mode:
        write(p["path"], p["holder"])
    module.exit_json(changed=True, previous=current)


if __name__ == "__main__":
    main()
