"""Render a bind plan where the service defines its binds (filter plugin).

gunicorn's precedence is command line > GUNICORN_CMD_ARGS > -c config file,
so the change goes to the source that defines `bind` today:

  cli     a systemd drop-in that resets ExecStart= and repeats the command
          with the new --bind / --reuse-port / --forwarded-allow-ips flags
  env     a systemd drop-in with a new Environment="GUNICORN_CMD_ARGS=..."
  envfile the GUNICORN_CMD_ARGS= line of that EnvironmentFile
  config  a managed block at the end of the -c config file (a later top-level
          assignment wins when gunicorn executes the file)
  default (no bind anywhere) is treated as cli.
"""
from __future__ import annotations

import re
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shlex

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass

DROPIN_NAME = "99-dualstack-rollout.conf"
_BIND_OPTS = ("-b", "--bind")
_VALUE_OPTS_TO_DROP = ("-b", "--bind", "--forwarded-allow-ips")
_FLAG_OPTS_TO_DROP = ("--reuse-port",)


def _strip_managed_opts(args):
    out = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in _VALUE_OPTS_TO_DROP:
            i += 2
            continue
        if a in _FLAG_OPTS_TO_DROP:
            i += 1
            continue
        if a.startswith("--") and "=" in a and a.split("=", 1)[0] in _VALUE_OPTS_TO_DROP:
            i += 1
            continue
        if re.match(r"^-b.+", a):
            i += 1
            continue
        out.append(a)
        i += 1
    return out


def _managed_values(plan, svc):
    """(binds, reuse_port, forwarded_allow_ips) to state in the bind's source.

    A value the plan leaves alone is restated when the same source already
    sets it (so rewriting that source keeps it, and a second run writes the
    same bytes).
    """
    here = _source_key(svc)
    reuse = bool(plan.get("reuse_port") or (svc.get("reuse_port") and svc.get("reuse_port_source") == here))
    fwd = plan.get("forwarded_allow_ips")
    if fwd is None and svc.get("forwarded_allow_ips_source") == here:
        fwd = svc.get("forwarded_allow_ips")
    return plan["binds"], reuse, fwd


def _managed_opts(plan, svc, style):
    """The options that carry the plan, as a list of args."""
    eq = style == "env"
    binds, reuse, fwd = _managed_values(plan, svc)
    opts = []
    for b in binds:
        opts += ["--bind=" + b] if eq else ["--bind", b]
    if reuse:
        opts.append("--reuse-port")
    if fwd:
        opts += ["--forwarded-allow-ips=" + fwd] if eq else ["--forwarded-allow-ips", fwd]
    return opts


def _source_key(svc):
    return {"cli": "cli", "default": "cli", "env": "env", "envfile": "env", "config": "config"}[svc["bind_source"]]


_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./\[\]-]+$")


def systemd_quote(arg):
    if arg and _SAFE.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _insert_before_app(args, opts):
    """Put options before the positional APP_MODULE (last non-option arg)."""
    if args and not args[-1].startswith("-"):
        return args[:-1] + opts + [args[-1]]
    return args + opts


def exec_start(svc, plan):
    argv = list(svc["argv"])
    rest = _strip_managed_opts(argv[1:])
    new = [argv[0]] + _insert_before_app(rest, _managed_opts(plan, svc, "cli"))
    return svc.get("exec_prefix", "") + " ".join(systemd_quote(a) for a in new)


def cmd_args(value, svc, plan):
    args = _strip_managed_opts(shlex.split(value or ""))
    return " ".join(a if _SAFE.match(a) else shlex.quote(a) for a in args + _managed_opts(plan, svc, "env"))


def config_block(svc, plan):
    binds, reuse, fwd = _managed_values(plan, svc)
    lines = ["# Dual-stack binds (dualstack-rollout); these assignments override the ones above.",
             "bind = %r" % (binds,)]
    if reuse:
        lines.append("reuse_port = True")
    if fwd:
        lines.append("forwarded_allow_ips = %r" % fwd)
    return "\n".join(lines)


def supervisor_environment(svc, plan):
    """supervisord's environment= with GUNICORN_CMD_ARGS rewritten, other pairs byte for byte."""
    value = cmd_args(svc.get("gunicorn_cmd_args"), svc, plan)
    out = []
    for key, raw in svc.get("environment_pairs") or []:
        if key == "GUNICORN_CMD_ARGS":
            raw = '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
        out.append("%s=%s" % (key, raw))
    return ",".join(out)


def gunicorn_change(svc, plan):
    """-> {kind, path, content|line|block}: what to write, and where."""
    src = svc["bind_source"]
    unit = svc["unit"]
    if svc.get("manager") == "supervisor" and src != "config":
        # the program's own section: command= for -b flags, environment= for GUNICORN_CMD_ARGS
        if src in ("cli", "default"):
            option, value = "command", exec_start(svc, plan)
        else:
            option, value = "environment", supervisor_environment(svc, plan)
        return {"kind": "supervisor", "path": svc["conf_path"], "section": svc["section"],
                "option": option, "value": value}
    dropin = "/etc/systemd/system/%s.d/%s" % (unit, DROPIN_NAME)
    head = ("# Managed by dualstack-rollout: dual-stack binds for %s.\n"
            "# Remove this file (and daemon-reload, restart) to return to the original binds.\n[Service]\n" % unit)
    if src in ("cli", "default"):
        return {"kind": "dropin", "path": dropin,
                "content": head + "ExecStart=\nExecStart=%s\n" % exec_start(svc, plan)}
    if src == "env":
        value = cmd_args(svc.get("gunicorn_cmd_args"), svc, plan)
        return {"kind": "dropin", "path": dropin,
                "content": head + "Environment=%s\n" % systemd_quote("GUNICORN_CMD_ARGS=" + value)}
    if src == "envfile":
        value = cmd_args(svc.get("gunicorn_cmd_args"), svc, plan)
        return {"kind": "envfile", "path": svc["gunicorn_cmd_args_file"],
                "regexp": r"^\s*(export\s+)?GUNICORN_CMD_ARGS=",
                "line": 'GUNICORN_CMD_ARGS="%s"' % value.replace('"', '\\"')}
    if src == "config":
        return {"kind": "config", "path": svc["config_file"], "block": config_block(svc, plan)}
    raise AnsibleFilterError("service %s: unknown bind source %r" % (svc.get("unit"), src))


def service_plans(services, bindv6only, strategy, ip_json=None, resolved_results=None, host=None):
    """Plan every discovered service: [{service, plan, change}].

    resolved_results are the registered results of `getent ahostsv4 NAME`
    looped over the host names found in binds.
    """
    from dsr_addresses import interface_map  # same plugin directory
    from dsr_binds import bind_plan

    names = {}
    for r in resolved_results or []:
        if r.get("rc") == 0 and r.get("stdout"):
            names[r["item"]] = r["stdout"].split()[0]
    interfaces = interface_map(ip_json or [])
    out = []
    for svc in services:
        plan = bind_plan(svc["binds"], bindv6only=bindv6only, gunicorn_version=svc.get("version"),
                         strategy=strategy, reuse_port=svc.get("reuse_port", False),
                         forwarded_allow_ips=svc.get("forwarded_allow_ips"), interfaces=interfaces,
                         resolved=names, ctx={"host": host, "service": svc["unit"]})
        out.append({"service": svc, "plan": plan, "change": gunicorn_change(svc, plan)})
    return out


def bind_hostnames(services):
    """Host names used in binds (to resolve on the host)."""
    found = []
    for svc in services:
        for b in svc.get("binds", []):
            m = re.match(r"^(?:tcp://)?([A-Za-z][A-Za-z0-9.-]*)(?::\d*)?$", b)
            if m and not b.startswith("unix:") and m.group(1) not in found:
                found.append(m.group(1))
    return found


def service_ref(name, manager):
    """{manager, unit, name} for a service recorded by name in a snapshot."""
    if manager == "supervisor":
        return {"manager": "supervisor", "unit": "supervisor:" + name, "name": name}
    return {"manager": "systemd", "unit": name, "name": name[:-len(".service")] if name.endswith(".service") else name}


def owner_unit(svc):
    """The systemd unit whose cgroup holds the service's sockets (supervisord's for its programs)."""
    return svc.get("cgroup_unit") or svc["unit"]


class FilterModule(object):
    def filters(self):
        return {
            "dsr_owner_unit": owner_unit,
            "dsr_service_ref": service_ref,
            "dsr_gunicorn_change": gunicorn_change,
            "dsr_gunicorn_plans": service_plans,
            "dsr_bind_hostnames": bind_hostnames,
        }
