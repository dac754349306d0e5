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

import base64
import shlex

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = dict(
    commands=dict(type="list", elements="list", required=True),
    allow_failure=dict(type="bool", default=False),
    names=dict(type="list", elements="str", default=[]),
    timeout=dict(type="int", default=60),
)

# coreutils' `timeout` exits 124 when it had to stop the command.
TIMED_OUT = 124

# Lines that start with '@' are never base64 (A-Z a-z 0-9 + / =).
_CMD, _ERR, _END = "@@DSR", "@@ERR", "@@DSR-END"
_NO_TOOL = "@@DSR-MISSING"


def build_script(commands, allow_failure, timeout=0):
    """The POSIX sh script that runs `commands` (lists of arguments, no
    shell) in order; unless allow_failure it stops after the first one that
    exits non-zero, as the results then end there. With a timeout, each
    command runs under coreutils' `timeout` (TERM, then KILL 5 s later), so
    no read can hang a host's run."""
    tools = "mktemp base64" + (" timeout" if timeout else "")
    lines = [
        "export LC_ALL=C",
        "for t in %s; do command -v $t >/dev/null 2>&1 || { echo '%s '$t; exit 0; }; done" % (tools, _NO_TOOL),
        'd=$(mktemp -d) || exit 125',
        "trap 'rm -rf \"$d\"' EXIT",
    ]
    prefix = "timeout -k 5 %d " % int(timeout) if timeout else ""
    for i, argv in enumerate(commands):
        lines += [
            '{ %s%s; } >"$d/o" 2>"$d/e" </dev/null; rc=$?' % (prefix, " ".join(shlex.quote(str(a)) for a in argv)),
            "echo '%s %d '$rc" % (_CMD, i),
            'base64 <"$d/o"',
            "echo '%s'" % _ERR,
            'base64 <"$d/e"',
        ]
        if not allow_failure:
            lines.append("[ $rc -eq 0 ] || { echo '%s'; exit 0; }" % _END)
    lines.append("echo '%s'" % _END)
    return "\n".join(lines) + "\n"


def parse_output(stdout, commands):
    """Results shaped like a looped ansible.builtin.command (cmd, rc, stdout,
    stderr, stdout_lines), one per command that ran. Raises ValueError when
    the script did not run to its end."""
    results = []
    cur = None
    ended = False
    for line in stdout.splitlines():
        if line.startswith(_NO_TOOL):
            raise ValueError("the host has no %s command (coreutils)" % line[len(_NO_TOOL):].strip())
        if line == _END:
            ended = True
            break
        if line.startswith(_CMD + " "):
            _marker, idx, rc = line.split(" ")
            cur = {"i": int(idx), "rc": int(rc), "out": [], "err": []}
            results.append(cur)
        elif line == _ERR and cur is not None:
            cur["in_err"] = True
        elif cur is not None:
            cur["err" if cur.get("in_err") else "out"].append(line)
    if not ended:
        raise ValueError("the script stopped before its end")
    out = []
    for r in results:
        argv = [str(a) for a in commands[r["i"]]]
        text = to_text(base64.b64decode("".join(r["out"])), errors="surrogate_or_replace")
        out.append({"cmd": argv, "rc": r["rc"], "stdout": text,
                    "stderr": to_text(base64.b64decode("".join(r["err"])), errors="surrogate_or_replace"),
                    "stdout_lines": text.splitlines()})
    return out


def first_error(results, allow_failure, timeout=0):
    """The message of the first command that timed out (always an error) or,
    unless allow_failure, exited non-zero; None when there is none."""
    for r in results:
        if timeout and r["rc"] == TIMED_OUT:
            return "%s timed out after %d s" % (" ".join(r["cmd"]), timeout)
    if allow_failure:
        return None
    for r in results:
        if r["rc"] != 0:
            return "%s exited %d: %s" % (" ".join(r["cmd"]), r["rc"], (r["stderr"] or r["stdout"]).strip()[:500])
    return None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True  # reads only
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        commands = args["commands"]
        if not commands:
            raise AnsibleActionFail("commands is empty")
        names = args["names"]
        if names and len(names) != len(commands):
            raise AnsibleActionFail("names has %d entries for %d commands" % (len(names), len(commands)))
        res = self._low_level_execute_command(build_script(commands, args["allow_failure"], args["timeout"]))
        try:
            results = parse_output(res.get("stdout", ""), commands)
        except ValueError as e:
            raise AnsibleActionFail("dsr_commands: %s (shell exit %s: %s)"
                                    % (e, res.get("rc"), (res.get("stderr") or res.get("stdout") or "").strip()[:500]))
        result.update(changed=False, results=results)
        # Results by name as well as by position: callers read them by name.
        if names:
            result["by_name"] = dict((n, r) for n, r in zip(names, results))
        error = first_error(results, args["allow_failure"], args["timeout"])
        if error:
            result.update(failed=True, msg=error)
        return result
