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
  - Read-only. Never executes a service's program (no C(gunicorn --version), no wrapper
    script); the gunicorn version is read from the package the service's interpreter
    would import (C(gunicorn/__init__.py), C(*.dist-info/METADATA), C(*.egg-info/PKG-INFO)).
  - "systemd: the effective C(ExecStart), C(Environment), C(EnvironmentFiles),
    C(UnsetEnvironment), C(WorkingDirectory), C(User) come from C(systemctl show), so
    drop-in order, templates and specifiers are systemd's own. Unit files are read only
    to recover word boundaries that C(systemctl show) loses and to choose the drop-in
    path (C(dropin_path)) that sorts after every existing drop-in."
  - "EnvironmentFile= files are parsed with systemd's rules: C(export X=1) is an invalid
    assignment and ignored, quotes, backslash continuations, C(#)/C(;) comments."
  - "gunicorn's precedence per setting, for the version installed: command line >
    C(GUNICORN_CMD_ARGS) (19.7+; its C(-c) from 19.8) > config file (C(-c), else
    C(./gunicorn.conf.py) in the working directory when it exists - gunicorn 19.6 and
    later, including 19.9.0, load it) > C(PORT) in the environment (C(0.0.0.0:$PORT)) >
    C(127.0.0.1:8000)."
  - Config files are Python; they are parsed with C(ast) and a small safe evaluator
    (literals, concatenation, C(%), C(.format), f-strings, C(os.environ[...]),
    C(os.environ.get), C(os.getenv) with the service's environment). Anything else that
    could decide bind, reuse_port or forwarded_allow_ips is reported in C(problems).
  - "Launch forms understood: the gunicorn console script (a virtualenv's bin/gunicorn
    too), C(python -m gunicorn), C(env VAR=... gunicorn), C(sh -c)/C(bash -c) with one
    simple command (C(exec), assignments, C($VAR) expansion), the instrumenting wrappers
    C(newrelic-admin run-program), C(ddtrace-run), C(opentelemetry-instrument),
    C(dumb-init), C(tini), C(nice), C(authbind). Refused with a reason: shell wrapper
    scripts (never run), compound shell commands, C(gunicorn_paster), C(gunicorn_django),
    C(--paste) before gunicorn 20, numprocs > 1."
  - "Commands run on the host, each under coreutils C(timeout command_timeout):
    C(systemctl list-units --type=service --all --no-legend --plain --no-pager);
    C(systemctl list-unit-files --type=service --no-legend --no-pager);
    C(systemctl show --property=... -- UNIT...) (batches of 100 units);
    C(supervisorctl -c CONF status) (only when a supervisord program mentions gunicorn
    and supervisord is not known to be stopped; where no systemd unit runs supervisord it is
    asked all the same, and its failure fails the module). Nothing else is executed; files
    (unit files, EnvironmentFiles, config files, scripts' first 4 KiB, site-packages,
    /proc/PID/environ of supervisord, /etc/passwd) are only read."
  - supervisord's configuration is found as supervisord finds it (its unit's C(-c), else
    its search order), C(%(here)s), C(%(ENV_X)s), C(%(program_name)s),
    C(%(process_num)s), C(%(group_name)s), C(%(host_node_name)s) are expanded, also in
    C([include] files=).
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
  command_timeout:
    description: Seconds each command may take; a command that times out or fails fails the module, naming it.
    type: int
    default: 20
author: dualstack-rollout contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Find gunicorn services
  gunicorn_services:
  register: found
"""

RETURN = r"""
services:
  description:
    - One item per gunicorn service (systemd unit or supervisord program), running or not.
    - "Identity: name, unit (C(NAME.service) or C(supervisor:NAME)), manager (systemd|supervisor), cgroup_unit
      (the unit whose cgroup holds the sockets; C(null) for supervisord without systemd)."
    - "Run state: active (bool), state (systemd ActiveState or supervisord's state name), pid (MainPID or the
      program's pid, 0 when not running), enabled (systemd UnitFileState enabled; supervisord autostart);
      systemd also sub_state and unit_file_state; supervisord state_note when supervisord itself is stopped."
    - "Command: argv (the whole command as gunicorn's process gets it: systemd's $VAR/${VAR} expanded, sh -c
      reduced to its simple command, env assignments as C(/usr/bin/env NAME=value) words; when it is written
      back into a unit, $ must become $$ and % must become %%, in supervisord's command= % must become %%),
      gunicorn_index (index in argv of the gunicorn program word; gunicorn's own arguments follow it),
      app_module, launcher (e.g. [sh -c, env, gunicorn]), env_in_command (names assigned in the command),
      exec_prefix, exec_argv (systemd's words before $ expansion), exec_words_exact (word boundaries
      recovered from the unit files), interpreter, working_directory, user."
    - "Binds: binds, bind_source (cli|env|envfile|config|config_default|port_env|default), gunicorn_cmd_args,
      gunicorn_cmd_args_file, config_file, config_file_source (cli|env|config_default), reuse_port,
      reuse_port_source, forwarded_allow_ips (None = gunicorn's default for its version),
      forwarded_allow_ips_source (cli|env|config|environment|default), port_env, port_env_file and
      forwarded_allow_ips_file (the EnvironmentFile that sets PORT / FORWARDED_ALLOW_IPS, when one does)."
    - "Version: version (None when unknown: consumers take the oldest supported), version_known,
      version_source (the file it was read from)."
    - "systemd files: fragment_path, dropin_paths (all in effect, systemd's order), dropin_dir, dropin_path
      (the drop-in to write: it sorts after every other drop-in by file name), dropin_superseded_paths (this
      tool's older drop-ins that would no longer sort last)."
    - "supervisord: conf_path, section, command (as written), environment_pairs, process_name (as
      supervisorctl names it), supervisord_conf."
  returned: always
  type: list
  elements: dict
problems:
  description: 'Services that mention gunicorn but could not be understood, each "UNIT: reason".'
  returned: always
  type: list
  elements: str
commands:
  description: The commands the module ran, in order.
  returned: always
  type: list
  elements: list
"""

import ast
import glob
import os
import re
import shlex
import socket

try:  # Python 3
    from configparser import RawConfigParser
except ImportError:  # Python 2.7
    from ConfigParser import RawConfigParser

try:
    string_types = (str, unicode)  # noqa: F821 (Python 2)
except NameError:
    string_types = (str,)

try:
    _unichr = unichr  # noqa: F821 (Python 2: its chr gives a byte string)
except NameError:
    _unichr = chr

DEFAULT_BIND = "127.0.0.1:8000"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DROPIN_SUFFIX = "dualstack-rollout.conf"
SKIP_HINT = "or leave it out with gunicorn_dualstack__skip_services"


def _q(value):
    """A value quoted the same way under Python 2 and 3 (no u'' prefix)."""
    if isinstance(value, string_types):
        return "'%s'" % value
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(_q(v) for v in value)
    return repr(value)


class NotUnderstood(ValueError):
    """A service that mentions gunicorn but cannot be understood; the text says why."""


# ---------------------------------------------------------------------------
# gunicorn's command line (argparse, the option table of 19.9.0 and 27.0.1)

_FLAGS = set("""--capture-output --casefold-http-method --check-config --daemon
--disable-redirect-access-to-syslog --do-handshake-on-connect --enable-backlog-metric
--enable-stdio-inheritance --initgroups --log-syslog --no-control-socket --no-sendfile
--permit-obsolete-folding --permit-unconventional-http-method --permit-unconventional-http-version
--preload --print-config --reload --reuse-port --spew --strip-header-spaces --suppress-ragged-eofs
-D -R -v --version -h --help""".split())
_VALUES = set("""--access-logfile --access-logformat --asgi-disconnect-grace-period --asgi-lifespan
--asgi-loop --backlog --bind --ca-certs --cert-reqs --certfile --chdir --ciphers --config
--control-socket --control-socket-mode --dirty-app --dirty-graceful-timeout --dirty-threads
--dirty-timeout --dirty-workers --dogstatsd-tags --env --error-logfile --forwarded-allow-ips
--forwarder-headers --graceful-timeout --group --header-map --http-parser --http-protocols
--http2-cleartext --http2-initial-window-size --http2-max-concurrent-streams --http2-max-frame-size
--http2-max-header-list-size --keep-alive --keyfile --limit-request-field_size --limit-request-fields
--limit-request-line --log-config --log-config-dict --log-config-json --log-file --log-level
--log-syslog-facility --log-syslog-prefix --log-syslog-to --logger-class --max-requests
--max-requests-jitter --name --paste --paste-global --paster --pid --protocol --proxy-allow-from
--pythonpath --reload-engine --reload-extra-file --root-path --ssl-version --statsd-host
--statsd-prefix --threads --timeout --umask --user --uwsgi-allow-from --websocket-max-message-size
--worker-class --worker-connections --worker-tmp-dir --workers
-b -c -e -g -k -m -n -p -t -u -w""".split())
# 19.9.0: a flag; 27.0.1: an optional value (off, v1, v2, auto)
_OPTIONAL_VALUE = {"--proxy-protocol": ("off", "v1", "v2", "auto")}
_DEST = {"-b": "bind", "--bind": "bind", "-c": "config", "--config": "config",
         "--forwarded-allow-ips": "forwarded_allow_ips", "--reuse-port": "reuse_port",
         "--paste": "paste", "--paster": "paste", "--chdir": "chdir"}
_LONG = sorted(o for o in _FLAGS | _VALUES | set(_OPTIONAL_VALUE) if o.startswith("--"))


def _long_option(name):
    """argparse's abbreviation rule: an unambiguous prefix of a long option."""
    if name in _FLAGS or name in _VALUES or name in _OPTIONAL_VALUE:
        return name
    found = [o for o in _LONG if o.startswith(name)]
    if len(found) == 1:
        return found[0]
    if found:
        raise NotUnderstood("gunicorn option %s is ambiguous (%s)" % (name, ", ".join(found)))
    raise NotUnderstood("%s is not a gunicorn option; gunicorn would refuse to start" % name)


def parse_gunicorn_args(argv):
    """gunicorn's argument parser, for the settings this tool cares about.

    -> {bind: [..], config, reuse_port, forwarded_allow_ips, paste, chdir, args: [positionals]}
    A repeated --bind appends; other options: the last one wins (argparse).
    """
    out = {"bind": [], "config": None, "reuse_port": None, "forwarded_allow_ips": None,
           "paste": None, "chdir": None, "args": []}
    i = 0
    only_positional = False
    while i < len(argv):
        a = argv[i]
        i += 1
        if only_positional or a == "-" or not a.startswith("-"):
            out["args"].append(a)
            continue
        if a == "--":
            only_positional = True
            continue
        value = None
        if a.startswith("--"):
            name, eq, attached = a.partition("=")
            opt = _long_option(name)
            if eq:
                if opt in _FLAGS:
                    raise NotUnderstood("gunicorn option %s takes no value (%s)" % (opt, a))
                value = attached
            elif opt in _VALUES:
                if i >= len(argv):
                    raise NotUnderstood("gunicorn option %s has no value" % opt)
                value = argv[i]
                i += 1
            elif opt in _OPTIONAL_VALUE:
                if i < len(argv) and argv[i] in _OPTIONAL_VALUE[opt]:
                    value = argv[i]
                    i += 1
        else:
            opt = a[:2]
            if opt not in _FLAGS and opt not in _VALUES:
                raise NotUnderstood("%s is not a gunicorn option; gunicorn would refuse to start" % opt)
            if opt in _VALUES:
                if len(a) > 2:
                    value = a[2:]
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    raise NotUnderstood("gunicorn option %s has no value" % opt)
            elif len(a) > 2:  # -Db: flags and one value option in a cluster
                rest = "-" + a[2:]
                argv = argv[:i] + [rest] + argv[i:]
        dest = _DEST.get(opt)
        if dest == "bind":
            out["bind"].append(value)
        elif dest == "reuse_port":
            out["reuse_port"] = True
        elif dest:
            out[dest] = value
    return out


def parse_cmd_args_env(value):
    """GUNICORN_CMD_ARGS as gunicorn reads it: shlex.split, then its parser."""
    try:
        words = shlex.split(value)
    except ValueError as e:
        raise NotUnderstood("GUNICORN_CMD_ARGS cannot be split as gunicorn splits it (%s)" % e)
    return parse_gunicorn_args(words)


# ---------------------------------------------------------------------------
# versions

def version_tuple(text):
    if not text:
        return None
    nums = re.findall(r"\d+", str(text))
    return tuple(int(n) for n in nums[:3]) if nums else None


# What gunicorn's own code does, by version (app/base.py load_config):
CMD_ARGS_SINCE = (19, 7)          # GUNICORN_CMD_ARGS read at all
CMD_ARGS_CONFIG_SINCE = (19, 8)   # a -c inside GUNICORN_CMD_ARGS names the config file
PASTE_BIND_BEFORE = (20, 0)       # --paste takes host/port of [server:main] as bind
FORWARDED_V6_SINCE = (23, 0)      # forwarded_allow_ips default 127.0.0.1,::1
OLDEST = (19, 9, 0)               # an unknown version is taken as the oldest supported


def effective_settings(cli, env_args, config, environ, version):
    """gunicorn's precedence, setting by setting, for one version.

    cli, env_args: parse_gunicorn_args results (env_args None when GUNICORN_CMD_ARGS is unset);
    config: {name: value} from the config file gunicorn loads (or {});
    environ: the service's environment. -> dict bind, bind_source, reuse_port, ...
    """
    v = version or OLDEST
    sources = [("cli", cli)]
    if env_args is not None and v >= CMD_ARGS_SINCE:
        sources.append(("env", env_args))
    sources.append(("config", config or {}))
    res = {}
    for key in ("bind", "reuse_port", "forwarded_allow_ips"):
        for name, src in sources:
            value = src.get(key)
            if value not in (None, []):
                res[key], res[key + "_source"] = value, name
                break
        else:
            res[key], res[key + "_source"] = None, "default"
    if res["bind"] is None:
        if "PORT" in environ:
            res["bind"], res["bind_source"] = ["0.0.0.0:%s" % environ["PORT"]], "port_env"
        else:
            res["bind"] = [DEFAULT_BIND]
    if res["forwarded_allow_ips"] is None and "FORWARDED_ALLOW_IPS" in environ:
        res["forwarded_allow_ips"] = environ["FORWARDED_ALLOW_IPS"]
        res["forwarded_allow_ips_source"] = "environment"
    res["reuse_port"] = bool(res["reuse_port"])
    return res


def effective(cli, env_args, config):
    """Precedence without environment or version (kept for callers of the old API)."""
    res = effective_settings(cli, env_args, config, {}, None)
    if res["bind_source"] == "default":
        res["bind"] = None
    if res["reuse_port_source"] == "default":
        res["reuse_port"] = None
    return res


# ---------------------------------------------------------------------------
# gunicorn config files: ast, never executed

_SETTINGS = ("bind", "reuse_port", "forwarded_allow_ips")
_HARMLESS_IMPORTS = ("os", "os.path", "sys", "multiprocessing", "socket", "logging", "logging.config",
                     "json", "re", "pathlib", "platform", "time", "datetime", "math", "getpass",
                     "psutil", "gevent", "gevent.monkey")


class _Unknown(object):
    def __init__(self, why):
        self.why = why


class _Env(object):
    """os.environ as the service sees it."""

    def __init__(self, environ):
        self.environ = environ


class _Module(object):
    def __init__(self, name):
        self.name = name


class ConfigEvaluator(object):
    """Evaluate the top level of a gunicorn config file for bind / reuse_port / forwarded_allow_ips."""

    def __init__(self, environ, label="config file"):
        self.environ = dict(environ or {})
        self.label = label
        self.names = {}

    def fail(self, node, text):
        raise NotUnderstood("%s line %d: %s" % (self.label, getattr(node, "lineno", 0), text))

    # expressions --------------------------------------------------------
    def value(self, node):
        t = type(node).__name__
        if t in ("Str", "Bytes"):
            return node.s
        if t == "Num":
            return node.n
        if t == "Constant":
            return node.value
        if t == "NameConstant":
            return node.value
        if t in ("List", "Tuple"):
            items = [self.value(e) for e in node.elts]
            return items if t == "List" else tuple(items)
        if t == "Name":
            if node.id in ("True", "False", "None"):  # Python 2
                return {"True": True, "False": False, "None": None}[node.id]
            if node.id in self.names:
                v = self.names[node.id]
                if isinstance(v, _Unknown):
                    raise NotUnderstood(v.why)
                return v
            self.fail(node, "uses %s, which is not defined above it in a way this tool can read" % node.id)
        if t == "Attribute":
            base = self.value(node.value)
            if isinstance(base, _Module) and base.name == "os" and node.attr == "environ":
                return _Env(self.environ)
            if isinstance(base, _Module) and base.name in ("os", "os.path") and isinstance(node.ctx, ast.Load):
                return _Module(base.name + "." + node.attr)
            if isinstance(base, _Module):
                self.fail(node, "uses %s.%s, a value of an imported module this tool does not read"
                          % (base.name, node.attr))
            self.fail(node, "uses an attribute (.%s) this tool cannot evaluate" % node.attr)
        if t == "Subscript":
            base = self.value(node.value)
            sl = node.slice
            if type(sl).__name__ == "Index":
                sl = sl.value
            key = self.value(sl)
            if isinstance(base, _Env):
                if key not in self.environ:
                    self.fail(node, "reads os.environ[%s], which is not in the service's environment "
                                    "(gunicorn would stop with KeyError)" % (_q(key),))
                return self.environ[key]
            try:
                return base[key]
            except Exception:
                self.fail(node, "indexes a value this tool cannot evaluate")
        if t == "BinOp":
            op = type(node.op).__name__
            left, right = self.value(node.left), self.value(node.right)
            try:
                if op == "Add":
                    return left + right
                if op == "Mod" and isinstance(left, string_types):
                    return left % right
                if op == "Mult":
                    return left * right
            except Exception as e:
                self.fail(node, "computes a value that fails (%s)" % e)
            self.fail(node, "uses an operator (%s) this tool does not evaluate" % op)
        if t == "JoinedStr":
            parts = []
            for v in node.values:
                if type(v).__name__ == "FormattedValue":
                    inner = self.value(v.value)
                    spec = self.value(v.format_spec) if v.format_spec is not None else ""
                    conv = {115: str, 114: repr, 97: ascii if str is not bytes else repr}.get(v.conversion)  # noqa: F821
                    if conv:
                        inner = conv(inner)
                    parts.append(format(inner, spec))
                else:
                    parts.append(self.value(v))
            return "".join(parts)
        if t == "Call":
            return self.call(node)
        if t == "IfExp":
            self.fail(node, "chooses a value with a conditional expression")
        self.fail(node, "uses an expression (%s) this tool does not evaluate" % t)

    def call(self, node):
        f = node.func
        if getattr(node, "starargs", None) or getattr(node, "kwargs", None):
            self.fail(node, "calls a function with */** arguments")
        args = [self.value(a) for a in node.args]
        kwargs = dict((k.arg, self.value(k.value)) for k in node.keywords)
        if type(f).__name__ == "Name" and f.id in ("str", "int") and not kwargs:
            try:
                return {"str": str, "int": int}[f.id](*args)
            except Exception as e:
                self.fail(node, "%s() fails (%s)" % (f.id, e))
        if type(f).__name__ == "Name" and f.id in self.names and isinstance(self.names[f.id], _Module):
            fname = self.names[f.id].name
        elif type(f).__name__ == "Attribute":
            base = self.value(f.value)
            if isinstance(base, _Env) and f.attr == "get" and not kwargs and len(args) in (1, 2):
                return self.environ.get(args[0], args[1] if len(args) == 2 else None)
            if isinstance(base, string_types) and f.attr in ("format", "join", "strip", "lower", "upper",
                                                             "replace", "split"):
                try:
                    return getattr(base, f.attr)(*args, **kwargs)
                except Exception as e:
                    self.fail(node, "%s() fails (%s)" % (f.attr, e))
            if isinstance(base, _Module):
                fname = base.name + "." + f.attr
            else:
                self.fail(node, "calls .%s(), which this tool does not evaluate" % f.attr)
        else:
            self.fail(node, "calls a function this tool does not evaluate")
        if fname == "os.getenv" and not kwargs and len(args) in (1, 2):
            return self.environ.get(args[0], args[1] if len(args) == 2 else None)
        self.fail(node, "calls %s(), which this tool does not evaluate" % fname)

    # statements ---------------------------------------------------------
    def assigned_names(self, node):
        names = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
            elif type(sub).__name__ == "Global":
                names.update(sub.names)
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                for a in sub.names:
                    names.add((a.asname or a.name).split(".")[0])
            elif type(sub).__name__ in ("FunctionDef", "ClassDef", "AsyncFunctionDef"):
                names.add(sub.name)
        return names

    def setting_call(self, node):
        """exec(), globals().update(...), vars()[..] = ...: anything could be set."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                f = sub.func
                if type(f).__name__ == "Name" and f.id in ("exec", "execfile", "globals", "locals", "vars",
                                                           "setattr", "__import__", "eval"):
                    return f.id
            if type(sub).__name__ == "Exec":  # Python 2 exec statement
                return "exec"
        return None

    def run(self, tree):
        for node in tree.body:
            self.statement(node)
        out = {}
        for name in _SETTINGS:
            if name in self.names:
                v = self.names[name]
                if isinstance(v, _Unknown):
                    raise NotUnderstood(v.why)
                out[name] = v
        if "bind" in out:
            b = out["bind"]
            if isinstance(b, string_types):
                b = [b]
            if not isinstance(b, (list, tuple)) or not all(isinstance(x, string_types) for x in b):
                raise NotUnderstood("%s: bind = %s is not a string or a list of strings; gunicorn would "
                                    "refuse it" % (self.label, _q(b)))
            out["bind"] = list(b)
        if "forwarded_allow_ips" in out and isinstance(out["forwarded_allow_ips"], (list, tuple)):
            out["forwarded_allow_ips"] = ",".join(out["forwarded_allow_ips"])
        return out

    def statement(self, node):
        t = type(node).__name__
        danger = self.setting_call(node)
        if danger:
            self.fail(node, "calls %s(), which can set any setting, bind included" % danger)
        if t in ("Import",):
            for a in node.names:
                self.names[(a.asname or a.name).split(".")[0]] = _Module(a.name if a.asname else
                                                                         a.name.split(".")[0])
            return
        if t == "ImportFrom":
            for a in node.names:
                if a.name == "*":
                    self.fail(node, "imports * from %s, which could set bind" % node.module)
                target = a.asname or a.name
                if target in _SETTINGS:
                    self.fail(node, "imports %s from %s" % (target, node.module))
                if node.module == "os" and a.name == "environ":
                    self.names[target] = _Env(self.environ)
                elif node.module == "os" and a.name == "getenv":
                    self.names[target] = _Module("os.getenv")
                else:
                    self.names[target] = _Unknown("%s line %d: uses %s imported from %s, which this tool "
                                                  "does not read" % (self.label, node.lineno, target, node.module))
            return
        if t in ("Assign", "AnnAssign", "AugAssign"):
            targets = node.targets if t == "Assign" else [node.target]
            if t == "AnnAssign" and node.value is None:
                return
            for target in targets:
                if type(target).__name__ == "Name":
                    self.assign(node, target.id, t)
                elif type(target).__name__ in ("Tuple", "List"):
                    for e in target.elts:
                        if type(e).__name__ == "Name":
                            if e.id in _SETTINGS:
                                self.fail(node, "sets %s by unpacking" % e.id)
                            self.names[e.id] = _Unknown("%s line %d: %s is set by unpacking" %
                                                        (self.label, node.lineno, e.id))
                else:
                    self.check_mutation(node)
            return
        if t == "Expr":
            self.check_mutation(node)
            return
        if t in ("FunctionDef", "ClassDef", "AsyncFunctionDef"):
            self.names[node.name] = _Unknown("%s line %d: %s is a function or class" %
                                             (self.label, node.lineno, node.name))
            return
        if t in ("Pass", "Global", "Nonlocal", "Print", "Assert"):
            return
        if t == "Delete":
            for target in node.targets:
                if type(target).__name__ == "Name":
                    self.names.pop(target.id, None)
            return
        # compound statements: if / for / while / try / with
        names = self.assigned_names(node)
        hit = [n for n in _SETTINGS if n in names]
        if hit:
            line = node.lineno
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and sub.id in hit and isinstance(sub.ctx, ast.Store):
                    line = sub.lineno
                    break
            self.fail(node, "sets %s inside %s block (line %d); only a top-level assignment is understood: "
                            "set it unconditionally" % (hit[0], _article(t), line))
        for sub in ast.walk(node):
            if isinstance(sub, ast.Expr):
                self.check_mutation(sub)
        for n in names:
            self.names[n] = _Unknown("%s line %d: %s is set inside %s block" % (self.label, node.lineno, n,
                                                                                _article(t)))

    def check_mutation(self, node):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and type(sub.func).__name__ == "Attribute":
                obj = sub.func.value
                if type(obj).__name__ == "Name" and obj.id in _SETTINGS:
                    if obj.id == "bind" and sub.func.attr in ("append", "extend", "insert") and \
                            isinstance(self.names.get("bind"), list):
                        args = [self.value(a) for a in sub.args]
                        getattr(self.names["bind"], sub.func.attr)(*args)
                        continue
                    self.fail(node, "changes %s with .%s()" % (obj.id, sub.func.attr))
            if type(sub).__name__ in ("Subscript", "Attribute") and isinstance(getattr(sub, "ctx", None), ast.Store):
                base = sub.value
                if type(base).__name__ == "Name" and base.id in _SETTINGS:
                    self.fail(node, "changes %s in place" % base.id)

    def assign(self, node, name, kind):
        try:
            v = self.value(node.value)
            if kind == "AugAssign":
                if name not in self.names:
                    self.fail(node, "extends %s before setting it" % name)
                cur = self.names[name]
                if isinstance(cur, _Unknown):
                    raise NotUnderstood(cur.why)
                op = type(node.op).__name__
                if op != "Add":
                    self.fail(node, "uses %s= on %s" % (op, name))
                if isinstance(cur, list) and isinstance(v, string_types):
                    self.fail(node, "adds a string to the list %s character by character" % name)
                v = cur + (list(v) if isinstance(cur, list) and isinstance(v, tuple) else v)
            if isinstance(v, list):
                v = list(v)
            if name in _SETTINGS and isinstance(v, (_Module, _Env)):
                self.fail(node, "sets %s to a module or os.environ itself" % name)
            self.names[name] = v
        except NotUnderstood as e:
            if name in _SETTINGS:
                raise NotUnderstood("%s; set %s to a literal (or to os.environ values) or name the binds on the "
                                    "command line" % (e, name))
            self.names[name] = _Unknown(str(e))


def _article(t):
    return {"If": "an if", "For": "a for", "While": "a while", "Try": "a try", "TryExcept": "a try",
            "TryFinally": "a try", "With": "a with", "AsyncWith": "a with", "AsyncFor": "a for"}.get(t, "a " + t)


def parse_config_file(text, environ=None, label="config file"):
    """{bind: [...], reuse_port, forwarded_allow_ips} that gunicorn would take from this config file.

    Raises ValueError (NotUnderstood) naming the line when a value cannot be known without running it.
    """
    if str is bytes and not isinstance(text, str):  # Python 2: a coding: line is refused in a unicode string
        text = text.encode("utf-8")
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise NotUnderstood("%s line %s: this host's Python cannot parse it (%s)" % (label, e.lineno, e.msg))
    return ConfigEvaluator(environ or {}, label).run(tree)


# ---------------------------------------------------------------------------
# systemd

def parse_show(text):
    """`systemctl show` output -> [{property: value or [values] for repeated properties}]."""
    units = []
    for block in re.split(r"\n\s*\n", text):
        d = {}
        for line in block.splitlines():
            if "=" not in line:
                continue
            k, v = line.split("=", 1)
            if k in d:
                if not isinstance(d[k], list):
                    d[k] = [d[k]]
                d[k].append(v)
            else:
                d[k] = v
        if d:
            units.append(d)
    return units


def _as_list(v):
    if v is None or v == "":
        return []
    return v if isinstance(v, list) else [v]


_EXEC_ITEM = re.compile(r"\{ path=(?P<path>.*?) ; argv\[\]=(?P<argv>.*?) ; (?P<rest>(?:ignore_errors|flags)=.*?) \}")


def parse_exec_property(values):
    """ExecStart= lines of `systemctl show` -> [{path, argv_text, ignore_errors, flags}]."""
    out = []
    for v in _as_list(values):
        for m in _EXEC_ITEM.finditer(v):
            rest = m.group("rest")
            flags = re.search(r"flags=(\S*)", rest)
            ign = re.search(r"ignore_errors=(\w+)", rest)
            out.append({"path": m.group("path"), "argv_text": m.group("argv"),
                        "ignore_errors": bool(ign and ign.group(1) == "yes") or
                        bool(flags and "ignore-failure" in flags.group(1)),
                        "flags": flags.group(1).split("|") if flags and flags.group(1) else []})
    return out


def parse_show_environment(value):
    """The Environment= property (elements quoted by newer systemd when they hold spaces)."""
    value = value or ""
    try:
        words = shlex.split(value)
    except ValueError:
        words = value.split()
    env, order = {}, []
    last = None
    for w in words:
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", w, re.S)
        if m:
            last = m.group(1)
            env[last] = m.group(2)
            if last in order:
                order.remove(last)
            order.append(last)
        elif last is not None:  # older systemd: a value with spaces is not quoted
            env[last] += " " + w
    return env


def parse_environment_files(values):
    """EnvironmentFiles= lines: 'PATH (ignore_errors=yes|no)' -> [(path, optional)]."""
    out = []
    for v in _as_list(values):
        m = re.match(r"^(.*?) \(ignore_errors=(yes|no)\)$", v.strip())
        if m:
            out.append((m.group(1), m.group(2) == "yes"))
        elif v.strip():
            p = v.strip()
            out.append((p.lstrip("-"), p.startswith("-")))
    return out


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHELL_NEED_ESCAPE = "\"\\`$"


def parse_environment_file(text):
    """An EnvironmentFile= as systemd reads it (env-file.c, load_env_file), -> {name: value}.

    `export X=1` is an invalid assignment (the name holds a space) and is ignored, as systemd
    ignores it; quotes, backslash escapes and continuations, # and ; comments. A comment that
    ends in a backslash does not continue (systemd 254 and later).
    """
    env = {}
    state = "PRE_KEY"
    key, value = [], []
    last_key_ws = last_value_ws = -1

    def push():
        k = "".join(key)
        if last_key_ws >= 0:
            k = k[:last_key_ws]
        if _ENV_NAME.match(k):
            env[k] = "".join(value)

    for c in text + "\n":
        if state == "PRE_KEY":
            if c in "#;":
                state = "COMMENT"
            elif not c.isspace():
                state, key, last_key_ws = "KEY", [c], -1
        elif state == "KEY":
            if c == "\n":
                state = "PRE_KEY"
            elif c == "=":
                state, value, last_value_ws = "PRE_VALUE", [], -1
            else:
                if c.isspace():
                    if last_key_ws < 0:
                        last_key_ws = len(key)
                else:
                    last_key_ws = -1
                key.append(c)
        elif state == "PRE_VALUE":
            if c == "\n":
                push()
                state = "PRE_KEY"
            elif c == "'":
                state = "SINGLE"
            elif c == '"':
                state = "DOUBLE"
            elif c == "\\":
                state = "VALUE_ESCAPE"
            elif not c.isspace():
                state = "VALUE"
                value.append(c)
        elif state == "VALUE":
            if c == "\n":
                if last_value_ws >= 0:
                    del value[last_value_ws:]
                push()
                state = "PRE_KEY"
            elif c == "\\":
                state, last_value_ws = "VALUE_ESCAPE", -1
            else:
                if c.isspace():
                    if last_value_ws < 0:
                        last_value_ws = len(value)
                else:
                    last_value_ws = -1
                value.append(c)
        elif state == "VALUE_ESCAPE":
            state = "VALUE"
            if c != "\n":
                value.append(c)
        elif state == "SINGLE":
            if c == "'":
                state = "PRE_VALUE"
            else:
                value.append(c)
        elif state == "DOUBLE":
            if c == '"':
                state = "PRE_VALUE"
            elif c == "\\":
                state = "DOUBLE_ESCAPE"
            else:
                value.append(c)
        elif state == "DOUBLE_ESCAPE":
            state = "DOUBLE"
            if c in _SHELL_NEED_ESCAPE:
                value.append(c)
            elif c != "\n":
                value.extend(["\\", c])
        elif state == "COMMENT":
            if c == "\\":
                state = "COMMENT_ESCAPE"
            elif c == "\n":
                state = "PRE_KEY"
        elif state == "COMMENT_ESCAPE":
            state = "PRE_KEY" if c == "\n" else "COMMENT"
    return env


def parse_env_file(text):
    """parse_environment_file under its earlier name (systemd's rules: `export` lines are ignored)."""
    return parse_environment_file(text)


def parse_env_assignments(items):
    """NAME=value items -> dict (the Environment= words of unit_exec_start)."""
    env = {}
    for item in items:
        if "=" in item:
            k, v = item.split("=", 1)
            env[k] = v
    return env


_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "s": " ", "\\": "\\", '"': '"', "'": "'"}


def split_unit_words(text):
    """Words of an ExecStart= value as systemd splits them (quotes, C escapes)."""
    words, cur, i, quote, in_word = [], [], 0, None, False
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and i + 1 < len(text):
                i += 1
                cur.append(_unescape_c(text, i))
                i += _escape_len(text, i) - 1
            else:
                cur.append(c)
        elif c.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        elif c in "'\"" and not in_word:
            quote, in_word = c, True
        elif c == "\\" and i + 1 < len(text):
            i += 1
            cur.append(_unescape_c(text, i))
            i += _escape_len(text, i) - 1
            in_word = True
        else:
            cur.append(c)
            in_word = True
        i += 1
    if quote:
        raise NotUnderstood("ExecStart has an unterminated quote")
    if in_word:
        words.append("".join(cur))
    return words


def _escape_len(text, i):
    c = text[i]
    if c == "x":
        return 3
    if c in "01234567" and re.match(r"[0-7]{3}", text[i:i + 3]):
        return 3
    if c == "u":
        return 5
    if c == "U":
        return 9
    return 1


def _unescape_c(text, i):
    c = text[i]
    if c in _C_ESCAPES:
        return _C_ESCAPES[c]
    try:
        if c == "x":
            return chr(int(text[i + 1:i + 3], 16))
        if c in "01234567" and re.match(r"[0-7]{3}", text[i:i + 3]):
            return chr(int(text[i:i + 3], 8))
        if c in "uU":
            n = 4 if c == "u" else 8
            return _unichr(int(text[i + 1:i + 1 + n], 16))
    except ValueError:
        pass
    return c


def unit_sections(texts):
    """[(key, value)] of [Service] in load order, continuation lines joined."""
    items = []
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
            items.append((k.strip(), v.strip()))
    return items


def unit_exec_start(texts):
    """Effective ExecStart from unit file texts in load order (fragment, then drop-ins in order).

    -> (prefix, argv, environment items, environment files); ValueError unless exactly one ExecStart.
    Discovery takes the effective values from `systemctl show`; this recovers word boundaries.
    """
    execs, env, env_files = [], [], []
    for k, v in unit_sections(texts):
        if k == "ExecStart":
            execs = [] if v == "" else execs + [v]
        elif k == "Environment":
            env = [] if v == "" else env + split_unit_words(v)
        elif k == "EnvironmentFile":
            env_files = [] if v == "" else env_files + [v]
    if len(execs) != 1:
        raise NotUnderstood("has %d ExecStart= lines in effect; expected exactly one" % len(execs))
    m = re.match(r"^([-@:+!|]*)(.*)$", execs[0])
    return m.group(1), split_unit_words(m.group(2)), env, env_files


def unescape_unit_name(s):
    """systemd's unit name unescaping: '-' is '/', \\xNN is that byte."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), s.replace("-", "/"))


def resolve_specifiers(word, unit):
    """The specifiers systemd resolves in ExecStart that depend only on the unit name."""
    name = unit
    prefix_inst = name.rsplit(".", 1)[0]
    prefix = prefix_inst.split("@", 1)[0]
    inst = prefix_inst.split("@", 1)[1] if "@" in prefix_inst else ""
    table = {"n": name, "N": prefix_inst, "p": prefix, "P": unescape_unit_name(prefix),
             "i": inst, "I": unescape_unit_name(inst),
             "j": prefix.rsplit("-", 1)[-1], "%": "%"}
    out, i = [], 0
    while i < len(word):
        if word[i] == "%" and i + 1 < len(word):
            c = word[i + 1]
            if c not in table:
                raise NotUnderstood("specifier %%%s" % c)
            out.append(table[c])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def expand_exec_env(words, environ):
    """systemd's $VAR (whole word, split at whitespace) and ${VAR} (in place, one word) in ExecStart."""
    out = []
    for w in words:
        m = re.match(r"^\$([A-Za-z_][A-Za-z0-9_]*)$", w)
        if m:
            # replace_env_argv(): the value is split into words, quotes honoured (EXTRACT_UNQUOTE|EXTRACT_RELAX)
            value = environ.get(m.group(1), "")
            try:
                out.extend(shlex.split(value))
            except ValueError:
                out.extend(value.split())
            continue

        def sub(mm):
            if mm.group(0) == "$$":
                return "$"
            return environ.get(mm.group(1), "")
        out.append(re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, w))
    return out


def dropin_name(existing_paths):
    """A drop-in name that sorts after every other drop-in (lexical order across all directories).

    An existing dualstack-rollout drop-in that already sorts last keeps its name, so a
    second run writes the same file.
    """
    others = [os.path.basename(p) for p in existing_paths if not os.path.basename(p).endswith(DROPIN_SUFFIX)]
    ours = sorted(os.path.basename(p) for p in existing_paths if os.path.basename(p).endswith(DROPIN_SUFFIX))
    last = max(others) if others else ""
    for name in reversed(ours):
        if name > last:
            return name
    for head in ("99-", "zz-", "zzzz-", "zzzzzzzz-"):
        if head + DROPIN_SUFFIX > last:
            return head + DROPIN_SUFFIX
    return "~" + DROPIN_SUFFIX


# ---------------------------------------------------------------------------
# launch forms

_SHELLS = ("sh", "bash", "dash", "ash", "ksh", "zsh", "busybox")
_PY = re.compile(r"^python(\d(\.\d+)?)?[dmu]*$")
_GUNICORN_BIN = re.compile(r"^gunicorn(3|-3(\.\d+)?|-py3|-\d\.\d+)?$")
_WRAPPERS = {
    "newrelic-admin": "run-program",
    "ddtrace-run": None,
    "opentelemetry-instrument": None,
    "dumb-init": None,
    "tini": None,
    "nice": None,
    "authbind": None,
    "scout-apm": None,
    "elastic-apm-run": None,
}


class Launch(object):
    """How a command line reaches gunicorn."""

    def __init__(self):
        self.argv = []          # the whole command, normalized (what the rewrite repeats)
        self.gunicorn_index = None  # index in argv of the gunicorn program word ('gunicorn' after -m too)
        self.program = None     # path (or word) of the gunicorn program or script
        self.interpreter = None  # python, when known from the command
        self.module = False     # python -m gunicorn
        self.env = {}           # assignments made by env / the shell
        self.env_clear = False
        self.env_unset = []
        self.chdir = None
        self.launcher = []      # e.g. ["sh -c", "env", "newrelic-admin run-program"]

    @property
    def gunicorn_args(self):
        return self.argv[self.gunicorn_index + 1:]


def _base(word):
    return os.path.basename(word or "")


def mentions_gunicorn(text):
    return "gunicorn" in (text or "")


def classify(argv, fs, path_env=DEFAULT_PATH, environ=None):
    """argv of a unit or program (no shell) -> Launch; NotUnderstood naming the reason."""
    launch = Launch()
    words = list(argv)
    prefix = []
    while words:
        w0 = words[0]
        b = _base(w0)
        if b == "env":
            prefix.append(w0)
            launch.launcher.append("env")
            i = 1
            while i < len(words):
                a = words[i]
                if a in ("-i", "--ignore-environment", "-"):
                    launch.env_clear = True
                    launch.env = {}
                elif a in ("-u", "--unset") and i + 1 < len(words):
                    launch.env_unset.append(words[i + 1])
                    launch.env.pop(words[i + 1], None)
                    prefix.append(a)
                    i += 1
                    a = words[i]
                elif a.startswith("--unset="):
                    launch.env_unset.append(a.split("=", 1)[1])
                elif a in ("-C", "--chdir") and i + 1 < len(words):
                    prefix.append(a)
                    i += 1
                    a = words[i]
                    launch.chdir = a
                elif a.startswith("--chdir="):
                    launch.chdir = a.split("=", 1)[1]
                elif a == "--":
                    pass
                elif a.startswith("-S") or a.startswith("--split-string"):
                    raise NotUnderstood("runs env -S (a split string), which this tool does not read; "
                                        "write the command words directly")
                elif a.startswith("-"):
                    raise NotUnderstood("runs env with option %s, which this tool does not read" % a)
                elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", a):
                    k, v = a.split("=", 1)
                    launch.env[k] = v
                else:
                    break
                prefix.append(a)
                i += 1
            words = words[i:]
            continue
        if b in _SHELLS:
            raise NotUnderstood("_shell_")  # handled by the caller, which knows the environment
        if b in _WRAPPERS or (b == "newrelic-admin"):
            prefix.append(w0)
            i = 1
            if b == "newrelic-admin":
                if len(words) < 2 or words[1] not in ("run-program", "run-python"):
                    raise NotUnderstood("runs newrelic-admin %s, not run-program or run-python"
                                        % (words[1] if len(words) > 1 else ""))
                prefix.append(words[1])
                launch.launcher.append("newrelic-admin " + words[1])
                if words[1] == "run-python":  # the rest are the interpreter's arguments
                    k = _python_m(words[2:])
                    if k is None:
                        raise NotUnderstood("runs newrelic-admin run-python without -m gunicorn")
                    launch.module = True
                    launch.program = "gunicorn"
                    launch.argv = prefix + words[2:]
                    launch.gunicorn_index = len(prefix) + k
                    return launch
                i = 2
            else:
                launch.launcher.append(b)
                while i < len(words) and words[i].startswith("-"):
                    a = words[i]
                    if a == "--":
                        prefix.append(a)
                        i += 1
                        break
                    prefix.append(a)
                    i += 1
                    if b in ("opentelemetry-instrument",) and "=" not in a and i < len(words):
                        prefix.append(words[i])
                        i += 1
                    elif b == "nice" and a in ("-n", "--adjustment") and i < len(words):
                        prefix.append(words[i])
                        i += 1
                    elif b == "dumb-init" and a in ("-r", "--rewrite") and i < len(words):
                        prefix.append(words[i])
                        i += 1
            words = words[i:]
            continue
        break
    if not words:
        raise NotUnderstood("runs no program after its wrappers")
    w0 = words[0]
    b = _base(w0)
    if _PY.match(b):
        launch.interpreter = w0
        rest = words[1:]
        k = _python_m(rest)
        if k is not None:
            launch.module = True
            launch.program = "gunicorn"
            launch.argv = prefix + words
            launch.gunicorn_index = len(prefix) + 1 + k
            launch.launcher.append("python -m gunicorn")
            return launch
        script = _python_script(rest)
        if script is not None and _GUNICORN_BIN.match(_base(rest[script])):
            launch.program = rest[script]
            launch.argv = prefix + words
            launch.gunicorn_index = len(prefix) + 1 + script
            launch.launcher.append("python SCRIPT")
            return launch
        raise NotUnderstood("runs %s with arguments this tool does not read as gunicorn (%s)"
                            % (b, " ".join(rest[:4])))
    if b in ("gunicorn_django", "gunicorn_paster", "gunicorn_pylons"):
        raise NotUnderstood("runs %s, deprecated and gone from gunicorn 20: the bind may come from the Django "
                            "settings or the Paste .ini's [server:main] host/port, which this tool does not "
                            "rewrite; run `gunicorn` with the WSGI module and --bind instead, %s" % (b, SKIP_HINT))
    path = _which(w0, fs, path_env)
    if _GUNICORN_BIN.match(b):
        kind = script_kind(fs, path) if path else None
        if kind in (None, "python-gunicorn", "missing"):
            launch.program = path or w0
            launch.argv = prefix + words
            launch.gunicorn_index = len(prefix)
            launch.launcher.append("gunicorn")
            return launch
        raise NotUnderstood("runs %s, a %s named like gunicorn; it is not gunicorn's console script and is never "
                            "run by this tool. %s" % (path, kind, WRAPPER_HINT))
    kind = script_kind(fs, path) if path else None
    if kind == "python-gunicorn":
        launch.program = path
        launch.argv = prefix + words
        launch.gunicorn_index = len(prefix)
        launch.launcher.append("gunicorn")
        return launch
    if "gunicorn" in b or (kind and kind.endswith("mentioning gunicorn")):
        raise NotUnderstood("runs %s, a %s; wrapper scripts are never run by this tool, so the binds inside "
                            "cannot be known. %s" % (path or w0, kind or "program named like gunicorn",
                                                     WRAPPER_HINT))
    raise NotUnderstood("runs %s, which this tool does not read as gunicorn" % (path or w0))


WRAPPER_HINT = ("Start gunicorn itself in ExecStart=/command= (its options, GUNICORN_CMD_ARGS in Environment=, "
                "or a -c config file), or list the service in gunicorn_dualstack__skip_services")


def _python_m(rest):
    """Index (in rest) of 'gunicorn' after -m, skipping the interpreter's own options; None if not -m gunicorn."""
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "-m" and i + 1 < len(rest):
            return i + 1 if rest[i + 1] == "gunicorn" else None
        if a.startswith("-m") and len(a) > 2:
            return None
        if a in ("-W", "-X", "-Q"):
            i += 2
            continue
        if a.startswith("-") and a != "-" and a != "-c" and "c" not in a[1:] and "m" not in a[1:]:
            i += 1
            continue
        return None
    return None


def _python_script(rest):
    i = 0
    while i < len(rest):
        a = rest[i]
        if a in ("-W", "-X", "-Q"):
            i += 2
            continue
        if a.startswith("-"):
            if "c" in a[1:] or "m" in a[1:]:
                return None
            i += 1
            continue
        return i
    return None


def _which(word, fs, path_env):
    if "/" in word:
        return word
    for d in (path_env or DEFAULT_PATH).split(":"):
        if d and fs.isfile(os.path.join(d, word)):
            return os.path.join(d, word)
    return None


def script_kind(fs, path):
    """What a program file is, from its first bytes (read, never run)."""
    if not fs.exists(path):
        return "missing"
    head = fs.read_head(path, 4096)
    if head is None:
        return "unreadable file"
    if head.startswith("\x7fELF"):
        return "binary executable"
    if not head.startswith("#!"):
        return "file with no #! line%s" % (" mentioning gunicorn" if "gunicorn" in head else "")
    first = head.splitlines()[0]
    is_py = "python" in first or re.search(r"^'''exec' \S*python", head, re.M) is not None
    if is_py and len(head) < 2048 and re.search(r"from gunicorn\.app\.wsgiapp import run\b|"
                                                r"load_entry_point\(['\"]gunicorn[=']|"
                                                r"EASY-INSTALL-ENTRY-SCRIPT: 'gunicorn[=']", head):
        return "python-gunicorn"
    kind = "Python script" if is_py else "shell script" if re.search(r"\b(ba|da|k|z)?sh\b", first) else "script"
    if "gunicorn" in head:
        kind += " mentioning gunicorn"
    return kind


def script_interpreter(fs, path, path_env):
    """The python a console script runs under, from its #! line (pip's /bin/sh trampoline too)."""
    head = fs.read_head(path, 4096) or ""
    lines = head.splitlines()
    if not lines or not lines[0].startswith("#!"):
        return None
    m = re.search(r"^'''exec' (\S+)", head, re.M)
    if m:
        return m.group(1).strip("'\"")
    words = lines[0][2:].split()
    if not words:
        return None
    if _base(words[0]) == "env":
        rest = [w for w in words[1:] if not w.startswith("-")]
        return _which(rest[0], fs, path_env) if rest else None
    return words[0]


# ---------------------------------------------------------------------------
# the shell's simple command (sh -c "...")

def shell_simple_command(text, environ):
    """Words of a `sh -c` string that is one simple command -> (assignments, words).

    Expands $VAR, ${VAR}, ${VAR:-x}, ${VAR-x} with the given environment, like sh does
    (unquoted expansions are split at whitespace). Refuses anything else.
    """
    words, assigns = [], []
    cur, has_word, i, n = [], False, 0, len(text)
    quote = None

    def expand(j):
        if text[j + 1:j + 2] == "{":
            end = text.find("}", j)
            if end < 0:
                raise NotUnderstood("has an unterminated ${")
            body = text[j + 2:end]
            m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-=])(.*))?$", body)
            if not m:
                raise NotUnderstood("uses ${%s}, a shell expansion this tool does not evaluate" % body)
            name, op, default = m.group(1), m.group(2), m.group(3)
            val = environ.get(name)
            if op and (val is None or (op.startswith(":") and val == "")):
                val = default
            return val or "", end + 1
        m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)", text[j:])
        if m:
            return environ.get(m.group(1), ""), j + len(m.group(0))
        nxt = text[j + 1:j + 2]
        if nxt in ("(", "[", "$", "!", "?", "#", "*", "@") or nxt.isdigit():
            raise NotUnderstood("uses $%s, a shell construct this tool does not evaluate" % nxt)
        return "$", j + 1

    while i < n:
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = None
            else:
                cur.append(c)
            i += 1
            continue
        if quote == '"':
            if c == '"':
                quote = None
                i += 1
            elif c == "\\" and i + 1 < n and text[i + 1] in "$`\"\\\n":
                if text[i + 1] != "\n":
                    cur.append(text[i + 1])
                i += 2
            elif c == "$":
                val, i = expand(i)
                cur.append(val)
            elif c == "`":
                raise NotUnderstood("uses a command substitution (`...`)")
            else:
                cur.append(c)
                i += 1
            continue
        if c in " \t":
            if has_word:
                words.append("".join(cur))
                cur, has_word = [], False
            i += 1
            continue
        if c == "\n" or c in ";&|<>()`{}":
            if c in "<>" or (c == "&" and text[i + 1:i + 2] == ">"):
                raise NotUnderstood("redirects input or output in the shell; gunicorn's --error-logfile/"
                                    "--access-logfile or systemd's StandardOutput= do that without a shell")
            raise NotUnderstood("is a compound shell command (%s), not one simple command" % _q(c))
        if c == "#" and not has_word:
            break
        if c in "'\"":
            quote, has_word = c, True
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            if text[i + 1] != "\n":
                cur.append(text[i + 1])
                has_word = True
            i += 2
            continue
        if c == "$":
            val, i = expand(i)
            if val:
                parts = val.split()
                if parts:
                    if val[0].isspace() and has_word:
                        words.append("".join(cur))
                        cur = []
                    cur.append(parts[0])
                    for p in parts[1:]:
                        words.append("".join(cur))
                        cur = [p]
                    has_word = True
                    if val[-1].isspace():
                        words.append("".join(cur))
                        cur, has_word = [], False
            continue
        if c in "*?[" :
            raise NotUnderstood("uses a glob character (%s)" % c)
        cur.append(c)
        has_word = True
        i += 1
    if quote:
        raise NotUnderstood("has an unterminated quote")
    if has_word:
        words.append("".join(cur))
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        assigns.append(tuple(words.pop(0).split("=", 1)))
    if words and words[0] == "exec":
        words.pop(0)
        if words and words[0].startswith("-"):
            raise NotUnderstood("runs exec %s" % words[0])
    if words and words[0] in ("cd", "source", ".", "export", "set", "eval", "if", "for", "while", "case"):
        raise NotUnderstood("runs the shell builtin %s before gunicorn; compound commands are not read" % words[0])
    return assigns, words


def shell_c(argv):
    """(shell word, -c string) when argv is `sh -c STRING`, else None."""
    if not argv or _base(argv[0]) not in _SHELLS:
        return None
    i = 1
    if _base(argv[0]) == "busybox":
        if len(argv) < 2 or argv[1] not in ("sh", "ash"):
            return None
        i = 2
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and not a.startswith("--") and "c" in a[1:]:
            if i + 1 >= len(argv):
                return None
            return argv[0], argv[i + 1]
        if a.startswith("-") or a.startswith("+"):
            i += 1
            continue
        return None
    return None


def understand_command(argv, fs, environ, path_env=None):
    """Launch for a command line, shells included; environ is the environment the command starts with."""
    path_env = path_env or environ.get("PATH") or DEFAULT_PATH
    sc = shell_c(argv)
    if sc is not None:
        shell, inner = sc
        if not mentions_gunicorn(inner):
            raise NotUnderstood("runs %s -c with a command that does not start gunicorn" % _base(shell))
        try:
            assigns, words = shell_simple_command(inner, environ)
        except NotUnderstood as e:
            raise NotUnderstood("runs %s -c %s, which %s; put the gunicorn command itself in ExecStart=/command= "
                                "(environment in Environment=/environment=), %s" % (_base(shell), _q(inner), e, SKIP_HINT))
        env2 = dict(environ)
        env2.update(dict(assigns))
        try:
            launch = classify((["env"] + ["%s=%s" % a for a in assigns] if assigns else []) + words, fs,
                              env2.get("PATH") or path_env, env2)
        except NotUnderstood as e:
            if str(e) == "_shell_":
                raise NotUnderstood("runs a shell inside %s -c" % _base(shell))
            raise NotUnderstood("runs %s -c %s, which %s" % (_base(shell), _q(inner), e))
        if assigns:
            launch.argv[0] = "/usr/bin/env"
        launch.launcher.insert(0, _base(shell) + " -c")
        return launch
    try:
        return classify(argv, fs, path_env, environ)
    except NotUnderstood as e:
        if str(e) == "_shell_":
            raise NotUnderstood("runs a shell (%s) without -c; a shell script is never run by this tool. %s"
                                % (" ".join(argv[:2]), WRAPPER_HINT))
        raise


# ---------------------------------------------------------------------------
# the installed gunicorn, read from disk

def python_site_dirs(fs, interpreter, home=None):
    """The site directories an interpreter would import from, in sys.path order."""
    interp = interpreter
    real = fs.realpath(interp)
    names = [_base(interp), _base(real)]
    xy = None
    for n in names:
        m = re.match(r"^python(\d\.\d+)", n)
        if m:
            xy = m.group(1)
            break
    bindir = os.path.dirname(interp)
    prefix = os.path.dirname(bindir)
    dirs = []
    cfg = fs.read(os.path.join(prefix, "pyvenv.cfg")) if fs.exists(os.path.join(prefix, "pyvenv.cfg")) else None
    legacy_venv = fs.exists(os.path.join(prefix, "lib", "python%s" % (xy or "*"), "orig-prefix.txt")) or \
        bool(fs.glob(os.path.join(prefix, "lib", "python*", "orig-prefix.txt")))
    system_site = True
    if cfg is not None or legacy_venv:
        if cfg is not None:
            m = re.search(r"^\s*version(?:_info)?\s*=\s*(\d+\.\d+)", cfg, re.M)
            if m and not xy:
                xy = m.group(1)
            m = re.search(r"^\s*include-system-site-packages\s*=\s*(\w+)", cfg, re.M)
            system_site = bool(m and m.group(1).lower() == "true")
        else:
            system_site = not fs.glob(os.path.join(prefix, "lib", "python*", "no-global-site-packages.txt"))
        pat = "python%s" % (xy or "*")
        for lib in ("lib", "lib64"):
            dirs.extend(sorted(fs.glob(os.path.join(prefix, lib, pat, "site-packages"))))
        if not system_site:
            return dirs, xy
        m = re.search(r"^\s*home\s*=\s*(\S+)", cfg or "", re.M)
        base = os.path.dirname(m.group(1)) if m else os.path.dirname(os.path.dirname(real))
        prefix = base
    elif real != interp:
        prefix = os.path.dirname(os.path.dirname(real))
    pat = "python%s" % (xy or ("3*" if "3" in _base(interp) else "2*" if "2" in _base(interp) else "*"))
    if home and not (cfg is not None or legacy_venv):
        dirs.extend(sorted(fs.glob(os.path.join(home, ".local", "lib", pat, "site-packages"))))
    cands = []
    for p in (prefix, "/usr/local", "/usr"):
        for lib in ("lib", "lib64"):
            cands.append(os.path.join(p, lib, pat, "site-packages"))
            cands.append(os.path.join(p, lib, pat, "dist-packages"))
    if prefix in ("/usr", "/"):
        cands = [os.path.join("/usr/local/lib", pat, "dist-packages"), os.path.join("/usr/local/lib", pat,
                                                                                    "site-packages")] + cands
        major = (xy or pat[6:7] or "3")[0]
        cands.append("/usr/lib/python%s/dist-packages" % major if major in "23" else "/usr/lib/python3/dist-packages")
    for c in cands:
        for d in sorted(fs.glob(c)):
            if d not in dirs:
                dirs.append(d)
    return dirs, xy


def gunicorn_version_in(fs, sitedir):
    """(version, file it was read from) of a gunicorn installed in sitedir, or (None, None)."""
    init = os.path.join(sitedir, "gunicorn", "__init__.py")
    if fs.exists(init):
        text = fs.read(init)
        m = re.search(r"^version_info\s*=\s*\(([^)]*)\)", text, re.M)
        if m:
            nums = re.findall(r"\d+", m.group(1))
            if nums:
                return ".".join(nums[:3]), init
        m = re.search(r"^__version__\s*=\s*['\"]([\d.]+)['\"]", text, re.M)
        if m:
            return m.group(1), init
    for pat, field in (("gunicorn-*.dist-info/METADATA", "Version"), ("gunicorn-*.egg-info/PKG-INFO", "Version"),
                       ("gunicorn-*.egg-info", "Version")):
        for meta in sorted(fs.glob(os.path.join(sitedir, pat))):
            if fs.isdir(meta):
                meta = os.path.join(meta, "PKG-INFO")
                if not fs.exists(meta):
                    continue
            m = re.search(r"^Version:\s*(\S+)", fs.read(meta) or "", re.M)
            if m:
                return m.group(1), meta
    return None, None


def find_gunicorn_version(fs, launch, path_env, home=None):
    """(version, version_source, interpreter) for a Launch; never runs anything."""
    interp = launch.interpreter
    if interp and "/" not in interp:
        interp = _which(interp, fs, path_env) or interp
    if not interp and launch.program and "/" in launch.program and fs.exists(launch.program):
        interp = script_interpreter(fs, launch.program, path_env)
    if not interp or not fs.exists(interp):
        return None, None, interp
    dirs, _xy = python_site_dirs(fs, interp, home)
    for d in dirs:
        v, src = gunicorn_version_in(fs, d)
        if v:
            return v, src, interp
    return None, None, interp


# ---------------------------------------------------------------------------
# one service: environment + command -> effective settings

def service_settings(argv, environ, workdir, fs, home=None):
    """The understood service: (launch, fields dict). NotUnderstood on anything that is not."""
    launch = understand_command(argv, fs, environ)
    env = {} if launch.env_clear else dict(environ)
    for k in launch.env_unset:
        env.pop(k, None)
    env.update(launch.env)
    path_env = env.get("PATH") or DEFAULT_PATH
    if launch.chdir:
        workdir = os.path.join(workdir, launch.chdir)
    version, vsource, interp = find_gunicorn_version(fs, launch, path_env, home)
    vt = version_tuple(version)
    cli = parse_gunicorn_args(launch.gunicorn_args)
    if cli["paste"] and (vt or OLDEST) < PASTE_BIND_BEFORE:
        raise NotUnderstood("runs gunicorn --paste %s: gunicorn %s takes the bind from the .ini's [server:main] "
                            "host/port, which this tool does not rewrite; give --bind on the command line (it wins "
                            "over the .ini), %s" % (cli["paste"], version or "(version unknown, taken as 19.9)",
                                                    SKIP_HINT))
    if not cli["args"] and not cli["paste"]:
        raise NotUnderstood("runs gunicorn without an application module")
    cmd_args = env.get("GUNICORN_CMD_ARGS")
    env_args = parse_cmd_args_env(cmd_args) if cmd_args is not None else None
    if env_args is not None and (vt or OLDEST) < CMD_ARGS_SINCE:
        env_args = None
    config_path, config_source = cli["config"], "cli"
    if not config_path and env_args is not None and env_args["config"]:
        if vt is None or vt >= CMD_ARGS_CONFIG_SINCE:
            config_path, config_source = env_args["config"], "env"
    if not config_path:
        default = os.path.join(workdir or "/", "gunicorn.conf.py")
        if fs.exists(default):
            config_path, config_source = default, "config_default"
    config = {}
    if config_path:
        if config_path.startswith("python:"):
            raise NotUnderstood("loads its config from a Python module (%s), which this tool does not import; "
                                "use -c with a file path, %s" % (config_path, SKIP_HINT))
        if config_path.startswith("file:"):
            config_path = config_path[len("file:"):]
        if not os.path.isabs(config_path):
            config_path = os.path.normpath(os.path.join(workdir or "/", config_path))
        if not fs.exists(config_path):
            raise NotUnderstood("config file %s does not exist (gunicorn would not start)" % config_path)
        text = fs.read(config_path)
        if text is None:
            raise NotUnderstood("config file %s cannot be read" % config_path)
        config = parse_config_file(text, env, label=config_path)
    eff = effective_settings(cli, env_args, config, env, vt)
    if eff["bind_source"] == "config" and config_source == "config_default":
        eff["bind_source"] = "config_default"
    fields = {
        "argv": launch.argv,
        "gunicorn_index": launch.gunicorn_index,
        "app_module": (cli["args"] or [None])[0],
        "launcher": launch.launcher,
        "env_in_command": sorted(launch.env),
        "interpreter": interp,
        "binds": eff["bind"],
        "bind_source": eff["bind_source"],
        "gunicorn_cmd_args": cmd_args,
        "config_file": config_path,
        "config_file_source": config_source if config_path else None,
        "reuse_port": eff["reuse_port"],
        "reuse_port_source": eff["reuse_port_source"],
        "forwarded_allow_ips": eff["forwarded_allow_ips"],
        "forwarded_allow_ips_source": eff["forwarded_allow_ips_source"],
        "version": version,
        "version_known": version is not None,
        "version_source": vsource,
        "port_env": env.get("PORT"),
    }
    return launch, fields, env


# ---------------------------------------------------------------------------
# file access (rooted, so tests can lay out a host in a directory)

class FS(object):
    def __init__(self, root="/"):
        self.root = root

    def p(self, path):
        if self.root in ("/", ""):
            return path
        full = os.path.join(self.root, path.lstrip("/"))
        if os.path.islink(full):  # an absolute link target is inside the root too
            full = os.path.join(self.root, self.realpath(path).lstrip("/"))
        return full

    def _raw(self, path):
        return path if self.root in ("/", "") else os.path.join(self.root, path.lstrip("/"))

    def exists(self, path):
        return os.path.exists(self.p(path))

    def isfile(self, path):
        return os.path.isfile(self.p(path))

    def isdir(self, path):
        return os.path.isdir(self.p(path))

    def read(self, path):
        try:
            with open(self.p(path), "rb") as f:
                data = f.read()
        except (IOError, OSError):
            return None
        return data.decode("utf-8", "replace")

    def read_head(self, path, n):
        try:
            with open(self.p(path), "rb") as f:
                data = f.read(n)
        except (IOError, OSError):
            return None
        return data.decode("latin-1")

    def glob(self, pattern):
        found = glob.glob(self.p(pattern))
        if self.root in ("/", ""):
            return found
        r = self.root.rstrip("/")
        return ["/" + f[len(r):].lstrip("/") for f in found]

    def realpath(self, path):
        """Follow the symlinks of the last component (inside root)."""
        for _hop in range(20):
            full = self._raw(path)
            if not os.path.islink(full):
                return path
            target = os.readlink(full)
            path = os.path.normpath(os.path.join(os.path.dirname(path), target))
        return path

    def passwd_home(self, user):
        text = self.read("/etc/passwd") or ""
        for line in text.splitlines():
            parts = line.split(":")
            if len(parts) >= 6 and parts[0] == user:
                return parts[5]
        return None


# ---------------------------------------------------------------------------
# the host

class CommandFailed(Exception):
    pass


class Host(object):
    """Commands on the managed host, each under `timeout`."""

    SHOW_PROPS = ("Id,LoadState,ActiveState,SubState,UnitFileState,FragmentPath,SourcePath,DropInPaths,"
                  "ExecStart,Environment,EnvironmentFiles,UnsetEnvironment,WorkingDirectory,User,MainPID")

    def __init__(self, module, timeout=20, root="/"):
        self.module = module
        self.timeout = timeout
        self.fs = FS(root)
        self.commands = []

    def run(self, args, ok_rcs=(0,)):
        self.commands.append(list(args))
        timeout = self.module.get_bin_path("timeout") if self.module else None
        if not timeout:
            raise CommandFailed("coreutils `timeout` is not on this host; it is needed to bound %s"
                                % " ".join(args))
        rc, out, err = self.module.run_command([timeout, str(self.timeout)] + list(args),
                                               environ_update={"LC_ALL": "C", "SYSTEMD_PAGER": "",
                                                               "SYSTEMD_COLORS": "0"})
        if rc == 124:
            raise CommandFailed("`%s` timed out after %s s" % (" ".join(args), self.timeout))
        if rc not in ok_rcs:
            raise CommandFailed("`%s` failed (rc %s): %s" % (" ".join(args), rc, (err or out).strip()[:500]))
        return out

    def has_systemd(self):
        return self.fs.isdir("/run/systemd/system") and bool(self.module.get_bin_path("systemctl"))

    def list_units(self):
        return self.run(["systemctl", "list-units", "--type=service", "--all", "--no-legend", "--plain",
                         "--no-pager"])

    def list_unit_files(self):
        return self.run(["systemctl", "list-unit-files", "--type=service", "--no-legend", "--no-pager"])

    def show(self, units):
        out = []
        for i in range(0, len(units), 100):
            out.append(self.run(["systemctl", "show", "--property=" + self.SHOW_PROPS, "--"] + units[i:i + 100]))
        return "\n\n".join(out)

    def supervisorctl_status(self, conf):
        exe = self.module.get_bin_path("supervisorctl") or "supervisorctl"
        # rc 3: some process is not running (supervisor >= 4.2); the output is still the status
        return self.run([exe, "-c", conf, "status"], ok_rcs=(0, 3))

    # kept for the rewrite's tests and for callers of the old API
    def supervisor_unit(self):
        return getattr(self, "_sup_unit", None) or "supervisor.service"


def _observe(host, svc, env):
    """Hand the environment gunicorn gets to a test host; it is never returned (it may hold secrets)."""
    hook = getattr(host, "observe", None)
    if hook:
        hook(svc, env)


def _fs(host):
    return getattr(host, "fs", None) or FS("/")


# ---------------------------------------------------------------------------
# systemd discovery

def unit_names(list_units_out, list_unit_files_out):
    names = set()
    for line in (list_units_out or "").splitlines():
        parts = [p for p in line.split() if p not in ("*", u"\u25cf")]
        if parts and parts[0].endswith(".service"):
            names.add(parts[0])
    for line in (list_unit_files_out or "").splitlines():
        parts = line.split()
        if parts and parts[0].endswith(".service") and "@." not in parts[0]:
            names.add(parts[0])
    return sorted(names)


def _exec_words(unit, item, d, fs):
    """(prefix, words) of the effective ExecStart: show's argv, with word boundaries from the unit files."""
    text = item["argv_text"]
    files = [d.get("FragmentPath")] + (d.get("DropInPaths") or "").split()
    texts = [fs.read(f) for f in files if f]
    if all(t is not None for t in texts) and texts:
        try:
            prefix, words, _env, _env_files = unit_exec_start(texts)
            words = [resolve_specifiers(w, unit) for w in words]
            if " ".join(words) == text:
                return prefix, words, True
        except NotUnderstood:
            pass
    prefix = "-" if item["ignore_errors"] else ""
    if "no-env-expand" in item["flags"]:
        prefix += ":"
    return prefix, text.split(), False


def systemd_environment(d, fs):
    """Environment as the service's process gets it: Environment=, then EnvironmentFile=s in order."""
    env = parse_show_environment(d.get("Environment"))
    used = {}
    for path, optional in parse_environment_files(d.get("EnvironmentFiles")):
        text = fs.read(path)
        if text is None:
            if optional:
                continue
            raise NotUnderstood("EnvironmentFile %s is missing or unreadable (systemd would not start the service)"
                                % path)
        file_env = parse_environment_file(text)
        for k in file_env:
            used[k] = path
        env.update(file_env)
    for item in (d.get("UnsetEnvironment") or "").split():
        if "=" in item:
            k, v = item.split("=", 1)
            if env.get(k) == v:
                env.pop(k)
        else:
            env.pop(item, None)
    return env, used


def _workdir(d, fs):
    wd = (d.get("WorkingDirectory") or "").lstrip("-!")
    if wd == "~":
        wd = fs.passwd_home(d.get("User") or "root") or "/"
    return wd or "/"


def discover_systemd(host, only=(), skip=()):
    fs = _fs(host)
    services, problems = [], []
    names = unit_names(host.list_units(), host.list_unit_files())
    sup_units = {}
    shown = parse_show(host.show(names)) if names else []
    for d in shown:
        unit = d.get("Id")
        if not unit or d.get("LoadState") != "loaded":
            continue
        if unit in ("supervisor.service", "supervisord.service"):
            sup_units[unit] = d
        items = parse_exec_property(d.get("ExecStart"))
        text = " ".join(i["path"] + " " + i["argv_text"] for i in items)
        base = unit[:-len(".service")]
        if only and unit not in only and base not in only:
            continue
        if unit in skip or base in skip:
            continue
        if not items:
            continue
        try:
            if len(items) != 1:
                if mentions_gunicorn(text):
                    raise NotUnderstood("has %d ExecStart= commands in effect; expected one" % len(items))
                continue
            item = items[0]
            prefix, words, exact = _exec_words(unit, item, d, fs)
            if not mentions_gunicorn(text):
                # a script that mentions gunicorn is a wrapper this tool must name, not skip
                kind = script_kind(fs, item["path"]) if not item["path"].startswith(
                    ("/usr/lib/systemd/", "/lib/systemd/")) else None
                if not (kind and "mentioning gunicorn" in kind):
                    continue
            env, env_files_used = systemd_environment(d, fs)
            if ":" not in prefix:
                expanded = expand_exec_env(words, env)
            else:
                expanded = list(words)
            if not exact and shell_c(expanded) is not None:
                raise NotUnderstood("runs a shell -c command whose words `systemctl show` cannot tell apart "
                                    "(argv[]=%s) and the unit files do not match it" % item["argv_text"])
            if expanded and "/" not in expanded[0] and item["path"].endswith("/" + expanded[0]):
                expanded = [item["path"]] + expanded[1:]
            user = d.get("User") or "root"
            home = fs.passwd_home(user)
            launch, fields, genv = service_settings(expanded, env, _workdir(d, fs), fs, home)
        except NotUnderstood as e:
            problems.append("%s: %s" % (unit, e))
            continue
        dropins = [p for p in (d.get("DropInPaths") or "").split() if p]
        name = dropin_name(dropins)
        dropin_dir = "/etc/systemd/system/%s.d" % unit
        svc = {"name": base, "unit": unit, "manager": "systemd", "cgroup_unit": unit,
               "fragment_path": d.get("FragmentPath"), "dropin_paths": dropins,
               "dropin_dir": dropin_dir, "dropin_path": os.path.join(dropin_dir, name),
               "dropin_superseded_paths": [p for p in dropins if p.endswith(DROPIN_SUFFIX)
                                           and p != os.path.join(dropin_dir, name)],
               "exec_prefix": prefix, "exec_argv": words, "exec_words_exact": exact,
               "active": d.get("ActiveState") == "active", "state": d.get("ActiveState"),
               "sub_state": d.get("SubState"),
               "enabled": d.get("UnitFileState") in ("enabled", "enabled-runtime"),
               "unit_file_state": d.get("UnitFileState"),
               "pid": int(d.get("MainPID") or 0),
               "working_directory": _workdir(d, fs), "user": user,
               "gunicorn_cmd_args_file": None}
        svc.update(fields)
        _observe(host, svc, genv)
        # the file that gives the value gunicorn gets (not when env/the shell in ExecStart sets it again)
        if svc["gunicorn_cmd_args"] is not None and "GUNICORN_CMD_ARGS" not in svc["env_in_command"]:
            f = env_files_used.get("GUNICORN_CMD_ARGS")
            svc["gunicorn_cmd_args_file"] = f
            if f and svc["bind_source"] == "env":
                svc["bind_source"] = "envfile"
        svc["port_env_file"] = env_files_used.get("PORT") if svc["port_env"] is not None and \
            "PORT" not in svc["env_in_command"] else None
        svc["forwarded_allow_ips_file"] = env_files_used.get("FORWARDED_ALLOW_IPS") \
            if svc["forwarded_allow_ips_source"] == "environment" and \
            "FORWARDED_ALLOW_IPS" not in svc["env_in_command"] else None
        services.append(svc)
    return services, problems, sup_units


# ---------------------------------------------------------------------------
# supervisord

SUPERVISOR_CONFS = ("/etc/supervisord.conf", "/etc/supervisor/supervisord.conf")


def supervisor_search_order(exe=None, cwd="/"):
    """supervisord's own order (options.py default_configfile) when no -c is given."""
    out = []
    if exe:
        here = os.path.dirname(os.path.dirname(exe))
        out += [os.path.join(here, "etc", "supervisord.conf"), os.path.join(here, "supervisord.conf")]
    out += [os.path.join(cwd or "/", "supervisord.conf"), os.path.join(cwd or "/", "etc", "supervisord.conf")]
    out += list(SUPERVISOR_CONFS)
    return out


def _ini(text):
    try:
        p = RawConfigParser(strict=False, inline_comment_prefixes=(";",), interpolation=None)
    except TypeError:  # Python 2.7
        p = RawConfigParser()
        text = re.sub(r"(?m)\s;.*$", "", text)
    p.optionxform = lambda s: s.lower()
    if hasattr(p, "read_string"):
        p.read_string(text)
    else:
        import io
        p.readfp(io.StringIO(text if isinstance(text, type(u"")) else text.decode("utf-8")))
    return p


def supervisor_expand(value, expansions, what):
    """supervisord's expand(): Python %-formatting with its expansion names."""
    try:
        return value % expansions
    except KeyError as e:
        key = e.args[0]
        if str(key).startswith("ENV_"):
            raise NotUnderstood("%s contains %%(%s)s, and %s is not in supervisord's environment as this tool can "
                                "read it (/proc/PID/environ of supervisord, else its unit's Environment=)"
                                % (what, key, key[4:]))
        raise NotUnderstood("%s contains %%(%s)s, which supervisord cannot expand either" % (what, key))
    except (ValueError, TypeError) as e:
        raise NotUnderstood("%s is not a valid supervisord format string (%s)" % (what, e))


def supervisor_programs(confs=None, fs=None, env=None, node=None):
    """[(name, options (expanded only for here/ENV), file, main conf, main parser)] for every [program:x]."""
    fs = fs or FS("/")
    env = os.environ if env is None else env
    main = None
    for c in confs or SUPERVISOR_CONFS:
        if fs.isfile(c):
            main = c
            break
    if main is None:
        return []
    base = {"here": os.path.dirname(main), "host_node_name": node or socket.gethostname()}
    for k, v in env.items():
        base["ENV_" + k] = v
    parser = _ini(fs.read(main) or "")
    files = [(main, parser)]
    if parser.has_section("include") and parser.has_option("include", "files"):
        raw = supervisor_expand(parser.get("include", "files"), base, "[include] files=")
        for pattern in raw.split():
            if not os.path.isabs(pattern):
                pattern = os.path.join(os.path.dirname(main), pattern)
            for f in sorted(fs.glob(pattern)):
                files.append((f, _ini(fs.read(f) or "")))
    out = []
    for f, p in files:
        for sec in p.sections():
            if sec.startswith("program:"):
                out.append((sec[len("program:"):], dict(p.items(sec)), f, main, parser))
    return out


_ENV_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^,]*)\s*(?:,|$)')


def parse_supervisor_environment(text):
    """[(key, raw value text)] of supervisord's environment=KEY="v",KEY2=v2."""
    pairs, pos, text = [], 0, (text or "").strip()
    while pos < len(text):
        m = _ENV_PAIR.match(text, pos)
        if not m or m.end() == pos:
            raise NotUnderstood("has an environment= that cannot be read: %s" % _q(text))
        pairs.append((m.group(1), m.group(2).strip()))
        pos = m.end()
    return pairs


def _unquote(raw):
    """supervisord reads environment= with shlex (dict_of_key_value_pairs)."""
    try:
        parts = shlex.split(raw)
    except ValueError:
        return raw
    return parts[0] if len(parts) == 1 else " ".join(parts)


def process_environ(fs, pid):
    """The environment a running process started with (/proc/PID/environ; read as root), or None."""
    try:
        pid = int(pid or 0)
    except ValueError:
        return None
    if pid <= 0:
        return None
    data = fs.read("/proc/%d/environ" % pid)
    if not data:
        return None
    env = {}
    for item in data.split("\0"):
        if "=" in item:
            k, v = item.split("=", 1)
            env[k] = v
    return env


def _supervisord_environ_from_pidfile(fs, confs):
    """supervisord's environment when no systemd unit runs it: its pidfile= names its process."""
    for c in confs or SUPERVISOR_CONFS:
        if not fs.isfile(c):
            continue
        try:
            p = _ini(fs.read(c) or "")
            pidfile = p.get("supervisord", "pidfile") if p.has_option("supervisord", "pidfile") else None
        except Exception:
            return {}
        pidfile = (pidfile or "").replace("%(here)s", os.path.dirname(c))
        if pidfile and os.path.isabs(pidfile):
            pid = (fs.read(pidfile) or "").strip()
            return process_environ(fs, pid if pid.isdigit() else 0) or {}
        return {}
    return {}


def parse_supervisorctl_status(text):
    """{process name: (state, pid)} from `supervisorctl status`."""
    out = {}
    for line in (text or "").splitlines():
        m = re.match(r"^(\S+)\s+([A-Z]+)\s*(.*)$", line)
        if not m:
            continue
        pid = re.search(r"pid (\d+)", m.group(3))
        out[m.group(1)] = (m.group(2), int(pid.group(1)) if pid else 0)
    return out


def _truthy(v, default=True):
    if v is None:
        return default
    return str(v).strip().lower() in ("true", "yes", "on", "1")


def _default_supervisor_unit(host):
    """supervisord's unit when systemctl did not show one; None on a host without systemd."""
    if not getattr(host, "has_systemd", lambda: True)() or not hasattr(host, "supervisor_unit"):
        return None
    return host.supervisor_unit()


def discover_supervisor(host, only=(), skip=(), sup_units=None):
    fs = _fs(host)
    services, problems = [], []
    sup_units = sup_units or {}
    sup_unit, sup_show = None, None
    for u in ("supervisor.service", "supervisord.service"):
        if u in sup_units:
            sup_unit, sup_show = u, sup_units[u]
            break
    confs, sup_env = None, {}
    if sup_show:
        items = parse_exec_property(sup_show.get("ExecStart"))
        if items:
            words = items[0]["argv_text"].split()
            for i, w in enumerate(words):
                if w in ("-c", "--configuration") and i + 1 < len(words):
                    confs = (words[i + 1],)
                elif w.startswith("--configuration="):
                    confs = (w.split("=", 1)[1],)
                elif w.startswith("-c") and len(w) > 2:
                    confs = (w[2:],)
            if confs is None:
                confs = tuple(supervisor_search_order(items[0]["path"], _workdir(sup_show, fs)))
        sup_env = process_environ(fs, sup_show.get("MainPID"))
        if sup_env is None:
            try:
                sup_env, _used = systemd_environment(sup_show, fs)
            except NotUnderstood:
                sup_env = {}
    else:
        sup_env = _supervisord_environ_from_pidfile(fs, confs)
    try:
        programs = supervisor_programs(confs, fs, sup_env)
    except (NotUnderstood, Exception) as e:  # supervisord itself would refuse it too
        return [], ["supervisord: cannot read its configuration: %s" % e]
    if not programs:
        return [], []
    main, main_parser = programs[0][3], programs[0][4]
    groups = {}
    for sec in main_parser.sections():
        if sec.startswith("group:") and main_parser.has_option(sec, "programs"):
            for p in main_parser.get(sec, "programs").split(","):
                groups[p.strip()] = sec[len("group:"):]
    sup_global_env = []
    if main_parser.has_section("supervisord") and main_parser.has_option("supervisord", "environment"):
        try:
            sup_global_env = parse_supervisor_environment(main_parser.get("supervisord", "environment"))
        except NotUnderstood:
            sup_global_env = []
    statuses, status_known, status_note = None, False, None
    candidates = []
    for name, opts, path, _main, _parser in programs:
        label = "supervisor:" + name
        if only and name not in only and label not in only:
            continue
        if name in skip or label in skip:
            continue
        if not mentions_gunicorn(opts.get("command", "")):
            # a wrapper script that mentions gunicorn is named, not skipped
            try:
                first = shlex.split(opts.get("command", "") or "")[:1]
            except ValueError:
                first = []
            if not first or not first[0].startswith("/") or "mentioning gunicorn" not in script_kind(fs, first[0]):
                continue
        candidates.append((name, opts, path, label))
    if not candidates:
        return [], []
    running = sup_show is None or sup_show.get("ActiveState") == "active"
    if running and hasattr(host, "supervisorctl_status"):
        statuses = parse_supervisorctl_status(host.supervisorctl_status(main))
        status_known = True
    elif not running:
        status_note = "supervisord (%s) is %s" % (sup_unit, sup_show.get("ActiveState"))
    for name, opts, path, label in candidates:
        try:
            numprocs = int(opts.get("numprocs", "1") or 1)
            if numprocs > 1:
                raise NotUnderstood("numprocs > 1 (numprocs=%d) runs several gunicorn masters from one command=; "
                                    "set numprocs=1 (one program per bind), %s" % (numprocs, SKIP_HINT))
            process_num = int(opts.get("numprocs_start", "0") or 0)
            group = groups.get(name, name)
            exp = {"here": os.path.dirname(path), "program_name": name, "group_name": group,
                   "process_num": process_num, "numprocs": numprocs, "host_node_name": socket.gethostname()}
            for k, v in sup_env.items():
                exp["ENV_" + k] = v
            raw_command = opts.get("command", "")
            command = supervisor_expand(raw_command, exp, "command=")
            process_name = supervisor_expand(opts.get("process_name", "%(program_name)s"), exp, "process_name=")
            directory = supervisor_expand(opts.get("directory"), exp, "directory=") if opts.get("directory") else None
            raw_env = opts.get("environment", "")
            pairs = parse_supervisor_environment(raw_env)
            env = dict(sup_env)
            for k, v in sup_global_env:
                env[k] = _unquote(supervisor_expand(v, exp, "[supervisord] environment="))
            for k, v in pairs:
                env[k] = _unquote(supervisor_expand(v, exp, "environment="))
            env.setdefault("SUPERVISOR_ENABLED", "1")
            env["SUPERVISOR_PROCESS_NAME"] = process_name
            env["SUPERVISOR_GROUP_NAME"] = group
            try:
                argv = shlex.split(command)
            except ValueError as e:
                raise NotUnderstood("command= cannot be split as supervisord splits it: %s" % e)
            if not argv:
                raise NotUnderstood("has an empty command=")
            user = opts.get("user") or "root"
            workdir = directory or (sup_show and _workdir(sup_show, fs)) or "/"
            if "/" not in argv[0]:
                found = _which(argv[0], fs, env.get("PATH") or DEFAULT_PATH)
                if found:
                    argv[0] = found
            launch, fields, genv = service_settings(argv, env, workdir, fs, fs.passwd_home(user))
        except NotUnderstood as e:
            problems.append("%s: %s" % (label, e))
            continue
        # supervisorctl's name: the process alone when it is its group's name, else group:process
        key = process_name if group == process_name else "%s:%s" % (group, process_name)
        if status_known:
            state, pid = statuses.get(key) or statuses.get(process_name) or ("UNKNOWN", 0)
        else:
            state, pid = "STOPPED", 0
        svc = {"name": name, "unit": label, "manager": "supervisor", "conf_path": path,
               "section": "program:" + name, "command": raw_command, "exec_prefix": "",
               "cgroup_unit": sup_unit or _default_supervisor_unit(host), "fragment_path": path, "dropin_paths": [],
               "dropin_path": None, "process_name": key, "supervisord_conf": main,
               "active": state in ("RUNNING", "STARTING", "BACKOFF", "STOPPING"), "state": state, "pid": pid,
               "enabled": _truthy(opts.get("autostart"), True),
               "working_directory": workdir, "user": user,
               "environment_pairs": [list(p) for p in pairs], "gunicorn_cmd_args_file": None,
               "port_env_file": None, "forwarded_allow_ips_file": None}
        if status_note:
            svc["state_note"] = status_note
        svc.update(fields)
        _observe(host, svc, genv)
        services.append(svc)
    return services, problems


# ---------------------------------------------------------------------------

def discover(host, only=(), skip=()):
    services, problems, sup_units = [], [], {}
    if getattr(host, "has_systemd", lambda: True)():
        services, problems, sup_units = discover_systemd(host, only, skip)
    sup_services, sup_problems = discover_supervisor(host, only, skip, sup_units)
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


def is_gunicorn(argv):
    """True when argv starts gunicorn in a way this tool understands (no file access)."""
    try:
        understand_command(argv, FS("/nonexistent-root"), {})
        return True
    except NotUnderstood:
        return False


def main():
    from ansible.module_utils.basic import AnsibleModule
    module = AnsibleModule(
        argument_spec=dict(only=dict(type="list", elements="str", default=[]),
                           skip=dict(type="list", elements="str", default=[]),
                           command_timeout=dict(type="int", default=20)),
        supports_check_mode=True,
    )
    host = Host(module, timeout=module.params["command_timeout"])
    try:
        services, problems = discover(host, module.params["only"], module.params["skip"])
    except CommandFailed as e:
        module.fail_json(msg="gunicorn service discovery: %s" % e, commands=host.commands)
    module.exit_json(changed=False, services=services, problems=problems, commands=host.commands)


if __name__ == "__main__":
    main()
