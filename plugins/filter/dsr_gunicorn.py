"""Render a bind plan where the service defines its binds (filter plugin).

gunicorn's precedence is command line > GUNICORN_CMD_ARGS > config file (-c,
or ./gunicorn.conf.py) > the PORT / FORWARDED_ALLOW_IPS environment > the
built-in default, so each value goes to the source that defines it today:

  bind_source
  cli, default,   a systemd drop-in that resets ExecStart= and repeats the
  port_env        command with the new --bind (and --reuse-port) options in
                  place of the old ones (supervisord: the program's command=)
  env             GUNICORN_CMD_ARGS where it is set: Environment= (a drop-in
                  line), an EnvironmentFile (its line), `env VAR=...` in the
                  command, or supervisord's environment=
  envfile         the GUNICORN_CMD_ARGS= line of that EnvironmentFile
  config,         a managed block at the end of that config file (a later
  config_default  top-level assignment wins when gunicorn executes the file)

forwarded_allow_ips follows its own source (forwarded_allow_ips_source:
cli, env, config, environment = FORWARDED_ALLOW_IPS - in the EnvironmentFile
forwarded_allow_ips_file when discovery names one, else Environment= -,
default = with the binds).

The service's argv is discovery's: the words the process gets ($VAR expanded,
specifiers resolved); gunicorn_index, when given, marks the gunicorn word.

The command line is read the way gunicorn's argparse parser reads it (options
on either side of the app module, `-bX`, `--bind=X`, clustered short flags,
unique prefixes of long options, `--`), and rewritten in place: every other
argument stays where it was, byte for byte.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shlex

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_addresses import interface_map
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import bind_plan

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass

DROPIN_NAME = "99-dualstack-rollout.conf"

# gunicorn's command-line options, 19.x .. 27.x (tests compare this table with
# every installed version's own settings). Value: the setting name for the
# three this tool manages, "" for the others.
_VALUE_OPTS = dict.fromkeys((
    "-c", "--config", "-w", "--workers", "-k", "--worker-class", "--threads", "--worker-connections",
    "--max-requests", "--max-requests-jitter", "-t", "--timeout", "--graceful-timeout", "--keep-alive",
    "--limit-request-line", "--limit-request-fields", "--limit-request-field_size", "--reload-engine",
    "--reload-extra-file", "--chdir", "-e", "--env", "-p", "--pid", "--worker-tmp-dir", "-u", "--user",
    "-g", "--group", "-m", "--umask", "--access-logfile", "--access-logformat", "--error-logfile",
    "--log-file", "--log-level", "--logger-class", "--log-config", "--log-config-dict", "--log-config-json",
    "--log-syslog-to", "--log-syslog-prefix", "--log-syslog-facility", "--statsd-host", "--statsd-prefix",
    "--dogstatsd-tags", "-n", "--name", "--pythonpath", "--paste", "--paster", "--paste-global",
    "--proxy-allow-from", "--keyfile", "--certfile", "--ssl-version", "--cert-reqs", "--ca-certs",
    "--ciphers", "--backlog", "--forwarder-headers", "--header-map", "--root-path", "--protocol",
    "--uwsgi-allow-from", "--http-protocols", "--http-parser", "--http2-cleartext",
    "--http2-max-concurrent-streams", "--http2-initial-window-size", "--http2-max-frame-size",
    "--http2-max-header-list-size", "--control-socket", "--control-socket-mode", "--asgi-loop",
    "--asgi-lifespan", "--asgi-disconnect-grace-period", "--websocket-max-message-size", "--dirty-app",
    "--dirty-workers", "--dirty-timeout", "--dirty-threads", "--dirty-graceful-timeout",
), "")
_VALUE_OPTS.update({"-b": "bind", "--bind": "bind", "--forwarded-allow-ips": "forwarded_allow_ips"})
# --proxy-protocol takes an optional value from 24 on (nargs="?"); it never
# takes an option-looking token, so reading it as a flag finds the same options.
_FLAG_OPTS = dict.fromkeys((
    "-D", "--daemon", "-R", "--enable-stdio-inheritance", "--reload", "--spew", "--check-config",
    "--print-config", "--preload", "--no-sendfile", "--initgroups", "--capture-output", "--log-syslog",
    "--disable-redirect-access-to-syslog", "--proxy-protocol", "--suppress-ragged-eofs",
    "--do-handshake-on-connect", "--strip-header-spaces", "--permit-unconventional-http-method",
    "--permit-unconventional-http-version", "--casefold-http-method", "--permit-obsolete-folding",
    "--enable-backlog-metric", "--no-control-socket", "-v", "--version", "-h", "--help",
), "")
_FLAG_OPTS["--reuse-port"] = "reuse_port"
_ALL_OPTS = dict(_VALUE_OPTS, **_FLAG_OPTS)

_GUNICORN_PROG = re.compile(r"^gunicorn(3|-3(\.\d+)*)?$")
_PYTHON_PROG = re.compile(r"^python[0-9.]*[a-z]?$")
_SHELLS = ("sh", "bash", "dash", "ash", "zsh", "ksh")
# Options of python itself that take a value (python -X dev -m gunicorn).
_PYTHON_VALUE_OPTS = ("-X", "-W", "-Q", "--check-hash-based-pycs")


class RewriteError(AnsibleFilterError):
    """A command or setting this tool cannot rewrite safely."""


# ---------------------------------------------------------------------------
# gunicorn's argument parser, as argparse applies it to gunicorn's options

def _opt(token):
    """(option string, explicit value or None) when argparse reads `token` as
    one of gunicorn's options; None when it is a positional argument."""
    if not token or token[0] != "-" or token == "-":
        return None
    if token in _ALL_OPTS:
        return token, None
    if "=" in token:
        name, value = token.split("=", 1)
        if name in _ALL_OPTS:
            return name, value
    # unique prefixes (argparse's allow_abbrev) and -bVALUE
    if token.startswith("--"):
        name, _eq, value = token.partition("=")
        hits = [o for o in _ALL_OPTS if o.startswith(name) and o.startswith("--")]
        if len(hits) == 1:
            return hits[0], (value if "=" in token else None)
        if len(hits) > 1:
            raise RewriteError("option %r is ambiguous to gunicorn (%s)" % (token, ", ".join(sorted(hits))))
    else:
        short = token[:2]
        if short in _ALL_OPTS:
            return short, token[2:]
    if re.match(r"^-\d+$|^-\d*\.\d+$", token) or " " in token:
        return None
    return token, None  # an option this table does not know: read as a flag


def scan_args(args):
    """Split gunicorn's arguments into groups, argparse's way.

    Returns [{"start", "end", "parts": [(option string, setting, value)]}];
    a positional argument is a group without parts; `--` and everything after
    it is one group of positionals. `setting` is bind, reuse_port,
    forwarded_allow_ips or "" (another option).
    """
    groups = []
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            groups.append({"start": i, "end": len(args), "parts": []})
            break
        hit = _opt(tok)
        if hit is None:
            groups.append({"start": i, "end": i + 1, "parts": []})
            i += 1
            continue
        parts = []
        name, explicit = hit
        end = i + 1
        while True:
            if name in _VALUE_OPTS:
                if explicit is None:
                    if end >= len(args) or args[end] == "--" or _opt(args[end]) is not None:
                        raise RewriteError("option %s has no value" % name)
                    explicit = args[end]
                    end += 1
                parts.append((name, _VALUE_OPTS[name], explicit))
                break
            setting = _FLAG_OPTS.get(name, "")
            parts.append((name, setting, None))
            if explicit is None:
                break
            if name.startswith("--") or name not in _FLAG_OPTS:
                raise RewriteError("option %s takes no value (%r)" % (name, tok))
            # clustered short flags: -Db X is -D -b X
            if explicit == "":
                break
            nxt = "-" + explicit[0]
            if nxt not in _ALL_OPTS:
                raise RewriteError("option %r is not understood" % tok)
            name, explicit = nxt, (explicit[1:] or None)
        groups.append({"start": i, "end": end, "parts": parts})
        i = end
    return groups


def effective_args(args):
    """{bind: [...], reuse_port: bool, forwarded_allow_ips: str or None} as gunicorn reads these args."""
    out = {"bind": [], "reuse_port": False, "forwarded_allow_ips": None}
    for g in scan_args(args):
        for name, setting, value in g["parts"]:
            if setting == "bind":
                out["bind"].append(value)
            elif setting == "reuse_port":
                out["reuse_port"] = True
            elif setting == "forwarded_allow_ips":
                out["forwarded_allow_ips"] = value
    return out


def rewrite_args(args, binds=None, reuse_port=False, forwarded_allow_ips=None, style="cli"):
    """gunicorn's args with the managed options replaced, everything else kept.

    binds                the new bind list, or None to leave binds as they are
    reuse_port           True: make sure --reuse-port is given
    forwarded_allow_ips  the new value, or None to leave it as it is
    style                "cli" (--bind X) or "env" (--bind=X, for GUNICORN_CMD_ARGS)

    The new options take the place of the first option they replace, or go
    first when the args have none (before the app module and any `--`).
    """
    groups = scan_args(args)
    has_reuse = any(s == "reuse_port" for g in groups for _name, s, _value in g["parts"])

    def opt(name, value):
        return [name + "=" + value] if style == "env" else [name, value]

    bind_opts = [x for b in (binds or []) for x in opt("--bind", b)]
    reuse_opts = ["--reuse-port"] if reuse_port and not has_reuse else []
    fwd_opts = opt("--forwarded-allow-ips", forwarded_allow_ips) if forwarded_allow_ips is not None else []
    drop = set()
    if binds is not None:
        drop.add("bind")
    if forwarded_allow_ips is not None:
        drop.add("forwarded_allow_ips")
    # where each new block goes: the first group that holds what it replaces
    first = {}
    for n, g in enumerate(groups):
        for _name, s, _value in g["parts"]:
            first.setdefault(s, n)
    blocks = {}
    lead = []
    bind_block = lead
    if binds is not None:
        bind_block = blocks.setdefault(first["bind"], []) if "bind" in first else lead
        bind_block.extend(bind_opts + reuse_opts)
    else:
        lead.extend(reuse_opts)
    if forwarded_allow_ips is not None:
        (blocks.setdefault(first["forwarded_allow_ips"], []) if "forwarded_allow_ips" in first else bind_block) \
            .extend(fwd_opts)
    out = list(lead)
    for n, g in enumerate(groups):
        kept = [p for p in g["parts"] if p[1] not in drop]
        if len(kept) == len(g["parts"]):
            out.extend(args[g["start"]:g["end"]])
        else:
            for name, _setting, value in kept:
                out.extend([name] if value is None else opt(name, value))
        out.extend(blocks.get(n, []))
    return out


# ---------------------------------------------------------------------------
# Where gunicorn starts in a command (wrappers, env, python -m)

def _basename(path):
    return path.rsplit("/", 1)[-1]


def locate_gunicorn(argv):
    """Read a command that starts gunicorn.

    Returns {"head": n, "env": {NAME: index}}: argv[:n] starts gunicorn
    (wrappers, `env VAR=...`, the interpreter and `-m gunicorn` included),
    argv[n:] are gunicorn's own arguments; env maps the variables that an
    `env` in the command sets to their argv index. Raises RewriteError with
    the reason when the command is not understood.
    """
    env = {}
    i = 0
    n = len(argv)
    seen = []
    while i < n:
        base = _basename(argv[i])
        seen.append(base)
        if _GUNICORN_PROG.match(base):
            return {"head": i + 1, "env": env}
        if _PYTHON_PROG.match(base):
            j = i + 1
            while j < n:
                t = argv[j]
                if t == "-m" or (t.startswith("-m") and not t.startswith("--")):
                    mod = argv[j + 1] if t == "-m" and j + 1 < n else t[2:]
                    if mod not in ("gunicorn", "gunicorn.app.wsgiapp"):
                        raise RewriteError("runs python -m %s, not gunicorn" % mod)
                    return {"head": j + (2 if t == "-m" else 1), "env": env}
                if t == "-c" or t.startswith("-c"):
                    raise RewriteError("runs python -c with a program text; set the binds in "
                                       "GUNICORN_CMD_ARGS or a gunicorn config file instead")
                if t in _PYTHON_VALUE_OPTS:
                    j += 2
                    continue
                if t.startswith("-") and t != "-":
                    j += 1
                    continue
                if _GUNICORN_PROG.match(_basename(t)):  # python /venv/bin/gunicorn ...
                    return {"head": j + 1, "env": env}
                raise RewriteError("runs the Python script %s, not gunicorn" % t)
            raise RewriteError("runs python without gunicorn")
        if base == "env":
            j = i + 1
            while j < n:
                t = argv[j]
                if t in ("-i", "--ignore-environment", "-0", "--null", "-v", "--debug", "-"):
                    j += 1
                elif t in ("-u", "--unset", "-C", "--chdir"):
                    j += 2
                elif t.startswith(("--unset=", "--chdir=")) or re.match(r"^-[uC].", t):
                    j += 1
                elif t in ("-S", "--split-string") or t.startswith(("-S", "--split-string")):
                    raise RewriteError("runs env -S (a split command string); write the command without it")
                elif t == "--":
                    j += 1
                    break
                elif "=" in t and not t.startswith("-"):
                    env[t.split("=", 1)[0]] = j
                    j += 1
                else:
                    break
            i = j
            continue
        if base in _SHELLS:
            raise RewriteError("starts gunicorn through %s; a shell command line is not rewritten: set the "
                               "binds in GUNICORN_CMD_ARGS or a gunicorn config file instead" % base)
        # An instrumenting or privilege wrapper (newrelic-admin run-program,
        # ddtrace-run, opentelemetry-instrument, chpst, ...): gunicorn is the
        # first later word that is gunicorn or python.
        for j in range(i + 1, n):
            b = _basename(argv[j])
            if _GUNICORN_PROG.match(b) or (_PYTHON_PROG.match(b) and "gunicorn" in argv[j + 1:j + 3]
                                           + [a[2:] for a in argv[j + 1:j + 3] if a.startswith("-m")]):
                i = j
                break
        else:
            raise RewriteError("runs %s, which is neither gunicorn nor a wrapper around it; a wrapper script is "
                               "a program of its own: set the binds in GUNICORN_CMD_ARGS or a gunicorn config "
                               "file it uses" % argv[0])
    raise RewriteError("has no gunicorn in its command (%s)" % " ".join(seen))


# ---------------------------------------------------------------------------
# Quoting for each place a value is written

_SYSTEMD_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./\[\]${}*-]+$")
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b",
              "\f": "\\f", "\v": "\\v"}


def _cescape(text):
    out = []
    for ch in text:
        if ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def systemd_quote(arg):
    """One ExecStart= word that systemd runs as exactly `arg`.

    `arg` is the word as the process gets it (discovery's argv: specifiers
    resolved, $VAR expanded): a `%` is written as `%%` (specifiers), a `$` as
    `$$` (variable expansion when the command runs), quotes and backslashes
    are escaped inside double quotes, a lone `;` is quoted (it would separate
    commands).
    """
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and arg != ";" and _SYSTEMD_PLAIN.match(arg):
        return arg
    return '"' + _cescape(arg) + '"'


def systemd_environment(assignment):
    """The value of an Environment= line that sets NAME=value exactly (no $ expansion there)."""
    return '"' + _cescape(assignment.replace("%", "%%")) + '"'


def envfile_value(value):
    """A double-quoted EnvironmentFile value, as systemd's env-file parser unquotes it."""
    return '"' + re.sub(r'([\\"`$])', r"\\\1", value) + '"'


def _shell_word(arg):
    """A word shlex.split (gunicorn for GUNICORN_CMD_ARGS, supervisord for command=) reads back as `arg`."""
    if arg and re.match(r"^[A-Za-z0-9_@%+=:,./\[\]-]+$", arg):
        return arg
    return shlex.quote(arg)


def supervisor_escape(text):
    """`%` doubled for supervisord's %-expansion (the argv is what supervisord runs, expanded:
    `%(h)s` in an access log format is gunicorn's, not supervisord's)."""
    return text.replace("%", "%%")


def cmd_args_value(value, binds=None, reuse_port=False, forwarded_allow_ips=None):
    """A GUNICORN_CMD_ARGS value with the managed options replaced (gunicorn splits it with shlex)."""
    args = rewrite_args(shlex.split(value or ""), binds, reuse_port, forwarded_allow_ips, style="env")
    return " ".join(_shell_word(a) for a in args)


# ---------------------------------------------------------------------------
# What to write, and where

def _where(svc):
    return "service %s: " % svc.get("unit")


def _version(svc):
    if svc.get("version_known") is False:
        return None
    return svc.get("version")


def _located(svc, argv):
    """locate_gunicorn(), or discovery's own reading (gunicorn_index) when it gives one."""
    idx = svc.get("gunicorn_index")
    if idx is None:
        return locate_gunicorn(argv)
    env = {}
    in_env = False
    for n, word in enumerate(argv[:idx]):
        if _basename(word) == "env":
            in_env = True
        elif in_env and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word):
            env[word.split("=", 1)[0]] = n
        elif in_env and not word.startswith("-"):
            in_env = False
    return {"head": idx + 1, "env": env}


def _bind_target(svc, can_rewrite_command):
    src = svc["bind_source"]
    if src in ("cli", "default", "port_env"):
        if src != "cli" and not can_rewrite_command:
            return "cmd_args"  # gunicorn's next source down: GUNICORN_CMD_ARGS
        return "command"
    if src in ("env", "envfile"):
        return "cmd_args"
    if src in ("config", "config_default"):
        return "config"
    raise RewriteError("%sunknown bind source %r" % (_where(svc), src))


def _fwd_target(svc, bind_target):
    src = svc.get("forwarded_allow_ips_source") or "default"
    return {"cli": "command", "env": "cmd_args", "envfile": "cmd_args", "config": "config",
            "config_default": "config", "environment": "fwd_env"}.get(src, bind_target)


def _config_path(svc):
    if svc.get("config_file"):
        return svc["config_file"]
    return os.path.join(svc.get("working_directory") or "/", "gunicorn.conf.py")


def config_block(svc, binds=None, reuse_port=False, forwarded_allow_ips=None):
    """Python assignments appended to a gunicorn config file (py2 and py3)."""
    lines = ["# Dual-stack binds (dualstack-rollout); these assignments override the ones above."]
    if binds is not None:
        lines.append("bind = [%s]" % ", ".join(repr(str(b)) for b in binds))
    if reuse_port:
        lines.append("reuse_port = True")
    if forwarded_allow_ips is not None:
        lines.append("forwarded_allow_ips = %r" % str(forwarded_allow_ips))
    return "\n".join(lines)


def _dropin_path(svc):
    return svc.get("dropin_path") or "/etc/systemd/system/%s.d/%s" % (svc["unit"], DROPIN_NAME)


def gunicorn_changes(svc, plan):
    """Every file change that puts `plan` into effect for `svc`.

    Returns a list of dicts, the one carrying the binds first; each has
    `kind` and `path`, and:
      dropin      content (the whole drop-in: ExecStart= and/or Environment= lines)
      envfile     regexp, line (replace the variable's line, or append it)
      config      block (a managed block at the end of the file)
      supervisor  section, option (command or environment), value
    Raises RewriteError naming the unit and the reason when it cannot.
    """
    try:
        return _changes(svc, plan)
    except RewriteError as e:
        msg = str(e)
        raise RewriteError(msg if msg.startswith(_where(svc)) else _where(svc) + msg)


def _changes(svc, plan):
    where = _where(svc)
    sup = svc.get("manager") == "supervisor"
    argv = list(svc.get("argv") or [])
    try:
        loc = _located(svc, argv)
        loc_error = None
    except RewriteError as e:
        loc, loc_error = None, e
    bind_t = _bind_target(svc, loc is not None)
    fwd_t = _fwd_target(svc, bind_t)
    binds = plan["binds"]
    reuse = bool(plan.get("reuse_port"))
    fwd = plan.get("forwarded_allow_ips")

    # values per target: binds always (a second run writes the same bytes)
    want = {}
    want.setdefault(bind_t, {})["binds"] = binds
    if reuse:
        want[bind_t]["reuse_port"] = True
    if fwd is not None:
        want.setdefault(fwd_t, {})["forwarded_allow_ips"] = fwd
    # the config block is rewritten whole: restate what it set before
    if "config" in want:
        if svc.get("reuse_port") and svc.get("reuse_port_source") in ("config", "config_default"):
            want["config"]["reuse_port"] = True
        if "forwarded_allow_ips" not in want["config"] and fwd_t == "config" \
                and svc.get("forwarded_allow_ips") is not None:
            want["config"]["forwarded_allow_ips"] = svc["forwarded_allow_ips"]

    exec_argv = None  # the new command, when it changes
    env_lines = []    # (NAME, value) for a drop-in's Environment=
    out = []

    def set_env_var(name, value):
        """A variable gunicorn reads from its environment, set where it is set today."""
        if loc is not None and name in loc["env"]:
            return ("command_env", name, value)
        path = svc.get("gunicorn_cmd_args_file") if name == "GUNICORN_CMD_ARGS" \
            else svc.get("forwarded_allow_ips_file")
        if sup:
            return ("sup_env", name, value)
        if path:
            return ("envfile", name, value, path)
        return ("dropin_env", name, value)

    env_actions = []
    for target, vals in want.items():
        if target == "command":
            if loc is None:
                raise RewriteError("%s%s" % (where, loc_error))
            head = loc["head"]
            base = exec_argv or argv
            exec_argv = base[:head] + rewrite_args(base[head:], vals.get("binds"), vals.get("reuse_port", False),
                                                   vals.get("forwarded_allow_ips"), "cli")
        elif target == "cmd_args":
            current = svc.get("gunicorn_cmd_args")
            if loc is not None and "GUNICORN_CMD_ARGS" in loc["env"]:
                current = argv[loc["env"]["GUNICORN_CMD_ARGS"]].split("=", 1)[1]
            value = cmd_args_value(current, vals.get("binds"), vals.get("reuse_port", False),
                                   vals.get("forwarded_allow_ips"))
            env_actions.append(set_env_var("GUNICORN_CMD_ARGS", value))
        elif target == "fwd_env":
            env_actions.append(set_env_var("FORWARDED_ALLOW_IPS", vals["forwarded_allow_ips"]))
        elif target == "config":
            out.append(("config", {"kind": "config", "path": _config_path(svc),
                                   "block": config_block(svc, vals.get("binds"), vals.get("reuse_port", False),
                                                         vals.get("forwarded_allow_ips"))}))
    for act in env_actions:
        if act[0] == "command_env":
            base = exec_argv or argv
            idx = loc["env"][act[1]]
            exec_argv = base[:idx] + ["%s=%s" % (act[1], act[2])] + base[idx + 1:]
        elif act[0] == "dropin_env":
            env_lines.append((act[1], act[2]))
        elif act[0] == "envfile":
            out.append(("cmd_args" if act[1] == "GUNICORN_CMD_ARGS" else "fwd_env",
                        {"kind": "envfile", "path": act[3],
                         "regexp": r"^[ \t]*%s[ \t]*=" % act[1],
                         "line": "%s=%s" % (act[1], envfile_value(act[2]))}))
        elif act[0] == "sup_env":
            env_lines.append((act[1], act[2]))

    if sup:
        if exec_argv is not None:
            out.append(("command", {"kind": "supervisor", "path": svc["conf_path"], "section": svc["section"],
                                    "option": "command", "value": supervisor_command(exec_argv)}))
        if env_lines:
            out.append(("cmd_args", {"kind": "supervisor", "path": svc["conf_path"], "section": svc["section"],
                                     "option": "environment", "value": supervisor_environment(svc, env_lines)}))
    elif exec_argv is not None or env_lines:
        body = ""
        if exec_argv is not None:
            body += "ExecStart=\nExecStart=%s%s\n" % (svc.get("exec_prefix", ""),
                                                      " ".join(systemd_quote(a) for a in exec_argv))
        for name, value in env_lines:
            body += "Environment=%s\n" % systemd_environment("%s=%s" % (name, value))
        unit = svc["unit"]
        head = ("# Managed by dualstack-rollout: dual-stack binds for %s.\n"
                "# Remove this file (and daemon-reload, restart) to return to the original binds.\n[Service]\n"
                % unit)
        out.append(("command" if exec_argv is not None else "cmd_args",
                    {"kind": "dropin", "path": _dropin_path(svc), "content": head + body}))
    # the change that carries the binds first
    primary = {"command": "command", "cmd_args": "cmd_args", "config": "config"}[bind_t]
    if bind_t == "cmd_args" and loc is not None and "GUNICORN_CMD_ARGS" in loc["env"]:
        primary = "command"
    out.sort(key=lambda kv: 0 if kv[0] == primary else 1)
    return [c for _kind, c in out]


def _supervisor_value(text, what):
    """A value supervisord's ini reader keeps whole: it cuts at whitespace + ';' or '#'."""
    if re.search(r"\s[;#]", text):
        raise RewriteError("the new %s would contain %r, which supervisord reads as the start of a comment"
                           % (what, re.search(r"\s[;#]", text).group(0)))
    return text


def supervisor_env_value(value):
    """One quoted value of supervisord's environment=KEY="...": %-expansion first, then a
    non-POSIX shlex that keeps the quotes, which are stripped from both ends (no escapes)."""
    v = supervisor_escape(value)
    if v[:1] in ("'", '"'):
        v = " " + v
    if v[-1:] in ("'", '"'):
        v = v + " "
    for q in ('"', "'"):
        if q not in v:
            return q + v + q
    raise RewriteError("the value %r holds both quote characters; supervisord's environment= cannot carry it"
                       % value)


def supervisor_command(argv):
    """command= as supervisord reads it: %-expansion, then shlex.split."""
    return _supervisor_value(" ".join(supervisor_escape(_shell_word(a)) for a in argv), "command=")


def supervisor_environment(svc, assignments):
    """supervisord's environment= with the given variables set, other pairs byte for byte."""
    new = dict(assignments)
    out = []
    for key, raw in svc.get("environment_pairs") or []:
        if key in new:
            raw = supervisor_env_value(new.pop(key))
        out.append("%s=%s" % (key, raw))
    for key, value in assignments:
        if key in new:
            out.append("%s=%s" % (key, supervisor_env_value(value)))
    return _supervisor_value(",".join(out), "environment=")


def gunicorn_change(svc, plan):
    """The change that carries the binds (the first of gunicorn_changes)."""
    return gunicorn_changes(svc, plan)[0]


# ---------------------------------------------------------------------------
# Plans for a host, and conflicts between its services

def _overlap(a, b):
    """Whether two planned listeners would claim the same address and port."""
    if a["port"] != b["port"]:
        return False
    fa = ipaddress.ip_address(a["address"])
    fb = ipaddress.ip_address(b["address"])
    if fa == fb:
        return True
    for x, y in ((a, b), (b, a)):
        fx = ipaddress.ip_address(x["address"])
        fy = ipaddress.ip_address(y["address"])
        if fx.is_unspecified and (fx.version == fy.version or (4 in x.get("accepts", []) and fy.version == 4)):
            return True
    return False


def service_conflicts(plans):
    """Messages for every two services whose plans would listen on the same address and port.

    `plans` are service_plans items ({service, plan, ...}). Two listeners
    clash when they are the same address and port, or one is the wildcard of
    the other's family (a dual [::] socket also covers IPv4); reuse_port would
    only make two applications share one port's connections.
    """
    msgs = []
    items = list(plans or [])
    for i, p in enumerate(items):
        for q in items[i + 1:]:
            ua, ub = p["service"]["unit"], q["service"]["unit"]
            for la in p["plan"]["listeners"]:
                for lb in q["plan"]["listeners"]:
                    if _overlap(la, lb):
                        a = _fmt(la)
                        b = _fmt(lb)
                        where = a if a == b else "%s and %s" % (a, b)
                        msgs.append("services %s and %s would both listen on %s (%s from %s, %s from %s); "
                                    "give them different ports or addresses, or leave one out "
                                    "(gunicorn_dualstack__skip_services)"
                                    % (ua, ub, where, ua, " ".join(p["plan"]["binds_before"]), ub,
                                       " ".join(q["plan"]["binds_before"])))
                        break
                else:
                    continue
                break
    return msgs


def _fmt(listener):
    addr = listener["address"]
    return "[%s]:%d" % (addr, listener["port"]) if ":" in addr else "%s:%d" % (addr, listener["port"])


def service_plans(services, bindv6only, strategy, ip_json=None, resolved_results=None, host=None):
    """Plan every discovered service: [{service, plan, change, changes, problems}].

    change    the file change that carries the binds (gunicorn_changes()[0])
    changes   every file change the plan needs (forwarded_allow_ips may live
              in another file than the binds)
    problems  messages that must stop the host: conflicts with another
              service of the same host (named in both services' items)

    resolved_results are the registered results of `getent ahostsv4 NAME`
    looped over the host names found in binds.
    """
    names = {}
    for r in resolved_results or []:
        if r.get("rc") == 0 and r.get("stdout"):
            names[r["item"]] = r["stdout"].split()[0]
    interfaces = interface_map(ip_json or [])
    out = []
    for svc in services:
        ctx = {"host": host, "service": svc["unit"]}
        plan = bind_plan(svc["binds"], bindv6only=bindv6only, gunicorn_version=_version(svc),
                         strategy=strategy, reuse_port=svc.get("reuse_port", False),
                         forwarded_allow_ips=svc.get("forwarded_allow_ips"), interfaces=interfaces,
                         resolved=names, ctx=ctx)
        try:
            changes = gunicorn_changes(svc, plan)
        except RewriteError as e:
            raise RewriteError("host %s, %s" % (host, e) if host else str(e))
        out.append({"service": svc, "plan": plan, "change": changes[0], "changes": changes, "problems": []})
    for msg, (i, j) in _conflict_pairs(out):
        out[i]["problems"].append(msg)
        out[j]["problems"].append(msg)
    return out


def trust_amend(plans, trusted, host=None):
    """Add the balancer's IPv6 source to forwarded_allow_ips where the trust
    plan (dsr_trust.trust_plan's `gunicorn`) asks for it, on top of each bind plan.

    A bind plan that changes forwarded_allow_ips itself (a dual-stack bind
    gains ::1) keeps its value and the trust entries are appended to it;
    otherwise the trust plan's value is written. Either way the change goes
    where gunicorn reads the value today (gunicorn_changes). Plans of other
    services are returned as they are.
    """
    by_unit = dict((t["unit"], t) for t in trusted or [])
    out = []
    for item in plans or []:
        t = by_unit.get(item["service"]["unit"])
        if not t:
            out.append(item)
            continue
        plan = dict(item["plan"])
        if plan.get("forwarded_allow_ips") is None:
            value = t["value"]
        else:
            have = [x.strip() for x in str(plan["forwarded_allow_ips"]).split(",") if x.strip()]
            value = ",".join(have + [a for a in t["add"] if a not in have])
        plan["forwarded_allow_ips"] = value
        plan["changed"] = True
        plan["notes"] = list(plan.get("notes") or []) + [
            "forwarded_allow_ips gains %s: the balancer's IPv6 source toward this host" % ", ".join(t["add"])]
        try:
            changes = gunicorn_changes(item["service"], plan)
        except RewriteError as e:
            raise RewriteError("host %s, %s" % (host, e) if host else str(e))
        out.append(dict(item, plan=plan, change=changes[0], changes=changes))
    return out


def _conflict_pairs(items):
    pairs = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            for msg in service_conflicts([items[i], items[j]]):
                pairs.append((msg, (i, j)))
    return pairs


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
            "dsr_gunicorn_plans": service_plans,
            "dsr_gunicorn_trust": trust_amend,
            "dsr_bind_hostnames": bind_hostnames,
        }
