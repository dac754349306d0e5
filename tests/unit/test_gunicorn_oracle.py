"""gunicorn's and systemd's own code as the judge of every rewrite.

gunicorn 19.9.0 (the fleet's) and 27.0.1 (current) are installed for the
tests only, into .cache/gunicorn-<version>/ (pip --target into a temporary
directory, then renamed, so two test runs never see a half-installed copy).
Each rewritten command line, GUNICORN_CMD_ARGS value and config file is read
by that gunicorn's own configuration machinery (WSGIApplication: its argparse
parser, GUNICORN_CMD_ARGS, the -c file or ./gunicorn.conf.py, PORT and
FORWARDED_ALLOW_IPS) in a subprocess. systemd's own unit parser
(`systemd-analyze verify` at debug level dumps each unit's parsed ExecStart
and Environment) reads the drop-ins.

This module holds the harness and the tests of the command-line classes;
test_gunicorn_oracle_corpus.py runs the corpus in tests/corpus/rewrite/.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import bind_plan
import dsr_gunicorn as g
from systemd_dump import unquote_dump as _unquote_dump

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache")
VERSIONS = ("19.9.0", "27.0.1")
# Peers whose trust the tests check: the proxy over IPv4, through a dual
# socket, over IPv6 loopback, and from a private network.
PEERS = ("127.0.0.1", "::ffff:127.0.0.1", "::1", "10.1.2.3", "::ffff:10.1.2.3", "192.0.2.7")


# ---------------------------------------------------------------------------
# Installing the oracles: the same cache as discovery's oracle test (one
# installer, one layout: .cache/gunicorn-<version>/, pip --target then rename)

from test_gunicorn_services_oracle import _pip_target, oracle_paths  # noqa: E402

_PATHS = {}


def oracle_path(version):
    """PYTHONPATH entries under which `import gunicorn` is that version."""
    if version not in _PATHS:
        _PATHS[version] = tuple(oracle_paths(version))
    return _PATHS[version]


# ---------------------------------------------------------------------------
# gunicorn's configuration machinery, in a subprocess

PROBE = r'''
import io, json, os, sys
job = json.load(sys.stdin)
os.environ.clear()
os.environ.update(job["env"])


def load_gunicorn():
    """A fresh import: gunicorn reads PORT and FORWARDED_ALLOW_IPS when its config module runs."""
    global gunicorn, WSGIApplication, _ip_in_allow_list
    for name in list(sys.modules):
        if name == "gunicorn" or name.startswith("gunicorn."):
            del sys.modules[name]
    import gunicorn
    import gunicorn.config
    import gunicorn.util
    from gunicorn.app.wsgiapp import WSGIApplication
    try:
        from gunicorn.http.message import _ip_in_allow_list
    except ImportError:
        _ip_in_allow_list = None


def trusted(cfg, peer):
    allow = cfg.forwarded_allow_ips
    if hasattr(cfg, "forwarded_allow_networks") and _ip_in_allow_list is not None:
        return _ip_in_allow_list(peer, allow, cfg.forwarded_allow_networks())
    return "*" in allow or peer in allow

out = []
imported = None
for case in job["cases"]:
    wanted = (case.get("port"), case.get("fwd"))
    if wanted != imported:
        for name, value in zip(("PORT", "FORWARDED_ALLOW_IPS"), wanted):
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
        load_gunicorn()
        imported = wanted
    os.environ.pop("GUNICORN_CMD_ARGS", None)
    if case.get("cmd_args") is not None:
        os.environ["GUNICORN_CMD_ARGS"] = case["cmd_args"]
    sys.argv = ["gunicorn"] + case["args"]
    # gunicorn takes the chdir default from the directory it starts in, at import
    os.chdir(case["cwd"])
    gunicorn.config.Chdir.default = gunicorn.util.getcwd()
    err = io.StringIO()
    real_err, sys.stderr = sys.stderr, err
    res = {"version": gunicorn.__version__}
    try:
        app = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]")
        cfg = app.cfg
        res.update(ok=True, bind=list(cfg.bind), reuse_port=bool(cfg.reuse_port),
                   forwarded_allow_ips=list(cfg.forwarded_allow_ips), app_uri=app.app_uri,
                   trusted=dict((p, bool(trusted(cfg, p))) for p in job["peers"]))
        other = {}
        for name, s in sorted(cfg.settings.items()):
            if name in ("bind", "reuse_port", "forwarded_allow_ips"):
                continue
            v = s.value
            other[name] = getattr(v, "__name__", None) if callable(v) else repr(v)
        res["settings"] = other
    except SystemExit as e:
        res.update(ok=False, error=err.getvalue().strip() or "exit %s" % e.code)
    finally:
        sys.stderr = real_err
    out.append(res)
print(json.dumps(out))
'''


def gunicorn_read(version, cases):
    """What gunicorn `version` makes of each case.

    A case: {args: gunicorn's argv without the program, env: {VAR: value}
    (GUNICORN_CMD_ARGS, PORT, FORWARDED_ALLOW_IPS ...), cwd}. Returns per
    case {ok, error | bind, reuse_port, forwarded_allow_ips, app_uri,
    settings (every other setting), trusted {peer: bool}}.
    """
    paths = oracle_path(version)
    order = sorted(range(len(cases)), key=lambda n: (str((cases[n].get("env") or {}).get("PORT")),
                                                     str((cases[n].get("env") or {}).get("FORWARDED_ALLOW_IPS"))))
    cwd = tempfile.gettempdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    job = {"env": env, "peers": list(PEERS), "cases": []}
    for n in order:
        cenv = cases[n].get("env") or {}
        job["cases"].append({"args": cases[n]["args"], "cwd": cases[n].get("cwd") or cwd,
                             "cmd_args": cenv.get("GUNICORN_CMD_ARGS"), "port": cenv.get("PORT"),
                             "fwd": cenv.get("FORWARDED_ALLOW_IPS")})
    r = subprocess.run([sys.executable, "-c", PROBE], input=json.dumps(job), capture_output=True, text=True,
                       env=dict(env, PYTHONPATH=os.pathsep.join(paths)), cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr
    results = [None] * len(cases)
    for n, res in zip(order, json.loads(r.stdout)):
        results[n] = res
    return results


# ---------------------------------------------------------------------------
# systemd's unit parser, and what it does when the command runs

def have_systemd_analyze():
    return shutil.which("systemd-analyze") is not None


def systemd_units(unit_dir, names):
    """{unit: {argv (stored form), environment [NAME=value], environment_files [path],
    working_directory}} as systemd parses them (drop-ins in UNIT.d/ beside the unit included)."""
    return systemd_units_at([os.path.join(unit_dir, n) for n in names])


def systemd_units_at(paths):
    """systemd_units() for units in several directories (unit names must differ)."""
    if not have_systemd_analyze():
        pytest.skip("systemd-analyze is not installed: systemd's own parser is the judge of drop-ins")
    names = [os.path.basename(p) for p in paths]
    r = subprocess.run(["systemd-analyze", "verify"] + list(paths),
                       env=dict(os.environ, SYSTEMD_LOG_LEVEL="debug", SYSTEMD_LOG_COLOR="0"),
                       capture_output=True, text=True, cwd=os.path.dirname(paths[0]), timeout=120)
    out = {}
    cur = None
    section = None
    for line in r.stdout.splitlines():
        m = re.match(r"^\t-> Unit (\S+):$", line)
        if m:
            cur = out.setdefault(m.group(1), {"argv": None, "environment": [], "environment_files": [],
                                              "working_directory": None})
            section = None
            continue
        if cur is None:
            continue
        s = line.strip()
        if s.startswith("-> ExecStart"):
            section = "ExecStart"
        elif s.startswith("-> "):
            section = None
        elif s.startswith("Command Line: ") and section == "ExecStart":
            cur["argv"] = _unquote_dump(s[len("Command Line: "):])
        elif line.startswith("\t\tEnvironment: "):
            cur["environment"].append(line[len("\t\tEnvironment: "):])
        elif line.startswith("\t\tWorkingDirectory: "):
            cur["working_directory"] = line[len("\t\tWorkingDirectory: "):]
        elif line.startswith("\t\tEnvironmentFile: "):
            cur["environment_files"].append(re.sub(r" \(ignore_errors=\w+\)$", "",
                                                   line[len("\t\tEnvironmentFile: "):]))
    for n in names:
        assert n in out and out[n]["argv"], "systemd did not load %s: %s" % (n, r.stderr[-2000:])
    return out


def systemd_envfile(text):
    """An EnvironmentFile as systemd reads it (env-file.c): quotes, escapes, comments, continuations;
    `export X=...` is not an assignment and is ignored."""
    env = {}
    for raw in re.sub(r"\\\n", "", text).splitlines():
        s = raw.strip()
        if not s or s[0] in "#;":
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", s)
        if not m:
            continue
        key, rest = m.group(1), m.group(2)
        val, i, quote = [], 0, None
        trail = 0
        while i < len(rest):
            c = rest[i]
            if quote == "'":
                if c == "'":
                    quote = None
                else:
                    val.append(c)
            elif quote == '"':
                if c == '"':
                    quote = None
                elif c == "\\" and i + 1 < len(rest):
                    i += 1
                    if rest[i] in '"\\`$':
                        val.append(rest[i])
                    else:
                        val.append("\\" + rest[i])
                else:
                    val.append(c)
            else:
                if c in "'\"":
                    quote = c
                    trail = 0
                elif c == "\\" and i + 1 < len(rest):
                    i += 1
                    val.append(rest[i])
                    trail = 0
                elif c.isspace():
                    val.append(c)
                    trail += 1
                else:
                    val.append(c)
                    trail = 0
            i += 1
        v = "".join(val)
        env[key] = v[:len(v) - trail] if trail else v
    return env


def systemd_exec_argv(argv, env):
    """The argv systemd executes: replace_env_argv() of systemd 252 (`$VAR` alone is split into
    words, `${VAR}` is replaced inside a word, `$$` is a `$`)."""
    out = []
    for w in argv:
        if w.startswith("$") and w[1:2] not in ("{", "$"):
            if w[1:] in env:
                out.extend(shlex.split(env[w[1:]]))
            continue
        res, i = [], 0
        while i < len(w):
            if w.startswith("$$", i):
                res.append("$")
                i += 2
            elif w.startswith("${", i) and "}" in w[i:]:
                j = w.index("}", i)
                res.append(env.get(w[i + 2:j], ""))
                i = j + 1
            else:
                res.append(w[i])
                i += 1
        out.append("".join(res))
    return out


def gunicorn_invocation(argv):
    """(environment set by `env` in the command, gunicorn's own args) - an independent reading."""
    env = {}
    i = 0
    while i < len(argv):
        base = os.path.basename(argv[i])
        if base == "env":
            i += 1
            while i < len(argv) and "=" in argv[i] and not argv[i].startswith("-"):
                k, v = argv[i].split("=", 1)
                env[k] = v
                i += 1
            continue
        if base in ("sh", "bash") and argv[i + 1:i + 2] == ["-c"]:
            return gunicorn_invocation([w for w in shlex.split(argv[i + 2]) if w != "exec"])
        if base in ("gunicorn", "gunicorn3"):
            return env, argv[i + 1:]
        if argv[i] == "-m" and argv[i + 1] in ("gunicorn", "gunicorn.app.wsgiapp"):
            return env, argv[i + 2:]
        i += 1
    raise AssertionError("no gunicorn in %r" % (argv,))


# ---------------------------------------------------------------------------
# Shared judgement

def assert_effective(res, plan, before, label=""):
    """gunicorn's reading `res` of a rewritten service is exactly the plan, other settings unchanged."""
    assert res["ok"], "%s: gunicorn %s rejected the rewrite: %s" % (label, res["version"], res.get("error"))
    assert res["bind"] == plan["binds"], label
    assert res["reuse_port"] == bool(plan["reuse_port"] or before["reuse_port"]), label
    want_fwd = plan["forwarded_allow_ips"].split(",") if plan["forwarded_allow_ips"] is not None \
        else before["forwarded_allow_ips"]
    assert res["forwarded_allow_ips"] == want_fwd, label
    assert res["app_uri"] == before["app_uri"], label
    assert res["settings"] == before["settings"], label
    # every proxy trusted before is still trusted, in every spelling a new socket shows it
    for peer, was in before["trusted"].items():
        if was:
            assert res["trusted"][peer], "%s: %s no longer trusted" % (label, peer)


def _svc(argv, binds, source="cli", **kw):
    d = {"unit": "app.service", "manager": "systemd", "argv": argv, "exec_prefix": "", "binds": binds,
         "bind_source": source, "reuse_port": False, "reuse_port_source": "default",
         "forwarded_allow_ips": None, "forwarded_allow_ips_source": "default", "gunicorn_cmd_args": None,
         "gunicorn_cmd_args_file": None, "config_file": None, "version": "19.9.0"}
    d.update(kw)
    return d


# ---------------------------------------------------------------------------
# Tests: the option table is gunicorn's

@pytest.mark.parametrize("version", VERSIONS)
def test_option_table_matches_gunicorn(version):
    code = ("import json, gunicorn.config as c\n"
            "print(json.dumps([[o, (s.action or 'store') in ('store', 'append') and s.nargs != '?']"
            " for s in c.KNOWN_SETTINGS for o in (s.cli or [])]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(oracle_path(version))))
    assert r.returncode == 0, r.stderr
    for opt, takes_value in json.loads(r.stdout):
        assert opt in g._ALL_OPTS, "gunicorn %s option %s missing from the table" % (version, opt)
        assert (opt in g._VALUE_OPTS) == takes_value, "gunicorn %s: %s" % (version, opt)


# ---------------------------------------------------------------------------
# Tests: command-line forms, each judged by both gunicorns

FORMS = [
    # (argv as systemd stores it, current binds)
    (["/usr/bin/gunicorn", "app:app", "--bind", "0.0.0.0:8000", "--workers", "3"], ["0.0.0.0:8000"]),
    (["/usr/bin/python3", "-m", "gunicorn", "-w", "3", "app:app", "-b", "0.0.0.0:8000"], ["0.0.0.0:8000"]),
    (["/usr/bin/gunicorn", "-b0.0.0.0:8000", "-w3", "app:app"], ["0.0.0.0:8000"]),
    (["/usr/bin/gunicorn", "--bind=0.0.0.0:8000", "--access-logfile", "-", "app:app"], ["0.0.0.0:8000"]),
    (["/usr/bin/gunicorn", "-b", "127.0.0.1:8000", "app:app", "-b", "127.0.0.1:8001", "-k", "sync"],
     ["127.0.0.1:8000", "127.0.0.1:8001"]),
    (["/usr/bin/gunicorn", "--workers", "2", "--", "app:app"], []),
    (["/usr/bin/gunicorn", "-w", "2", "-b", "0.0.0.0:8000", "--", "app:app"], ["0.0.0.0:8000"]),
    (["/opt/venv/bin/newrelic-admin", "run-program", "/opt/venv/bin/gunicorn", "app:app", "--bind",
      "0.0.0.0:8000", "--timeout", "60"], ["0.0.0.0:8000"]),
    (["/usr/bin/env", "NEW_RELIC_CONFIG_FILE=/etc/nr.ini", "LANG=C.UTF-8", "/opt/venv/bin/gunicorn", "-b",
      "0.0.0.0:8000", "app:create_app()"], ["0.0.0.0:8000"]),
    (["/usr/bin/gunicorn", "--bin", "0.0.0.0:8000", "--reuse", "app:app"], ["0.0.0.0:8000"]),
    (["/usr/bin/gunicorn", "-Db", "0.0.0.0:8000", "--pid", "/run/app.pid", "app:app"], ["0.0.0.0:8000"]),
    (["/usr/bin/gunicorn", "app:app", "--forwarded-allow-ips", "10.1.2.3", "-b", "0.0.0.0:8000",
      "--access-logformat", "%(h)s %(l)s \"%(r)s\" $x"], ["0.0.0.0:8000"]),
    (["/usr/bin/gunicorn", "app:app", "--forwarded-allow-ips=127.0.0.1", "--bind", "localhost:8000",
      "--log-level", "debug"], ["localhost:8000"]),
    (["/usr/bin/opentelemetry-instrument", "--traces_exporter", "console", "/usr/bin/python3", "-m",
      "gunicorn", "app:app", "-b", ":8000"], [":8000"]),
    (["/usr/bin/ddtrace-run", "gunicorn", "--name", "web app", "-b", "unix:/run/app.sock", "app:app"],
     ["unix:/run/app.sock"]),
]


def _probe_forms(strategy, v6only):
    before, after, plans = [], [], []
    for argv, binds in FORMS:
        _, args = gunicorn_invocation(argv)
        cur = g.effective_args(args)
        p = bind_plan(binds, bindv6only=v6only, strategy=strategy, gunicorn_version="19.9.0",
                      reuse_port=cur["reuse_port"], forwarded_allow_ips=cur["forwarded_allow_ips"],
                      resolved={"localhost": "127.0.0.1"})
        svc = _svc(argv, binds, "cli" if binds else "default", reuse_port=cur["reuse_port"],
                   reuse_port_source="cli" if cur["reuse_port"] else "default",
                   forwarded_allow_ips=cur["forwarded_allow_ips"],
                   forwarded_allow_ips_source="cli" if cur["forwarded_allow_ips"] else "default")
        changes = g.gunicorn_changes(svc, p)
        assert len(changes) == 1 and changes[0]["kind"] == "dropin"
        before.append(args)
        after.append(changes[0]["content"])
        plans.append(p)
    return before, after, plans


@pytest.mark.parametrize("strategy,v6only", [("separate", 0), ("dual", 0), ("separate", 1)])
def test_command_line_forms_through_systemd_and_gunicorn(tmp_path, strategy, v6only):
    before_args, dropins, plans = _probe_forms(strategy, v6only)
    names = []
    for n, (argv, _) in enumerate(FORMS):
        name = "form%d.service" % n
        names.append(name)
        (tmp_path / name).write_text("[Service]\nExecStart=%s\n" % " ".join(g.systemd_quote(a) for a in argv))
        d = tmp_path / (name + ".d")
        d.mkdir()
        (d / g.DROPIN_NAME).write_text(dropins[n])
    units = systemd_units(str(tmp_path), names)
    after_args = []
    for n, name in enumerate(names):
        argv = systemd_exec_argv(units[name]["argv"], {})
        env, args = gunicorn_invocation(argv)
        orig_env, _ = gunicorn_invocation(FORMS[n][0])
        assert env == orig_env
        # everything before gunicorn's own args is untouched
        assert argv[:len(argv) - len(args)] == FORMS[n][0][:len(FORMS[n][0]) - len(before_args[n])]
        after_args.append(args)
    for version in VERSIONS:
        before = gunicorn_read(version, [{"args": a} for a in before_args])
        after = gunicorn_read(version, [{"args": a} for a in after_args])
        for n in range(len(FORMS)):
            if not before[n]["ok"]:
                continue  # a form this version does not know
            assert_effective(after[n], plans[n], before[n], "%s form %d %r" % (version, n, after_args[n]))


def test_systemd_reads_back_every_awkward_word(tmp_path):
    words = ["/opt/app dir/bin/gunicorn", "--name", "a b", "x\"y", "it's", "100%", "%i", "back\\slash",
             ";", "", "tab\there", "$$HOME", "${NAME}", "--access-logformat", "%(h)s \"%(r)s\""]
    (tmp_path / "q.service").write_text("[Service]\nExecStart=%s\n" % " ".join(g.systemd_quote(w) for w in words))
    stored = systemd_units(str(tmp_path), ["q.service"])["q.service"]["argv"]
    assert systemd_exec_argv(stored, {"NAME": "x", "HOME": "/root"}) == words


def test_systemd_reads_back_environment_lines(tmp_path):
    value = "--bind=[::]:80 --access-logformat='%(h)s \"%(r)s\"' --name=\"a b\" \\x $HOME"
    (tmp_path / "e.service").write_text("[Service]\nExecStart=/bin/true\nEnvironment=%s\n"
                                        % g.systemd_environment("GUNICORN_CMD_ARGS=" + value))
    assert systemd_units(str(tmp_path), ["e.service"])["e.service"]["environment"] == ["GUNICORN_CMD_ARGS=" + value]


def test_envfile_value_reads_back():
    value = "--bind=[::]:80 --name='a b' \"q\" `x` $HOME \\n"
    assert systemd_envfile("GUNICORN_CMD_ARGS=%s\n" % g.envfile_value(value)) == {"GUNICORN_CMD_ARGS": value}


def test_envfile_parser_ignores_export_lines():
    assert systemd_envfile('export A=1\nB="x y" \n# c\nC=\'$z\'\n') == {"B": "x y", "C": "$z"}


# ---------------------------------------------------------------------------
# Tests: forwarded_allow_ips as each gunicorn matches it

@pytest.mark.parametrize("version,current", [
    ("19.9.0", None), ("19.9.0", "10.1.2.3"), ("27.0.1", None), ("27.0.1", "10.0.0.0/8"),
    ("27.0.1", "127.0.0.0/8,10.1.2.3"), (None, None), (None, "10.1.2.3"),
])
def test_dual_socket_keeps_every_trusted_proxy(version, current):
    p = bind_plan(["0.0.0.0:8000"], bindv6only=0, strategy="dual", gunicorn_version=version,
                  forwarded_allow_ips=current)
    args_before = ["-b", "0.0.0.0:8000", "app:app"] + (["--forwarded-allow-ips", current] if current else [])
    svc = _svc(["gunicorn"] + args_before, ["0.0.0.0:8000"], version=version, forwarded_allow_ips=current,
               forwarded_allow_ips_source="cli" if current else "default")
    after = g.gunicorn_changes(svc, p)[0]["content"].split("ExecStart=")[-1].strip()
    args_after = shlex.split(after)[1:]
    for v in ([version] if version else VERSIONS):
        before, res = gunicorn_read(v, [{"args": args_before}, {"args": args_after}])
        assert_effective(res, p, before, "%s %s" % (v, args_after))
        for peer in ("127.0.0.1", "10.1.2.3"):
            if before["trusted"][peer]:
                assert res["trusted"]["::ffff:" + peer], (v, peer, res["forwarded_allow_ips"])


def test_cidr_on_old_gunicorn_is_left_alone_with_a_note():
    p = bind_plan(["0.0.0.0:8000"], bindv6only=0, strategy="dual", gunicorn_version="19.9.0",
                  forwarded_allow_ips="10.0.0.0/8")
    assert p["forwarded_allow_ips"] is None
    assert any("10.0.0.0/8" in n and "exact" in n for n in p["notes"])


def test_cidr_gains_its_mapped_network_from_24_1():
    p = bind_plan(["0.0.0.0:8000"], bindv6only=0, strategy="dual", gunicorn_version="24.1.0",
                  forwarded_allow_ips="10.0.0.0/8")
    assert p["forwarded_allow_ips"] == "10.0.0.0/8,::ffff:10.0.0.0/104"
    p = bind_plan(["0.0.0.0:8000"], bindv6only=0, strategy="dual", gunicorn_version="23.0.0",
                  forwarded_allow_ips="10.0.0.0/8")
    assert p["forwarded_allow_ips"] is None


def test_unknown_version_is_the_oldest():
    p = bind_plan(["127.0.0.1:8000"], gunicorn_version=None)
    assert p["forwarded_allow_ips"] == "127.0.0.1,::1"  # 19.x trusts only 127.0.0.1 by default
    from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import BindError
    with pytest.raises(BindError) as e:
        bind_plan(["0.0.0.0:8000"], bindv6only=0, gunicorn_version=None)
    assert "version could not be read" in str(e.value)
    svc = _svc(["gunicorn", "app:app"], [], "default", version="27.0.1", version_known=False)
    assert g._version(svc) is None


def test_gunicorn_19_9_reads_gunicorn_conf_py_in_its_directory(tmp_path):
    # Measured, not assumed: 19.9.0 already loads ./gunicorn.conf.py.
    (tmp_path / "gunicorn.conf.py").write_text("bind = '127.0.0.1:9001'\n")
    for v in VERSIONS:
        res, = gunicorn_read(v, [{"args": ["app:app"], "cwd": str(tmp_path)}])
        assert res["bind"] == ["127.0.0.1:9001"], v


@pytest.mark.parametrize("version", VERSIONS)
def test_port_environment_is_gunicorns_default_bind(version):
    res, = gunicorn_read(version, [{"args": ["app:app"], "env": {"PORT": "5000"}}])
    assert res["bind"] == ["0.0.0.0:5000"]
