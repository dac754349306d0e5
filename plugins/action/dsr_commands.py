# -*- coding: utf-8 -*-
"""dsr_commands: several read-only commands in one round trip, with no
Python started on the host (action plugin; documentation in
plugins/modules/dsr_commands.py).

Like ansible.builtin.raw, the work goes through the connection's own shell
(`/bin/sh -c SCRIPT`, with become when the task has it): one POSIX sh script
runs every command with its own stdout, stderr and exit code, and prints
them base64-framed, so any byte a command writes comes back unchanged and
no output can be mistaken for the framing. A Python module call costs the
host a Python start and an import of Ansible's module_utils (about 0.2 s of
CPU, measured on the sandbox hosts); this costs a shell (under 0.01 s). On a
fleet that is most of what a rollout's reads cost the hosts.
"""
from __future__ import annotations

from ansible.errors import AnsibleActionFail

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_shell import ReadAction, first_error, run_commands

ARGUMENT_SPEC = dict(
    commands=dict(type="list", elements="list", required=True),
    allow_failure=dict(type="bool", default=False),
    names=dict(type="list", elements="str", default=[]),
    timeout=dict(type="int", default=60),
)


class ActionModule(ReadAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def read(self, args, task_vars, result):
        commands = args["commands"]
        if not commands:
            raise AnsibleActionFail("commands is empty")
        names = args["names"]
        if names and len(names) != len(commands):
            raise AnsibleActionFail("names has %d entries for %d commands" % (len(names), len(commands)))
        results = run_commands(self, commands, args["allow_failure"], args["timeout"])
        result["results"] = results
        # Results by name as well as by position: callers read them by name.
        if names:
            result["by_name"] = dict((n, r) for n, r in zip(names, results))
        error = first_error(results, args["allow_failure"], args["timeout"])
        if error:
            result.update(failed=True, msg=error)
        return result
