# -*- coding: utf-8 -*-
"""dsr_host_state: the host as its own sockets and service managers describe
it now, read and parsed in one task (action plugin; documentation in
plugins/modules/dsr_host_state.py).

A rollout reads this state before any change, after the change and after a
restore. It was three tasks (the reads, a check of their exit codes, a
set_fact that parsed them); each task costs the controller a worker and the
templating of its arguments on every host, so one task does the same work:
the reads through the connection's shell (no Python on the host, see
dsr_shell), their check, and the parse by dsr_contract.host_state.
"""
from __future__ import annotations

from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_contract
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_shell import ReadAction, first_error, run_commands

ARGUMENT_SPEC = dict(
    services=dict(type="list", elements="dict", default=[]),
    timeout=dict(type="int", default=60),
)


class ActionModule(ReadAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def read(self, args, task_vars, result):
        host = task_vars.get("inventory_hostname", "?")
        commands = dsr_contract.state_commands(args["services"])
        results = run_commands(self, commands, True, args["timeout"], "dsr_host_state")
        by_name = dict(zip(dsr_contract.STATE_NAMES, results))
        problems = dsr_contract.state_read_problems(by_name, {"host": host})
        error = first_error(results, True, args["timeout"])
        if error or problems:
            result.update(failed=True, msg=" | ".join(([error] if error else []) + problems))
            return result
        result.update(dsr_contract.host_state(by_name, args["services"]))
        return result
