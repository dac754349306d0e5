import shlex
import textwrap

import pytest

import gunicorn_services as gs
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import bind_plan
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


# ---------------------------------------------------------------------------
# The rewrite's contract with discovery and the playbooks

from dsr_gunicorn import (RewriteError, gunicorn_changes, locate_gunicorn, rewrite_args, scan_args,  # noqa: E402
                          service_conflicts, service_plans)


def svc_of(argv, binds, source="cli", **kw):
    d = {"unit": "web.service", "manager": "systemd", "argv": argv, "exec_prefix": "", "binds": binds,
         "bind_source": source, "reuse_port": False, "reuse_port_source": "default", "forwarded_allow_ips": None,
         "forwarded_allow_ips_source": "default", "gunicorn_cmd_args": None, "gunicorn_cmd_args_file": None,
         "config_file": None, "version": "19.9.0", "working_directory": "/srv/web"}
    d.update(kw)
    return d


def test_options_after_the_app_module_are_replaced_in_place():
    args = ["app:app", "--bind", "X", "--workers", "3"]
    assert rewrite_args(args, ["A", "B"]) == ["app:app", "--bind", "A", "--bind", "B", "--workers", "3"]
    assert rewrite_args(["-w3", "-bX", "app"], ["A"], reuse_port=True) == ["-w3", "--bind", "A", "--reuse-port", "app"]
    assert rewrite_args(["-Db", "X", "app"], ["A"]) == ["-D", "--bind", "A", "app"]
    assert rewrite_args(["-w", "2", "--", "app"], ["A"]) == ["--bind", "A", "-w", "2", "--", "app"]
    # --bind after `--` is an app argument, not an option
    assert rewrite_args(["--", "app", "--bind", "X"], ["A"]) == ["--bind", "A", "--", "app", "--bind", "X"]


def test_prefixes_and_values_are_read_like_argparse():
    parts = [p for g in scan_args(["--bi", "X", "--forwarded=Y", "--name", "web", "--reuse", "app"])
             for p in g["parts"]]
    assert ("--bind", "bind", "X") in parts and ("--forwarded-allow-ips", "forwarded_allow_ips", "Y") in parts
    with pytest.raises(RewriteError):
        scan_args(["--b", "X", "app"])  # --bind or --backlog
    with pytest.raises(RewriteError):
        scan_args(["app", "--bind"])  # no value


@pytest.mark.parametrize("argv,head", [
    (["/usr/bin/gunicorn", "app"], 1),
    (["/venv/bin/python3.11", "-u", "-m", "gunicorn", "app"], 4),
    (["/venv/bin/python", "-X", "dev", "-mgunicorn", "app"], 4),
    (["/usr/bin/env", "-u", "X", "A=1", "gunicorn", "app"], 5),
    (["newrelic-admin", "run-program", "/venv/bin/gunicorn", "app"], 3),
    (["ddtrace-run", "python", "-m", "gunicorn", "app"], 4),
])
def test_where_gunicorn_starts(argv, head):
    assert locate_gunicorn(argv)["head"] == head


@pytest.mark.parametrize("argv,reason", [
    (["/bin/sh", "-c", "exec gunicorn -b 0.0.0.0:80 app"], "shell command line is not rewritten"),
    (["/srv/app/bin/start.sh"], "wrapper script is a program of its own"),
    (["/usr/bin/python3", "manage.py", "runserver"], "not gunicorn"),
    (["/usr/bin/env", "-S", "gunicorn -b x app"], "env -S"),
])
def test_refused_commands_name_the_unit_and_the_reason(argv, reason):
    svc = svc_of(argv, ["0.0.0.0:80"])
    with pytest.raises(RewriteError) as e:
        gunicorn_changes(svc, bind_plan(svc["binds"], bindv6only=1))
    assert str(e.value).startswith("service web.service: ") and reason in str(e.value)


def test_second_run_writes_the_same_dropin():
    svc = svc_of(["/usr/bin/gunicorn", "app:app", "-b", "0.0.0.0:8000", "-w", "3"], ["0.0.0.0:8000"])
    plan = bind_plan(svc["binds"], bindv6only=0, gunicorn_version="19.9.0")
    first = gunicorn_changes(svc, plan)
    argv2 = shlex.split(first[0]["content"].split("ExecStart=")[-1])
    svc2 = svc_of(argv2, ["0.0.0.0:8000", "[::]:8000"], reuse_port=True, reuse_port_source="cli",
                  forwarded_allow_ips="127.0.0.1,::1", forwarded_allow_ips_source="cli")
    plan2 = bind_plan(svc2["binds"], bindv6only=0, gunicorn_version="19.9.0", reuse_port=True,
                      forwarded_allow_ips="127.0.0.1,::1")
    assert not plan2["changed"]
    assert gunicorn_changes(svc2, plan2) == first


def test_dropin_path_from_discovery_wins():
    svc = svc_of(["/usr/bin/gunicorn", "app"], ["127.0.0.1:8000"], "default",
                 dropin_path="/etc/systemd/system/web.service.d/zz-dualstack-rollout.conf")
    ch = gunicorn_changes(svc, bind_plan(svc["binds"]))[0]
    assert ch["path"] == "/etc/systemd/system/web.service.d/zz-dualstack-rollout.conf"
    assert "ExecStart=/usr/bin/gunicorn --bind 127.0.0.1:8000 --bind [::1]:8000" in ch["content"]


def test_port_env_gets_bind_flags_and_config_default_a_block():
    svc = svc_of(["/usr/bin/gunicorn", "app"], ["0.0.0.0:5000"], "port_env")
    ch = gunicorn_changes(svc, bind_plan(svc["binds"], bindv6only=1))
    assert [c["kind"] for c in ch] == ["dropin"] and "--bind 0.0.0.0:5000 --bind [::]:5000" in ch[0]["content"]
    svc = svc_of(["/usr/bin/gunicorn", "app"], ["0.0.0.0:8000"], "config_default")
    ch = gunicorn_changes(svc, bind_plan(svc["binds"], bindv6only=1))
    assert ch == [{"kind": "config", "path": "/srv/web/gunicorn.conf.py", "block": ch[0]["block"]}]
    assert "bind = ['0.0.0.0:8000', '[::]:8000']" in ch[0]["block"]


def test_forwarded_allow_ips_changes_in_its_own_envfile():
    svc = svc_of(["/usr/bin/gunicorn", "-b", "0.0.0.0:80", "app"], ["0.0.0.0:80"],
                 forwarded_allow_ips="10.1.2.3", forwarded_allow_ips_source="environment",
                 forwarded_allow_ips_file="/etc/default/web")
    ch = gunicorn_changes(svc, bind_plan(svc["binds"], strategy="dual", gunicorn_version="19.9.0",
                                         forwarded_allow_ips="10.1.2.3"))
    assert [c["kind"] for c in ch] == ["dropin", "envfile"]
    assert ch[1]["line"] == 'FORWARDED_ALLOW_IPS="10.1.2.3,::ffff:10.1.2.3"'
    assert "forwarded" not in ch[0]["content"]


def test_version_known_false_plans_as_the_oldest():
    from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import BindError
    svc = svc_of(["/usr/bin/gunicorn", "-b", "0.0.0.0:80", "app"], ["0.0.0.0:80"], version="27.0.1",
                 version_known=False)
    with pytest.raises(BindError) as e:
        service_plans([svc], 0, "separate", [], [], "app1")
    assert "oldest supported" in str(e.value)


def _item(unit, binds, **kw):
    svc = svc_of(["/usr/bin/gunicorn", "app"], binds, unit=unit)
    return {"service": svc, "plan": bind_plan(binds, **kw)}


def test_conflicts_name_both_units():
    msgs = service_conflicts([_item("a.service", ["127.0.0.1:8000"]), _item("b.service", ["127.0.0.2:8000"])])
    assert len(msgs) == 1 and "a.service" in msgs[0] and "b.service" in msgs[0] and "[::1]:8000" in msgs[0]
    # two services gaining [::]:P (one IPv4 address each), and a dual [::] against an IPv4 listener
    two = [_item("a.service", ["0.0.0.0:8000"], bindv6only=1), _item("b.service", ["10.0.0.9:8000"],
                                                                     interfaces={"10.0.0.9": ["fd00::9"]})]
    assert len(service_conflicts(two)) == 1
    assert service_conflicts([_item("a.service", ["127.0.0.1:8000"]), _item("b.service", ["127.0.0.1:8001"])]) == []
    dual = [_item("a.service", ["0.0.0.0:8000"], strategy="dual"), _item("b.service", ["unix:/run/b.sock"])]
    assert service_conflicts(dual) == []


def test_service_plans_carry_changes_and_problems():
    svcs = [svc_of(["/usr/bin/gunicorn", "-b", "127.0.0.1:8000", "a:app"], ["127.0.0.1:8000"], unit="a.service"),
            svc_of(["/usr/bin/gunicorn", "-b", "127.0.0.2:8000", "b:app"], ["127.0.0.2:8000"], unit="b.service"),
            svc_of(["/usr/bin/gunicorn", "-b", "127.0.0.1:9000", "c:app"], ["127.0.0.1:9000"], unit="c.service")]
    items = service_plans(svcs, 0, "separate", [], [], "app1")
    assert [sorted(i) for i in items] == [["change", "changes", "plan", "problems", "service"]] * 3
    assert items[0]["change"] == items[0]["changes"][0]
    assert items[0]["problems"] == items[1]["problems"] and len(items[0]["problems"]) == 1
    assert items[2]["problems"] == []
