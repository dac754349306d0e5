import shlex
import textwrap

import pytest

import gunicorn_services as gs
from dsr_binds import bind_plan
from dsr_gunicorn import gunicorn_change

UNIT = textwrap.dedent("""\
    [Unit]
    Description=x
    [Service]
    User=app
    Environment=SANDBOX_APP_NAME=webapp
    ExecStart=/usr/bin/gunicorn --workers 2 --bind 0.0.0.0:8000 \\
        app:app
    """)


def service(texts, files=None):
    prefix, argv, env_items, env_files = gs.unit_exec_start(texts)
    cli = gs.parse_gunicorn_args(argv[1:])
    env = gs.parse_env_assignments(env_items)
    env_args = gs.parse_gunicorn_args(shlex.split(env.get("GUNICORN_CMD_ARGS", "")))
    config = gs.parse_config_file(files["config"]) if files and "config" in files else {}
    eff = gs.effective(cli, env_args, config)
    return {"unit": "webapp.service", "argv": argv, "exec_prefix": prefix, "binds": eff["bind"] or ["127.0.0.1:8000"],
            "bind_source": eff["bind_source"], "gunicorn_cmd_args": env.get("GUNICORN_CMD_ARGS"),
            "config_file": "/etc/app.conf.py", "reuse_port": bool(eff["reuse_port"]),
            "reuse_port_source": eff["reuse_port_source"], "forwarded_allow_ips": eff["forwarded_allow_ips"],
            "forwarded_allow_ips_source": eff["forwarded_allow_ips_source"], "gunicorn_cmd_args_file": None}


def test_exec_start_with_continuation_and_flags():
    svc = service([UNIT])
    assert svc["argv"] == ["/usr/bin/gunicorn", "--workers", "2", "--bind", "0.0.0.0:8000", "app:app"]
    assert svc["binds"] == ["0.0.0.0:8000"] and svc["bind_source"] == "cli"


def test_dropin_resets_exec_start():
    dropin = "[Service]\nExecStart=\nExecStart=/usr/bin/gunicorn -b 127.0.0.1:9 app:app\n"
    svc = service([UNIT, dropin])
    assert svc["binds"] == ["127.0.0.1:9"]


def test_two_exec_starts_are_not_understood():
    with pytest.raises(ValueError):
        gs.unit_exec_start(["[Service]\nExecStart=/a\nExecStart=/b\n"])


@pytest.mark.parametrize("args,binds", [
    (["-b", "a:1", "--bind", "b:2", "--bind=c:3", "-bd:4", "app"], ["a:1", "b:2", "c:3", "d:4"]),
    (["--workers", "2", "app:app"], []),
])
def test_cli_bind_forms(args, binds):
    assert gs.parse_gunicorn_args(args)["bind"] == binds


def test_precedence_cli_over_env_over_config():
    cli = {"bind": ["1.1.1.1:1"], "reuse_port": None, "forwarded_allow_ips": None}
    env = {"bind": ["2.2.2.2:2"], "reuse_port": True, "forwarded_allow_ips": None}
    cfg = {"bind": ["3.3.3.3:3"], "forwarded_allow_ips": "10.0.0.1"}
    eff = gs.effective(cli, env, cfg)
    assert eff["bind"] == ["1.1.1.1:1"] and eff["bind_source"] == "cli"
    assert eff["reuse_port_source"] == "env" and eff["forwarded_allow_ips_source"] == "config"


def test_config_file_string_or_list_and_last_wins():
    assert gs.parse_config_file("bind = '0.0.0.0:80'\n")["bind"] == ["0.0.0.0:80"]
    assert gs.parse_config_file("bind = ['a:1', 'b:2']\nworkers = 3\nbind = ('c:3',)\n")["bind"] == ["c:3"]


@pytest.mark.parametrize("text", [
    "import os\nbind = os.environ['BIND']\n",
    "if True:\n    bind = '0.0.0.0:1'\n",
    "bind = 8000\n",
])
def test_config_file_not_understood(text):
    with pytest.raises(ValueError):
        gs.parse_config_file(text)


def test_env_file_parsing():
    # systemd ignores `export X=...` lines in an EnvironmentFile
    env = gs.parse_env_file('# c\nexport GUNICORN_CMD_ARGS="--bind=0.0.0.0:8000 --workers=2"\nX=1\n')
    assert env == {"X": "1"}


def test_is_gunicorn():
    assert gs.is_gunicorn(["/usr/bin/gunicorn", "app"])
    assert gs.is_gunicorn(["/opt/venv/bin/python", "-m", "gunicorn", "app"])
    assert not gs.is_gunicorn(["/usr/sbin/nginx"])


def test_change_for_cli_is_a_dropin_with_new_exec_start():
    svc = service([UNIT])
    plan = bind_plan(svc["binds"], bindv6only=0, gunicorn_version="20.1.0")
    ch = gunicorn_change(svc, plan)
    assert ch["kind"] == "dropin"
    assert ch["path"] == "/etc/systemd/system/webapp.service.d/99-dualstack-rollout.conf"
    assert "ExecStart=\nExecStart=/usr/bin/gunicorn --workers 2 --bind 0.0.0.0:8000 --bind [::]:8000 " \
           "--reuse-port --forwarded-allow-ips 127.0.0.1,::1 app:app\n" in ch["content"]
    # what the drop-in says is what discovery reads back, and a second plan is a no-op
    again = service([UNIT, ch["content"]])
    assert again["binds"] == ["0.0.0.0:8000", "[::]:8000"] and again["reuse_port"]
    plan2 = bind_plan(again["binds"], bindv6only=0, gunicorn_version="20.1.0", reuse_port=again["reuse_port"],
                      forwarded_allow_ips=again["forwarded_allow_ips"])
    assert not plan2["changed"]
    assert gunicorn_change(again, plan2)["content"] == ch["content"]


def test_change_for_env_keeps_other_args():
    unit = "[Service]\nEnvironment=\"GUNICORN_CMD_ARGS=--bind=127.0.0.1:8000 --workers=2\"\nExecStart=/usr/bin/gunicorn app:app\n"
    svc = service([unit])
    assert svc["bind_source"] == "env"
    plan = bind_plan(svc["binds"], gunicorn_version="20.1.0")
    ch = gunicorn_change(svc, plan)
    # the new binds take the old bind's place; other options stay where they were
    assert 'Environment="GUNICORN_CMD_ARGS=--bind=127.0.0.1:8000 --bind=[::1]:8000 ' \
           '--forwarded-allow-ips=127.0.0.1,::1 --workers=2"' in ch["content"]
    again = service([unit, ch["content"]])
    assert again["binds"] == ["127.0.0.1:8000", "[::1]:8000"]


def test_change_for_config_is_a_block():
    cfg = "bind = '0.0.0.0:8000'\nworkers = 2\n"
    svc = service(["[Service]\nExecStart=/usr/bin/gunicorn -c /etc/app.conf.py app:app\n"], {"config": cfg})
    plan = bind_plan(svc["binds"], bindv6only=1, gunicorn_version="20.1.0")
    ch = gunicorn_change(svc, plan)
    assert ch["kind"] == "config"
    merged = cfg + ch["block"] + "\n"
    assert gs.parse_config_file(merged)["bind"] == ["0.0.0.0:8000", "[::]:8000"]


@pytest.mark.parametrize("v6only", [0, 1])
def test_config_block_is_the_same_on_a_second_run(v6only):
    cfg = "bind = '0.0.0.0:8000'\nworkers = 2\n"
    unit = ["[Service]\nExecStart=/usr/bin/gunicorn -c /etc/app.conf.py app:app\n"]
    svc = service(unit, {"config": cfg})
    plan = bind_plan(svc["binds"], bindv6only=v6only, gunicorn_version="20.1.0")
    block = gunicorn_change(svc, plan)["block"]
    svc2 = service(unit, {"config": cfg + block + "\n"})
    plan2 = bind_plan(svc2["binds"], bindv6only=v6only, gunicorn_version="20.1.0", reuse_port=svc2["reuse_port"],
                      forwarded_allow_ips=svc2["forwarded_allow_ips"])
    assert not plan2["changed"]
    assert gunicorn_change(svc2, plan2)["block"] == block


SUPERVISORD_CONF = """\
; supervisor config file
[unix_http_server]
file=/var/run/supervisor.sock   ; (the path to the socket file)

[supervisord]
logfile=/var/log/supervisor/supervisord.log

[include]
files = /etc/supervisor/conf.d/*.conf
"""

PROGRAMS = """\
[program:shop]
command=/usr/local/bin/gunicorn --workers 2 -k gevent -b 0.0.0.0:8000 app:app  ; the shop
directory=/opt/shop
user=www-data
environment=LANG="en_US.UTF-8",SHOP_ENV=prod

[program:api]
command = /usr/local/bin/gunicorn -k gevent app:app
environment = GUNICORN_CMD_ARGS="--bind=0.0.0.0:8001 --workers=1",LANG="C.UTF-8"

[program:worker]
command=/usr/bin/python2.7 worker.py
"""


def supervisor_host(tmp_path, monkeypatch, programs=PROGRAMS):
    conf = tmp_path / "supervisord.conf"
    confd = tmp_path / "conf.d"
    confd.mkdir()
    conf.write_text(SUPERVISORD_CONF.replace("/etc/supervisor/conf.d", str(confd)))
    (confd / "apps.conf").write_text(programs)
    monkeypatch.setattr(gs, "SUPERVISOR_CONFS", (str(conf),))

    class Host(object):
        def supervisor_unit(self):
            return "supervisor.service"

        def version(self, argv):
            return "19.9.0"
    return Host(), str(confd / "apps.conf")


def test_supervisor_programs_are_found_with_their_binds(tmp_path, monkeypatch):
    host, path = supervisor_host(tmp_path, monkeypatch)
    services, problems = gs.discover_supervisor(host)
    assert problems == []
    by = {s["name"]: s for s in services}
    assert set(by) == {"shop", "api"}  # worker.py is not gunicorn
    assert by["shop"]["unit"] == "supervisor:shop" and by["shop"]["cgroup_unit"] == "supervisor.service"
    assert by["shop"]["binds"] == ["0.0.0.0:8000"] and by["shop"]["bind_source"] == "cli"
    assert by["shop"]["conf_path"] == path and by["shop"]["working_directory"] == "/opt/shop"
    assert by["api"]["binds"] == ["0.0.0.0:8001"] and by["api"]["bind_source"] == "env"
    assert by["api"]["environment_pairs"] == [["GUNICORN_CMD_ARGS", '"--bind=0.0.0.0:8001 --workers=1"'],
                                              ["LANG", '"C.UTF-8"']]


def test_supervisor_changes_rewrite_the_programs_own_options(tmp_path, monkeypatch):
    host, path = supervisor_host(tmp_path, monkeypatch)
    by = {s["name"]: s for s in gs.discover_supervisor(host)[0]}
    plan = bind_plan(by["shop"]["binds"], bindv6only=0, gunicorn_version="19.9.0")
    ch = gunicorn_change(by["shop"], plan)
    assert ch["kind"] == "supervisor" and ch["path"] == path and ch["section"] == "program:shop"
    assert ch["option"] == "command"
    argv = shlex.split(ch["value"])
    assert argv[0] == "/usr/local/bin/gunicorn" and argv[-1] == "app:app" and "-k" in argv
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"] == ["0.0.0.0:8000", "[::]:8000"]
    assert "--reuse-port" in argv
    plan = bind_plan(by["api"]["binds"], bindv6only=0, gunicorn_version="19.9.0")
    ch = gunicorn_change(by["api"], plan)
    assert ch["option"] == "environment"
    assert ch["value"].endswith(',LANG="C.UTF-8"')
    env = dict(gs.parse_supervisor_environment(ch["value"]))
    args = shlex.split(shlex.split(env["GUNICORN_CMD_ARGS"])[0])
    assert "--bind=[::]:8001" in args and "--workers=1" in args


def test_supervisor_problems_name_the_program(tmp_path, monkeypatch):
    host, _ = supervisor_host(tmp_path, monkeypatch, "[program:x]\ncommand=gunicorn app:app\nnumprocs=2\n"
                                                     "[program:y]\ncommand=gunicorn -c /nonexistent.py app:app\n")
    services, problems = gs.discover_supervisor(host)
    assert services == []
    assert any(p.startswith("supervisor:x: numprocs > 1") for p in problems), problems
    assert any(p.startswith("supervisor:y: ") for p in problems), problems


def test_no_supervisor_no_programs(monkeypatch):
    monkeypatch.setattr(gs, "SUPERVISOR_CONFS", ("/nonexistent/supervisord.conf",))
    assert gs.supervisor_programs() == []
