# -*- coding: utf-8 -*-
"""Read commands through the connection's own shell, no Python on the host:
the script, the parser of its framed output and the first error, shared by
the dsr_commands and dsr_host_state action plugins.

One POSIX sh script runs every command with its own stdout, stderr and exit
code and prints them base64-framed, so any byte a command writes comes back
unchanged and no output can be mistaken for the framing.
"""
from __future__ import annotations

import base64
import shlex

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

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


def run_commands(action, commands, allow_failure, timeout, who="dsr_commands"):
    """Run `commands` through `action`'s connection (an ActionBase: its
    shell, with become when the task has it) and return their results;
    raises AnsibleActionFail when the script did not run to its end."""
    res = action._low_level_execute_command(build_script(commands, allow_failure, timeout))
    try:
        return parse_output(res.get("stdout", ""), commands)
    except ValueError as e:
        raise AnsibleActionFail("%s: %s (shell exit %s: %s)"
                                % (who, e, res.get("rc"), (res.get("stderr") or res.get("stdout") or "").strip()[:500]))


class ReadAction(ActionBase):
    """An action plugin that only reads, through the connection's shell:
    never a change, runs in check mode. Subclasses set ARGUMENT_SPEC and
    implement read(args, task_vars, result)."""
    TRANSFERS_FILES = False
    _supports_check_mode = True  # reads only
    _supports_async = False
    ARGUMENT_SPEC = {}

    def run(self, tmp=None, task_vars=None):
        result = super(ReadAction, self).run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)
        result["changed"] = False
        return self.read(args, task_vars or {}, result)

    def read(self, args, task_vars, result):
        raise NotImplementedError
