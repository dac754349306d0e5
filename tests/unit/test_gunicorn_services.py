"""The pure parts of gunicorn_services, host-free: systemctl show's formats, systemd's EnvironmentFile
rules, gunicorn's command line and config files, launch forms, supervisord's expansion, the drop-in
name; and the module compiles and runs its parsers under the fleet's Python 2.7 and 3.6."""
import os
import subprocess
import textwrap

import pytest

from conftest import pyenv_python

import gunicorn_services as gs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(ROOT, "plugins", "modules", "gunicorn_services.py")


# --- systemctl show ------------------------------------------------------------------------------

def test_exec_start_property_old_and_ex_formats():
    old = ("{ path=/opt/v/bin/gunicorn ; argv[]=/opt/v/bin/gunicorn -b 0.0.0.0:8000 app:app ; ignore_errors=no ; "
           "start_time=[Mon 2026-11-23 10:00:00 UTC] ; stop_time=[n/a] ; pid=812 ; code=(null) ; status=0/0 }")
    ex = ("{ path=/opt/v/bin/gunicorn ; argv[]=/opt/v/bin/gunicorn app:app ; flags=ignore-failure|no-env-expand ; "
          "start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }")
    a, = gs.parse_exec_property(old)
    assert a["path"] == "/opt/v/bin/gunicorn" and a["argv_text"].endswith("app:app") and not a["ignore_errors"]
    b, = gs.parse_exec_property([ex])
    assert b["ignore_errors"] and "no-env-expand" in b["flags"]


def test_show_blocks_and_repeated_properties():
    text = ("Id=a.service\nExecStart={ path=/x ; argv[]=/x ; ignore_errors=no ; pid=0 }\n"
            "ExecStart={ path=/y ; argv[]=/y 1 ; ignore_errors=no ; pid=0 }\n\nId=b.service\nMainPID=0\n")
    a, b = gs.parse_show(text)
    assert len(gs.parse_exec_property(a["ExecStart"])) == 2 and b["Id"] == "b.service"


@pytest.mark.parametrize("value,env", [
    ('PORT=5000 "GUNICORN_CMD_ARGS=--bind=127.0.0.1:8001 --workers 2"',
     {"PORT": "5000", "GUNICORN_CMD_ARGS": "--bind=127.0.0.1:8001 --workers 2"}),
    # systemd before shell quoting in show: the words after the first belong to the value
    ("GUNICORN_CMD_ARGS=--bind=127.0.0.1:8001 --workers 2 LANG=C",
     {"GUNICORN_CMD_ARGS": "--bind=127.0.0.1:8001 --workers 2", "LANG": "C"}),
    ("", {}),
])
def test_show_environment(value, env):
    assert gs.parse_show_environment(value) == env


def test_environment_files_property():
    assert gs.parse_environment_files(["/etc/default/a (ignore_errors=no)", "/etc/b c (ignore_errors=yes)"]) == \
        [("/etc/default/a", False), ("/etc/b c", True)]


# --- systemd's EnvironmentFile rules --------------------------------------------------------------

@pytest.mark.parametrize("text,env", [
    ("export GUNICORN_CMD_ARGS=--bind=0.0.0.0:1\nX=1\n", {"X": "1"}),          # export: invalid, ignored
    ('A="two words"\nB=\'single $x\'\n', {"A": "two words", "B": "single $x"}),
    ('A="esc \\" \\$ \\\\ \\n"\n', {"A": 'esc " $ \\ \\n'}),                 # only "\\`$ are escapes in "..."
    ("A=one \\\n  two\n", {"A": "one   two"}),                   # continuation: the newline goes, spaces stay
    ("A=value with trailing   \n", {"A": "value with trailing"}),
    ("  # comment\n; comment\nA=1 # not a comment\n", {"A": "1 # not a comment"}),
    ("A='x'y\"z\"\n", {"A": 'xy"z"'}),                   # quotes count only at the start of a value
    ('A="multi\nline"\n', {"A": "multi\nline"}),
    ("A = spaced\n", {"A": "spaced"}),
    ("1BAD=x\nGOOD-NOT=x\nNOEQUALS\n", {}),
    ("A=1\nA=2\n", {"A": "2"}),
    ("# comment \\\nA=after\n", {"A": "after"}),                             # systemd >= 254
])
def test_environment_file(text, env):
    assert gs.parse_environment_file(text) == env


# --- unit files: words and specifiers -------------------------------------------------------------

def test_unit_words_quotes_escapes_and_specifiers():
    words = gs.split_unit_words('/x "a b" \'c d\' e\\x41 "%%(h)s"')
    assert words == ["/x", "a b", "c d", "eA", "%%(h)s"]
    assert gs.resolve_specifiers("/srv/%i/%p.sock %%", "app@shop.service") == "/srv/shop/app.sock %"
    assert gs.resolve_specifiers("%I", "app@srv-www.service") == "srv/www"
    with pytest.raises(gs.NotUnderstood):
        gs.resolve_specifiers("%H", "a.service")


def test_effective_exec_start_of_fragment_and_dropins():
    frag = "[Service]\nExecStart=/a -b 1 \\\n  app\nEnvironment=A=1 \"B=2 3\"\n"
    drop = "[Service]\nExecStart=\nExecStart=-/b app\n"
    prefix, argv, env, files = gs.unit_exec_start([frag, drop])
    assert prefix == "-" and argv == ["/b", "app"] and env == ["A=1", "B=2 3"]
    with pytest.raises(ValueError):
        gs.unit_exec_start(["[Service]\nExecStart=/a\nExecStart=/b\n"])


def test_exec_env_expansion_like_systemd():
    env = {"OPTS": "--bind 127.0.0.1:1 '--name=a b'", "B": "x y"}
    assert gs.expand_exec_env(["/g", "$OPTS", "${B}", "pre${B}post", "$$HOME", "$UNSET", "app"], env) == \
        ["/g", "--bind", "127.0.0.1:1", "--name=a b", "x y", "prex ypost", "$HOME", "app"]


@pytest.mark.parametrize("existing,name", [
    ([], "99-dualstack-rollout.conf"),
    (["/etc/systemd/system/a.service.d/10-x.conf"], "99-dualstack-rollout.conf"),
    (["/etc/systemd/system/a.service.d/override.conf"], "zz-dualstack-rollout.conf"),
    (["/run/systemd/system/a.service.d/zz-late.conf"], "zzzz-dualstack-rollout.conf"),
    (["/etc/systemd/system/a.service.d/override.conf",
      "/etc/systemd/system/a.service.d/zz-dualstack-rollout.conf"], "zz-dualstack-rollout.conf"),
    (["/etc/systemd/system/a.service.d/99-dualstack-rollout.conf"], "99-dualstack-rollout.conf"),
])
def test_dropin_name_sorts_after_every_other(existing, name):
    got = gs.dropin_name(existing)
    assert got == name
    assert all(got > os.path.basename(p) for p in existing if not p.endswith(gs.DROPIN_SUFFIX))


# --- gunicorn's command line --------------------------------------------------------------------

@pytest.mark.parametrize("args,binds,positional", [
    (["-b", "a:1", "--bind", "b:2", "--bind=c:3", "-bd:4", "app"], ["a:1", "b:2", "c:3", "d:4"], ["app"]),
    (["app:app", "--bind", "0.0.0.0:1", "--workers", "3"], ["0.0.0.0:1"], ["app:app"]),
    (["--bin", "x:1", "-w2", "-Db", "y:2", "app"], ["x:1", "y:2"], ["app"]),
    (["--preload", "app", "--", "-weird"], [], ["app", "-weird"]),
])
def test_cli_forms(args, binds, positional):
    r = gs.parse_gunicorn_args(args)
    assert r["bind"] == binds and r["args"] == positional


@pytest.mark.parametrize("args,why", [
    (["--work", "2", "app"], "ambiguous"),
    (["--bogus", "app"], "not a gunicorn option"),
    (["-b"], "has no value"),
    (["--reuse-port=yes", "app"], "takes no value"),
])
def test_cli_refusals(args, why):
    with pytest.raises(gs.NotUnderstood) as e:
        gs.parse_gunicorn_args(args)
    assert why in str(e.value)


def test_precedence_by_version():
    cli = gs.parse_gunicorn_args(["app"])
    env = gs.parse_gunicorn_args(["--bind=1.1.1.1:1", "--reuse-port"])
    cfg = {"bind": ["2.2.2.2:2"], "forwarded_allow_ips": "10.0.0.1"}
    r = gs.effective_settings(cli, env, cfg, {"PORT": "5"}, (19, 9, 0))
    assert (r["bind"], r["bind_source"], r["reuse_port_source"], r["forwarded_allow_ips_source"]) == \
        (["1.1.1.1:1"], "env", "env", "config")
    r = gs.effective_settings(cli, env, {}, {"PORT": "5"}, (19, 6, 0))   # no GUNICORN_CMD_ARGS before 19.7
    assert (r["bind"], r["bind_source"], r["reuse_port"]) == (["0.0.0.0:5"], "port_env", False)
    r = gs.effective_settings(cli, None, {}, {}, None)
    assert (r["bind"], r["bind_source"]) == (["127.0.0.1:8000"], "default")
    r = gs.effective_settings(cli, None, {}, {"FORWARDED_ALLOW_IPS": "*"}, None)
    assert (r["forwarded_allow_ips"], r["forwarded_allow_ips_source"]) == ("*", "environment")


# --- config files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,env,binds", [
    ("bind = '0.0.0.0:80'\n", {}, ["0.0.0.0:80"]),
    ("bind = ['a:1', 'b:2']\nworkers = 3\nbind = ('c:3',)\n", {}, ["c:3"]),
    ("import os\nbind = os.environ['B']\n", {"B": "x:1"}, ["x:1"]),
    ("from os import environ\nbind = 'h:' + environ.get('P', '2')\n", {}, ["h:2"]),
    ("import os\nbind = ':'.join([os.getenv('H', 'a'), str(int(os.getenv('P', '3')))])\n", {}, ["a:3"]),
    ("bind = '%s:%s' % ('a', 4)\n", {}, ["a:4"]),
    ("H = 'a'\nbind = '{}:{}'.format(H, 5)\n", {}, ["a:5"]),
    ("bind = ['a:1']\nbind += ['b:2']\n", {}, ["a:1", "b:2"]),
    ("import os\nx = os.cpu_count()\nbind = 'a:6'\n", {}, ["a:6"]),          # unknown, unused: fine
    ("try:\n    import gevent\nexcept ImportError:\n    pass\nbind = 'a:7'\n", {}, ["a:7"]),
    ("bind: str = 'a:8'\n", {}, ["a:8"]),
])
def test_config_evaluated(text, env, binds):
    assert gs.parse_config_file(text, env)["bind"] == binds


@pytest.mark.parametrize("text,why", [
    ("import os\nbind = os.environ['BIND']\n", "line 2: reads os.environ['BIND']"),
    ("if True:\n    bind = '0.0.0.0:1'\n", "sets bind inside an if block (line 2)"),
    ("bind = 8000\n", "not a string or a list"),
    ("from settings import *\n", "line 1: imports * from settings"),
    ("from conf import bind\n", "imports bind from conf"),
    ("import settings\nbind = settings.BIND\n", "line 2"),
    ("globals()['bind'] = 'x:1'\n", "calls globals()"),
    ("exec('bind = 1')\n", "calls exec()"),
    ("for p in (1, 2):\n    bind = 'a:%d' % p\n", "inside a for block"),
    ("def f():\n    return 'a:1'\nbind = f()\n", "line 3"),
    ("x = compute()\nbind = x\n", "line 1"),
    ("bind = ['a:1']\nbind[0] = 'b:2'\n", "changes bind in place"),
    ("print 'python 2'\nbind = 'a:1'\n", "cannot parse it"),
])
def test_config_not_understood(text, why):
    with pytest.raises(ValueError) as e:
        gs.parse_config_file(text, {}, label="/etc/x.py")
    assert why in str(e.value)


def test_config_reuse_port_and_forwarded():
    r = gs.parse_config_file("reuse_port = True\nforwarded_allow_ips = ['10.0.0.1', '127.0.0.1']\n")
    assert r == {"reuse_port": True, "forwarded_allow_ips": "10.0.0.1,127.0.0.1"}


# --- launch forms ---------------------------------------------------------------------------------

FS = gs.FS("/nonexistent-root")


@pytest.mark.parametrize("argv,launcher,index", [
    (["/usr/bin/gunicorn", "app"], ["gunicorn"], 0),
    (["/opt/v/bin/python3", "-u", "-m", "gunicorn", "app"], ["python -m gunicorn"], 3),
    (["/usr/bin/env", "-u", "X", "A=1", "/usr/bin/gunicorn", "app"], ["env", "gunicorn"], 4),
    (["/usr/bin/env", "--", "gunicorn", "app"], ["env", "gunicorn"], 2),
    (["/opt/v/bin/newrelic-admin", "run-program", "gunicorn", "app"], ["newrelic-admin run-program", "gunicorn"], 2),
    (["/opt/v/bin/newrelic-admin", "run-python", "-m", "gunicorn", "app"], ["newrelic-admin run-python"], 3),
    (["ddtrace-run", "gunicorn", "app"], ["ddtrace-run", "gunicorn"], 1),
    (["opentelemetry-instrument", "--traces_exporter", "console", "--metrics_exporter=none", "gunicorn", "app"],
     ["opentelemetry-instrument", "gunicorn"], 4),
    (["/usr/bin/dumb-init", "--", "/usr/bin/gunicorn", "app"], ["dumb-init", "gunicorn"], 2),
    (["/usr/bin/tini", "--", "gunicorn", "app"], ["tini", "gunicorn"], 2),
    (["/usr/bin/nice", "-n", "10", "gunicorn", "app"], ["nice", "gunicorn"], 3),
    (["/usr/bin/authbind", "--deep", "gunicorn", "-b", "0.0.0.0:80", "app"], ["authbind", "gunicorn"], 2),
    (["/bin/sh", "-c", "exec gunicorn -b 0.0.0.0:8000 app"], ["sh -c", "gunicorn"], 0),
    (["/bin/bash", "-lc", "A=1 exec /usr/bin/gunicorn app"], ["bash -c", "env", "gunicorn"], 2),
])
def test_launch_forms(argv, launcher, index):
    launch = gs.understand_command(argv, FS, {})
    assert launch.launcher == launcher and launch.gunicorn_index == index, (launch.launcher, launch.argv)


def test_shell_expansion_and_quoting():
    launch = gs.understand_command(["/bin/sh", "-c", 'exec gunicorn -b "0.0.0.0:${PORT:-5000}" $OPTS \'a b\''],
                                   FS, {"OPTS": "--workers 2"})
    assert launch.argv == ["gunicorn", "-b", "0.0.0.0:5000", "--workers", "2", "a b"]


@pytest.mark.parametrize("argv,why", [
    (["/bin/sh", "-c", "cd /srv && gunicorn app"], "compound"),
    (["/bin/sh", "-c", "gunicorn app | logger"], "compound"),
    (["/bin/sh", "-c", "gunicorn app > /log"], "redirects"),
    (["/bin/sh", "-c", "exec gunicorn -b $(cat /etc/bind) app"], "$("),
    (["/bin/sh", "-c", "`which gunicorn` app"], "compound"),
    (["/bin/sh", "/srv/start-gunicorn.sh"], "without -c"),
    (["/usr/bin/env", "-S", "gunicorn app"], "env -S"),
    (["/usr/bin/python3", "-c", "import gunicorn"], "runs python3"),
    (["/usr/local/bin/gunicorn_django", "app"], "gunicorn_django"),
    (["/usr/bin/newrelic-admin", "validate-config", "gunicorn"], "not run-program"),
])
def test_launch_refusals(argv, why):
    with pytest.raises(gs.NotUnderstood) as e:
        gs.understand_command(argv, FS, {})
    assert why in str(e.value)


def test_script_kinds(tmp_path):
    fs = gs.FS(str(tmp_path))
    (tmp_path / "console").write_text("#!/opt/v/bin/python3\nimport re\nimport sys\n"
                                      "from gunicorn.app.wsgiapp import run\nsys.exit(run())\n")
    (tmp_path / "custom").write_text("#!/usr/bin/python3\nfrom gunicorn.app.base import BaseApplication\n")
    (tmp_path / "start").write_text("#!/bin/bash\nexec gunicorn app\n")
    (tmp_path / "elf").write_bytes(b"\x7fELF\x02\x01")
    assert gs.script_kind(fs, "/console") == "python-gunicorn"
    assert gs.script_kind(fs, "/custom") == "Python script mentioning gunicorn"
    assert gs.script_kind(fs, "/start") == "shell script mentioning gunicorn"
    assert gs.script_kind(fs, "/elf") == "binary executable"
    assert gs.script_kind(fs, "/missing") == "missing"


def test_is_gunicorn():
    assert gs.is_gunicorn(["/usr/bin/gunicorn", "app"])
    assert gs.is_gunicorn(["/opt/venv/bin/python", "-m", "gunicorn", "app"])
    assert not gs.is_gunicorn(["/usr/sbin/nginx"])


# --- site directories and versions ----------------------------------------------------------------

def _lay(tmp_path, files, links=()):
    for path, text in files.items():
        p = tmp_path / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for path, target in links:
        p = tmp_path / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, str(p))
    return gs.FS(str(tmp_path))


def test_site_dirs_debian_system_python(tmp_path):
    fs = _lay(tmp_path, {"/usr/bin/python3.9": "", "/usr/lib/python3/dist-packages/x": "",
                         "/usr/local/lib/python3.9/dist-packages/x": ""}, [("/usr/bin/python3", "python3.9")])
    dirs, xy = gs.python_site_dirs(fs, "/usr/bin/python3")
    assert xy == "3.9"
    assert dirs.index("/usr/local/lib/python3.9/dist-packages") < dirs.index("/usr/lib/python3/dist-packages")


def test_site_dirs_rhel_and_user_site(tmp_path):
    fs = _lay(tmp_path, {"/usr/bin/python3.6": "", "/usr/lib64/python3.6/site-packages/x": "",
                         "/usr/lib/python3.6/site-packages/x": "",
                         "/home/app/.local/lib/python3.6/site-packages/x": ""})
    dirs, _ = gs.python_site_dirs(fs, "/usr/bin/python3.6", home="/home/app")
    assert dirs[0] == "/home/app/.local/lib/python3.6/site-packages"
    assert "/usr/lib64/python3.6/site-packages" in dirs and "/usr/lib/python3.6/site-packages" in dirs


def test_site_dirs_venv_with_system_site_packages(tmp_path):
    fs = _lay(tmp_path, {"/opt/v/pyvenv.cfg": "home = /usr/bin\ninclude-system-site-packages = true\nversion = 3.6.9\n",
                         "/opt/v/lib/python3.6/site-packages/x": "", "/usr/bin/python3.6": "",
                         "/usr/lib/python3/dist-packages/x": ""},
              [("/opt/v/bin/python", "/usr/bin/python3.6")])
    dirs, _ = gs.python_site_dirs(fs, "/opt/v/bin/python")
    assert dirs[0] == "/opt/v/lib/python3.6/site-packages" and "/usr/lib/python3/dist-packages" in dirs


def test_site_dirs_legacy_virtualenv_python27(tmp_path):
    fs = _lay(tmp_path, {"/srv/env/bin/python2.7": "", "/srv/env/lib/python2.7/orig-prefix.txt": "/usr",
                         "/srv/env/lib/python2.7/no-global-site-packages.txt": "",
                         "/srv/env/lib/python2.7/site-packages/x": ""})
    assert gs.python_site_dirs(fs, "/srv/env/bin/python2.7")[0] == ["/srv/env/lib/python2.7/site-packages"]


def test_version_from_init_then_metadata(tmp_path):
    fs = _lay(tmp_path, {"/s1/gunicorn/__init__.py": "version_info = (19, 9, 0)\n",
                         "/s2/gunicorn-20.1.0.dist-info/METADATA": "Name: gunicorn\nVersion: 20.1.0\n",
                         "/s3/gunicorn-19.7.1-py2.7.egg-info/PKG-INFO": "Version: 19.7.1\n"})
    assert gs.gunicorn_version_in(fs, "/s1") == ("19.9.0", "/s1/gunicorn/__init__.py")
    assert gs.gunicorn_version_in(fs, "/s2")[0] == "20.1.0"
    assert gs.gunicorn_version_in(fs, "/s3")[0] == "19.7.1"
    assert gs.gunicorn_version_in(fs, "/nothing") == (None, None)


# --- supervisord -----------------------------------------------------------------------------------

def test_supervisor_expansion():
    exp = {"here": "/etc/supervisor/conf.d", "program_name": "shop", "process_num": 3, "ENV_HOME": "/root"}
    assert gs.supervisor_expand("%(here)s/%(program_name)s-%(process_num)02d %(ENV_HOME)s 100%%", exp, "x") == \
        "/etc/supervisor/conf.d/shop-03 /root 100%"
    with pytest.raises(gs.NotUnderstood) as e:
        gs.supervisor_expand("%(ENV_NOPE)s", exp, "command=")
    assert "ENV_NOPE" in str(e.value)


def test_supervisor_search_order():
    assert gs.supervisor_search_order("/usr/local/bin/supervisord", "/srv")[:4] == [
        "/usr/local/etc/supervisord.conf", "/usr/local/supervisord.conf", "/srv/supervisord.conf",
        "/srv/etc/supervisord.conf"]
    assert gs.supervisor_search_order()[-2:] == ["/etc/supervisord.conf", "/etc/supervisor/supervisord.conf"]


def test_supervisorctl_status():
    out = ("shop                             RUNNING   pid 2101, uptime 3 days, 4:05:06\n"
           "site:back                        STOPPED   Nov 25 05:00 PM\n"
           "broken                           FATAL     Exited too quickly (process log may have details)\n")
    assert gs.parse_supervisorctl_status(out) == {"shop": ("RUNNING", 2101), "site:back": ("STOPPED", 0),
                                                  "broken": ("FATAL", 0)}


def test_supervisor_environment_pairs():
    assert gs.parse_supervisor_environment('A="1,2",B=3, C=\'x y\'') == [("A", '"1,2"'), ("B", "3"), ("C", "'x y'")]


# --- the host commands: each bounded by timeout, failures named ----------------------------------

class FakeModule(object):
    def __init__(self, rc=0, out="", err=""):
        self.calls, self.rc, self.out, self.err = [], rc, out, err

    def get_bin_path(self, name):
        return "/usr/bin/" + name

    def run_command(self, args, environ_update=None):
        self.calls.append(args)
        return self.rc, self.out, self.err


def test_every_command_runs_under_timeout():
    m = FakeModule(out="")
    host = gs.Host(m, timeout=7)
    host.list_units()
    host.show(["a.service"])
    host.supervisorctl_status("/etc/supervisor/supervisord.conf")
    assert all(c[:2] == ["/usr/bin/timeout", "7"] for c in m.calls)
    assert [c[2] for c in m.calls] == ["systemctl", "systemctl", "/usr/bin/supervisorctl"]


@pytest.mark.parametrize("rc,why", [(124, "timed out after 20 s"), (1, "failed (rc 1)")])
def test_failing_command_is_named(rc, why):
    host = gs.Host(FakeModule(rc=rc, err="boom"))
    with pytest.raises(gs.CommandFailed) as e:
        host.list_unit_files()
    assert "systemctl list-unit-files" in str(e.value) and why in str(e.value)


def test_supervisorctl_rc_3_is_a_status():
    assert gs.Host(FakeModule(rc=3, out="x STOPPED Not started\n")).supervisorctl_status("/c") == \
        "x STOPPED Not started\n"


def test_documentation_parses_and_matches_the_arguments():
    import yaml
    doc = yaml.safe_load(gs.DOCUMENTATION)
    assert set(doc["options"]) == {"only", "skip", "command_timeout"}
    assert set(yaml.safe_load(gs.RETURN)) == {"services", "problems", "commands"}
    yaml.safe_load(gs.EXAMPLES)


def test_documentation_lists_the_commands():
    doc = gs.DOCUMENTATION
    for cmd in ("systemctl list-units", "systemctl list-unit-files", "systemctl show", "supervisorctl -c CONF status",
                "timeout"):
        assert cmd in doc


# --- the fleet's interpreters ---------------------------------------------------------------------



PY_CHECK = textwrap.dedent("""
    import sys
    sys.path.insert(0, %r)
    import gunicorn_services as gs
    assert gs.parse_environment_file("export A=1\\nB='x y'\\n") == {"B": "x y"}
    assert gs.parse_config_file("import os\\nbind = '0.0.0.0:' + os.environ['PORT']\\n", {"PORT": "1"}) == \\
        {"bind": ["0.0.0.0:1"]}
    assert gs.parse_gunicorn_args(["app", "--bind", "a:1"])["bind"] == ["a:1"]
    launch = gs.understand_command(["/bin/sh", "-c", "exec gunicorn -b $B app"], gs.FS("/nonexistent"), {"B": "x:1"})
    assert launch.argv == ["gunicorn", "-b", "x:1", "app"]
    print("ok")
""") % os.path.dirname(MODULE)


@pytest.mark.parametrize("version,exe", [("2.7.18", "python2.7"), ("3.6.15", "python3.6")])
def test_module_compiles_and_parses_under_fleet_python(version, exe, tmp_path):
    py = pyenv_python(version, exe)
    r = subprocess.run([py, "-m", "py_compile", MODULE], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([py, "-c", PY_CHECK], capture_output=True, text=True, cwd=str(tmp_path),
                       env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


PY27_CORPUS = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, %r)
    import gunicorn_services as gs

    class Host(object):
        def __init__(self, c):
            self.fs, self.c = gs.FS(c["root"]), c
        def has_systemd(self):
            return self.c["systemd"]
        def list_units(self):
            return "".join("%%s loaded active running x\\n" %% u for u in self.c["shows"])
        def list_unit_files(self):
            return ""
        def show(self, units):
            return "\\n\\n".join(self.c["shows"][u] for u in units)
        def supervisorctl_status(self, conf):
            return self.c["status"]

    out = {}
    for c in json.load(sys.stdin):
        services, problems = gs.discover(Host(c), c["only"], c["skip"])
        out[c["name"]] = {"services": services, "problems": problems}
    print(json.dumps(out))
""") % os.path.dirname(MODULE)


@pytest.mark.parametrize("version,exe", [("2.7.18", "python2.7"), ("3.6.15", "python3.6")])
def test_corpus_discovers_the_same_under_fleet_python(version, exe, tmp_path):
    """The fleet's Python 2.7 and 3.6 hosts: the whole corpus gives the same result as here."""
    from test_gunicorn_services_corpus import case_names, lay_out
    py = pyenv_python(version, exe)
    jobs, want = [], {}
    for name in case_names():
        root = str(tmp_path / name)
        os.makedirs(root)
        host, expect = lay_out(name, root)
        only, skip = expect.get("only", []), expect.get("skip", [])
        services, problems = gs.discover(host, only, skip)
        want[name] = {"services": services, "problems": problems}
        jobs.append({"name": name, "root": root, "systemd": host.systemd, "shows": host.shows,
                     "status": host.status, "only": only, "skip": skip})
    import json
    r = subprocess.run([py, "-c", PY27_CORPUS], input=json.dumps(jobs), capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout)
    for name in case_names():
        if name == "sysd-config-fstring" and version.startswith("2."):  # an f-string is a syntax error for Python 2.7's parser: named
            assert got[name]["services"] == [] and "cannot parse it" in got[name]["problems"][0]
            continue
        assert got[name] == want[name], name
