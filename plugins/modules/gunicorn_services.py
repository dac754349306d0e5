#!/usr/bin/python
# -*- coding: utf-8 -*-
# Runs on the managed host: Python 2.7 and 3.6+ (the fleet's interpreters).
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: gunicorn_services
short_description: Find every gunicorn service on a host and where its binds are defined
description:
  - Reads systemd units (fragment and drop-ins) whose ExecStart runs gunicorn, and
    works out the effective bind list the way gunicorn does - command line over
    GUNICORN_CMD_ARGS over the C(-c) config file over the default C(127.0.0.1:8000).
  - C(GUNICORN_CMD_ARGS) is read from C(Environment=) and C(EnvironmentFile=).
  - Also reads supervisord's programs (C([program:NAME]) in C(/etc/supervisor/supervisord.conf)
    or C(/etc/supervisord.conf) and the files its C([include]) names) whose C(command=) runs
    gunicorn, with C(GUNICORN_CMD_ARGS) from their C(environment=).
  - A config file is read with Python's C(ast), never executed; a C(bind) that is not
    a literal string or list of strings is reported as not understood.
  - Read-only; supports check mode.
options:
  only:
    description: Unit names (or supervisord program names) to consider; all when empty.
    type: list
    elements: str
    default: []
  skip:
    description: Unit names to leave out.
    type: list
    elements: str
    default: []
author: dualstack-rollout
"""

EXAMPLES = r"""
- name: Find gunicorn services
  gunicorn_services:
  register: found
"""

RETURN = r"""
services:
  description: One item per gunicorn service.
  returned: always
  type: list
  elements: dict
problems:
  description: Services that could not be understood, with the reason.
  returned: always
  type: list
  elements: str
"""

import ast
import glob
import os
import re
import shlex

try:  # Python 3
    from configparser import RawConfigParser
except ImportError:  # Python 2.7
    from ConfigParser import RawConfigParser

from ansible.module_utils.basic import AnsibleModule

OPTS_WITH_VALUE = {
    "-b": "bind", "--bind": "bind",
    "-c": "config", "--config": "config",
    "--forwarded-allow-ips": "forwarded_allow_ips",
}
FLAG_OPTS = {"--reuse-port": "reuse_port"}


def parse_gunicorn_args(argv):
    """Pick bind, config, reuse_port and forwarded_allow_ips out of gunicorn args."""
    out = {"bind": [], "config": None, "reuse_port": None, "forwarded_allow_ips": None}
    i = 0
    while i < len(argv):
        a = argv[i]
        key, value = None, None
        if a in OPTS_WITH_VALUE:
            key = OPTS_WITH_VALUE[a]
            value = argv[i + 1] if i + 1 < len(argv) else None
            i += 1
        elif a.startswith("--") and "=" in a and a.split("=", 1)[0] in OPTS_WITH_VALUE:
            key = OPTS_WITH_VALUE[a.split("=", 1)[0]]
            value = a.split("=", 1)[1]
        elif re.match(r"^-[bc].+", a):
            key = OPTS_WITH_VALUE[a[:2]]
            value = a[2:]
        elif a in FLAG_OPTS:
            out[FLAG_OPTS[a]] = True
        i += 1
        if key == "bind":
            out["bind"].append(value)
        elif key:
            out[key] = value
    return out


def is_gunicorn(argv):
    if not argv:
        return False
    base = os.path.basename(argv[0])
    if base.startswith("gunicorn"):
        return True
    if base.startswith("python"):
        for i, a in enumerate(argv[1:-1]):
            if a == "-m" and argv[i + 2].startswith("gunicorn"):
                return True
    return False


def unit_exec_start(texts):
    """Effective ExecStart argv from unit file texts in load order.

    Returns (prefix, argv) or raises ValueError when there is not exactly one.
    """
    execs = []
    env = []
    env_files = []
    for text in texts:
        text = re.sub(r"\\\n", " ", text)
        section = None
        for line in text.splitlines():
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            if s.startswith("["):
                section = s
                continue
            if section != "[Service]" or "=" not in s:
                continue
            k, v = s.split("=", 1)
            k, v = k.strip(), v.strip()
            if k == "ExecStart":
                if v == "":
                    execs = []
                else:
                    execs.append(v)
            elif k == "Environment":
                if v == "":
                    env = []
                else:
                    env.extend(shlex.split(v))
            elif k == "EnvironmentFile":
                if v == "":
                    env_files = []
                else:
                    env_files.append(v)
    if len(execs) != 1:
        raise ValueError("has %d ExecStart= lines in effect; expected exactly one" % len(execs))
    m = re.match(r"^([-@:+!]*)(.*)$", execs[0])
    prefix, cmd = m.group(1), m.group(2)
    return prefix, shlex.split(cmd), env, env_files


def parse_env_assignments(items):
    env = {}
    for item in items:
        if "=" in item:
            k, v = item.split("=", 1)
            env[k] = v
    return env


def parse_env_file(text):
    env = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("export "):
            s = s[len("export "):]
        if "=" not in s:
            continue
        k, v = s.split("=", 1)
        v = v.strip()
        try:
            parts = shlex.split(v)
            v = " ".join(parts) if len(parts) != 1 else parts[0]
        except ValueError:
            pass
        env[k.strip()] = v
    return env


def _literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError):
        raise ValueError("is not a literal")


def parse_config_file(text):
    """bind / reuse_port / forwarded_allow_ips from a gunicorn Python config.

    Only top-level literal assignments are understood; the last one wins, as
    when gunicorn executes the file.
    """
    tree = ast.parse(text)
    out = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            if isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try if hasattr(ast, "Try") else ast.If)):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Assign) and any(getattr(t, "id", None) == "bind" for t in sub.targets):
                        raise ValueError("assigns bind inside a %s block (line %d); only a top-level literal "
                                         "bind is understood" % (type(node).__name__, sub.lineno))
            continue
        for target in node.targets:
            name = getattr(target, "id", None)
            if name not in ("bind", "reuse_port", "forwarded_allow_ips"):
                continue
            try:
                value = _literal(node.value)
            except ValueError:
                raise ValueError("sets %s to an expression at line %d; only a literal is understood"
                                 % (name, node.lineno))
            if name == "bind":
                if isinstance(value, str) or (str is not bytes and isinstance(value, bytes)) or \
                        type(value).__name__ == "unicode":
                    value = [value]
                elif isinstance(value, (list, tuple)):
                    value = list(value)
                else:
                    raise ValueError("sets bind to %r at line %d; expected a string or a list" % (value, node.lineno))
            out[name] = value
    return out


def effective(cli, env_args, config):
    """Apply gunicorn's precedence: command line > GUNICORN_CMD_ARGS > config file."""
    res = {}
    for key in ("bind", "reuse_port", "forwarded_allow_ips"):
        for source_name, source in (("cli", cli), ("env", env_args), ("config", config)):
            value = source.get(key)
            if value not in (None, []):
                res[key] = value
                res[key + "_source"] = source_name
                break
        else:
            res[key] = None
            res[key + "_source"] = "default"
    return res


def read(path):
    with open(path) as f:
        return f.read()


class Host(object):
    def __init__(self, module):
        self.module = module

    def run(self, args):
        rc, out, err = self.module.run_command(args)
        if rc != 0:
            self.module.fail_json(msg="%s failed: %s" % (" ".join(args), err.strip()))
        return out

    def units(self):
        names = set()
        out = self.run(["systemctl", "list-units", "--type=service", "--all", "--no-legend", "--plain"])
        for line in out.splitlines():
            if line.strip():
                names.add(line.split()[0])
        out = self.run(["systemctl", "list-unit-files", "--type=service", "--no-legend"])
        for line in out.splitlines():
            if line.strip() and "@." not in line.split()[0]:
                names.add(line.split()[0])
        return sorted(n for n in names if n.endswith(".service"))

    def supervisor_unit(self):
        """The systemd unit supervisord runs in (its programs share its cgroup)."""
        if not hasattr(self, "_sup_unit"):
            self._sup_unit = "supervisor.service"
            for unit in ("supervisor.service", "supervisord.service"):
                rc, out, err = self.module.run_command(["systemctl", "show", "--property=LoadState", unit])
                if rc == 0 and "LoadState=loaded" in out:
                    self._sup_unit = unit
                    break
        return self._sup_unit

    def show(self, units):
        props = "Id,FragmentPath,DropInPaths,ActiveState,UnitFileState,WorkingDirectory,User,MainPID,LoadState"
        info = {}
        for i in range(0, len(units), 200):
            out = self.run(["systemctl", "show", "--property=" + props] + units[i:i + 200])
            for block in out.split("\n\n"):
                d = {}
                for line in block.splitlines():
                    if "=" in line:
                        k, v = line.split("=", 1)
                        d[k] = v
                if d.get("Id"):
                    info[d["Id"]] = d
        return info

    def version(self, argv):
        cmd = [argv[0], "--version"] if not os.path.basename(argv[0]).startswith("python") else \
            [argv[0], "-m", "gunicorn", "--version"]
        rc, out, err = self.module.run_command(cmd)
        m = re.search(r"version (\d+(?:\.\d+)*)", out + err)
        return m.group(1) if m else None


SUPERVISOR_CONFS = ("/etc/supervisor/supervisord.conf", "/etc/supervisord.conf")


def _ini(text):
    try:
        p = RawConfigParser(strict=False, inline_comment_prefixes=(";",))
    except TypeError:  # Python 2.7: inline " ;" comments are stripped already
        p = RawConfigParser()
    p.optionxform = str
    if hasattr(p, "read_string"):
        p.read_string(text)
    else:
        import io
        p.readfp(io.StringIO(text if isinstance(text, type(u"")) else text.decode("utf-8")))
    return p


def supervisor_programs(confs=None):
    """[(name, options, file)] for every [program:NAME] of supervisord's config and includes."""
    main = None
    for c in confs or SUPERVISOR_CONFS:
        if os.path.exists(c):
            main = c
            break
    if main is None:
        return []
    files = [main]
    parser = _ini(read(main))
    if parser.has_section("include") and parser.has_option("include", "files"):
        for pattern in parser.get("include", "files").split():
            if not os.path.isabs(pattern):
                pattern = os.path.join(os.path.dirname(main), pattern)
            files.extend(sorted(glob.glob(pattern)))
    out = []
    for f in files:
        p = parser if f == main else _ini(read(f))
        for sec in p.sections():
            if sec.startswith("program:"):
                out.append((sec[len("program:"):], dict(p.items(sec)), f))
    return out


_ENV_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^,]*)\s*(?:,|$)')


def parse_supervisor_environment(text):
    """[(key, raw value text)] of supervisord's environment=KEY="v",KEY2=v2."""
    pairs, pos, text = [], 0, (text or "").strip()
    while pos < len(text):
        m = _ENV_PAIR.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError("has an environment= that cannot be read: %r" % text)
        pairs.append((m.group(1), m.group(2).strip()))
        pos = m.end()
    return pairs


def _unquote(raw):
    try:
        parts = shlex.split(raw)
    except ValueError:
        return raw
    return parts[0] if len(parts) == 1 else " ".join(parts)


def discover_supervisor(host, only=(), skip=()):
    services, problems = [], []
    try:
        programs = supervisor_programs()
    except Exception as e:  # a config supervisord itself may still read
        return [], ["supervisord: cannot read its configuration: %s" % e]
    for name, opts, path in programs:
        label = "supervisor:" + name
        if only and name not in only and label not in only:
            continue
        if name in skip or label in skip:
            continue
        command = opts.get("command", "")
        if "gunicorn" not in command:
            continue
        try:
            argv = shlex.split(command)
        except ValueError as e:
            problems.append("%s: command= cannot be read: %s" % (label, e))
            continue
        if not is_gunicorn(argv):
            continue
        if int(opts.get("numprocs", "1") or 1) > 1:
            problems.append("%s: numprocs > 1 runs several gunicorn masters on the same binds; not supported" % label)
            continue
        svc = {"name": name, "unit": label, "manager": "supervisor", "conf_path": path,
               "section": "program:" + name, "command": command, "argv": argv, "exec_prefix": "",
               "cgroup_unit": host.supervisor_unit(), "fragment_path": path, "dropin_paths": [],
               "active": True, "enabled": True,
               "working_directory": opts.get("directory") or "/", "user": opts.get("user") or "root"}
        try:
            pairs = parse_supervisor_environment(opts.get("environment", ""))
            env = dict((k, _unquote(v)) for k, v in pairs)
            svc["environment_pairs"] = [list(p) for p in pairs]
            cli = parse_gunicorn_args(argv[1:])
            env_args = parse_gunicorn_args(shlex.split(env.get("GUNICORN_CMD_ARGS", "")))
            config_path = cli["config"] or env_args["config"]
            config = {}
            if config_path:
                if config_path.startswith("python:"):
                    raise ValueError("uses a Python module config (%s); only a config file is understood"
                                     % config_path)
                if not os.path.isabs(config_path):
                    config_path = os.path.join(svc["working_directory"], config_path)
                config = parse_config_file(read(config_path))
            eff = effective(cli, env_args, config)
        except (ValueError, SyntaxError, IOError, OSError) as e:
            problems.append("%s: %s" % (label, e))
            continue
        if eff["forwarded_allow_ips"] is None and env.get("FORWARDED_ALLOW_IPS"):
            eff["forwarded_allow_ips"] = env["FORWARDED_ALLOW_IPS"]
            eff["forwarded_allow_ips_source"] = "environment"
        svc.update({
            "binds": eff["bind"] or ["127.0.0.1:8000"],
            "bind_source": eff["bind_source"],
            "gunicorn_cmd_args": env.get("GUNICORN_CMD_ARGS"),
            "gunicorn_cmd_args_file": None,
            "config_file": config_path,
            "reuse_port": bool(eff["reuse_port"]),
            "reuse_port_source": eff["reuse_port_source"],
            "forwarded_allow_ips": eff["forwarded_allow_ips"],
            "forwarded_allow_ips_source": eff["forwarded_allow_ips_source"],
            "version": host.version(argv),
        })
        services.append(svc)
    return services, problems


def discover(host, only=(), skip=()):
    services, problems = [], []
    units = host.units()
    if only:
        units = [u for u in units if u in only or u[:-len(".service")] in only]
    units = [u for u in units if u not in skip and u[:-len(".service")] not in skip]
    shown = host.show(units)
    for unit in units:
        d = shown.get(unit, {})
        frag = d.get("FragmentPath")
        if not frag or not os.path.exists(frag) or d.get("LoadState") == "masked":
            continue
        dropins = [p for p in d.get("DropInPaths", "").split() if p]
        try:
            texts = [read(frag)] + [read(p) for p in dropins]
        except (IOError, OSError) as e:
            problems.append("%s: cannot read its unit files: %s" % (unit, e))
            continue
        if "gunicorn" not in "".join(texts):
            continue
        try:
            prefix, argv, env_items, env_files = unit_exec_start(texts)
        except ValueError as e:
            if any("gunicorn" in t for t in texts):
                problems.append("%s %s" % (unit, e))
            continue
        if not is_gunicorn(argv):
            continue
        svc = {"name": unit[:-len(".service")], "unit": unit, "manager": "systemd", "cgroup_unit": unit,
               "fragment_path": frag, "dropin_paths": dropins, "exec_prefix": prefix, "argv": argv,
               "active": d.get("ActiveState") == "active", "enabled": d.get("UnitFileState") == "enabled",
               "working_directory": d.get("WorkingDirectory") or "/", "user": d.get("User") or "root"}
        try:
            env = parse_env_assignments(env_items)
            env_file_used = None
            for ef in env_files:
                path = ef.lstrip("-")
                if not os.path.exists(path):
                    if ef.startswith("-"):
                        continue
                    raise ValueError("EnvironmentFile %s does not exist" % path)
                file_env = parse_env_file(read(path))
                if "GUNICORN_CMD_ARGS" in file_env:
                    env_file_used = path
                env.update(file_env)
            cli = parse_gunicorn_args(argv[1:])
            env_args = parse_gunicorn_args(shlex.split(env.get("GUNICORN_CMD_ARGS", "")))
            config_path = cli["config"] or env_args["config"]
            config = {}
            if config_path:
                if config_path.startswith("python:"):
                    raise ValueError("uses a Python module config (%s); only a config file is understood"
                                     % config_path)
                if not os.path.isabs(config_path):
                    config_path = os.path.join(svc["working_directory"], config_path)
                config = parse_config_file(read(config_path))
            eff = effective(cli, env_args, config)
        except (ValueError, SyntaxError, IOError, OSError) as e:
            problems.append("%s: %s" % (unit, e))
            continue
        if eff["forwarded_allow_ips"] is None and env.get("FORWARDED_ALLOW_IPS"):
            eff["forwarded_allow_ips"] = env["FORWARDED_ALLOW_IPS"]
            eff["forwarded_allow_ips_source"] = "environment"
        svc.update({
            "binds": eff["bind"] or ["127.0.0.1:8000"],
            "bind_source": eff["bind_source"],
            "gunicorn_cmd_args": env.get("GUNICORN_CMD_ARGS"),
            "gunicorn_cmd_args_file": env_file_used,
            "config_file": config_path,
            "reuse_port": bool(eff["reuse_port"]),
            "reuse_port_source": eff["reuse_port_source"],
            "forwarded_allow_ips": eff["forwarded_allow_ips"],
            "forwarded_allow_ips_source": eff["forwarded_allow_ips_source"],
            "version": host.version(argv),
        })
        if svc["bind_source"] == "env" and env_file_used and "GUNICORN_CMD_ARGS" not in \
                parse_env_assignments(env_items):
            svc["bind_source"] = "envfile"
        services.append(svc)
    sup_services, sup_problems = discover_supervisor(host, only, skip)
    services.extend(sup_services)
    problems.extend(sup_problems)
    if only:
        # A name the operator gave that matches no gunicorn service is a
        # typo or a wrong host: say so rather than migrate nothing.
        found = set()
        for name in [s["unit"] for s in services] + [p.split(": ")[0].split(" ")[0] for p in problems]:
            found.update([name, name[:-len(".service")] if name.endswith(".service") else name,
                          name[len("supervisor:"):] if name.startswith("supervisor:") else name])
        for name in only:
            if name not in found:
                problems.append("%s: named in gunicorn_dualstack__services, but no gunicorn service by that name "
                                "is on this host" % name)
    return services, problems


def main():
    module = AnsibleModule(
        argument_spec=dict(only=dict(type="list", elements="str", default=[]),
                           skip=dict(type="list", elements="str", default=[])),
        supports_check_mode=True,
    )
    services, problems = discover(Host(module), module.params["only"], module.params["skip"])
    module.exit_json(changed=False, services=services, problems=problems)


if __name__ == "__main__":
    main()
