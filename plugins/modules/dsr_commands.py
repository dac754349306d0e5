#!/usr/bin/python
# -*- coding: utf-8 -*-
# Runs on the managed host: Python 2.7 and 3.6+.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: dsr_commands
short_description: Run several read-only commands in one round trip
description:
  - Runs each command (an argument list, no shell) in order and returns their
    results in C(results), shaped like a looped M(ansible.builtin.command)
    (C(cmd), C(rc), C(stdout), C(stderr)), so C(register.results[N].stdout)
    reads the same as before.
  - One task instead of a loop. A looped command costs one connection round
    trip per item, this costs one per host. Meant for reads (C(ss), C(ip),
    C(sysctl), C(iptables-save)); it never reports a change and runs in
    check mode.
  - A command that exits non-zero, or cannot be found, fails the task unless
    I(allow_failure) is set; the message names the command. The entries
    carry no C(failed) key, since Ansible reads one in C(results) as the task's own.
options:
  commands:
    description: Commands to run, each a list of arguments.
    type: list
    elements: list
    required: true
  allow_failure:
    description: Report non-zero exits in C(results) instead of failing.
    type: bool
    default: false
author: dualstack-rollout
"""

EXAMPLES = r"""
- name: Read the ss version and the TCP listeners
  dsr_commands:
    commands:
      - [ss, -V]
      - [ss, -ltnpe]
  register: ss_out
"""

RETURN = r"""
results:
  description: One entry per command, in order.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule


def run_all(run, commands, allow_failure):
    """Run each argv with run(argv) -> (rc, out, err); return (results, error)."""
    results = []
    for argv in commands:
        argv = [str(a) for a in argv]
        try:
            rc, out, err = run(argv)
        except (OSError, IOError) as e:  # pragma: no cover - run_command catches these
            rc, out, err = 127, "", str(e)
        results.append({"cmd": argv, "rc": rc, "stdout": out, "stderr": err,
                        "stdout_lines": out.splitlines()})
        if rc != 0 and not allow_failure:
            return results, "%s exited %d: %s" % (" ".join(argv), rc, (err or out).strip()[:500])
    return results, None


def main():
    module = AnsibleModule(
        argument_spec=dict(commands=dict(type="list", elements="list", required=True),
                           allow_failure=dict(type="bool", default=False)),
        supports_check_mode=True)
    if not module.params["commands"]:
        module.fail_json(msg="commands is empty")

    def run(argv):
        return module.run_command(argv)

    results, error = run_all(run, module.params["commands"], module.params["allow_failure"])
    if error:
        module.fail_json(msg=error, results=results, changed=False)
    module.exit_json(changed=False, results=results)


if __name__ == "__main__":
    main()
