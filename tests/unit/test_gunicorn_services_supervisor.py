"""supervisord's own configuration reader judges the corpus's supervisord cases.

supervisor 4.2.5 is installed for the tests only into .cache/supervisor-4.2.5/ (pip --target into a
temporary directory, then renamed). Its ServerOptions reads each case's supervisord.conf, [include]
files, %(here)s, %(ENV_X)s, %(program_name)s, %(process_num)s as supervisord does; every program it
finds that discovery reports must have the same command words, directory, environment and autostart.
"""
import json
import os
import shlex
import subprocess
import sys

import gunicorn_services as gs
from test_gunicorn_services_corpus import case_names, check_case
from test_gunicorn_services_oracle import CACHE, _pip_target

VERSION = "4.2.5"

PROBE = r'''
import glob as _glob, io, json, os, sys
import supervisor.options as so
jobs = json.load(sys.stdin)
results = []
for job in jobs:
    root = job["root"]
    os.environ.clear()
    os.environ.update(job["env"])

    class G(object):
        @staticmethod
        def glob(pattern, root=root):
            if not pattern.startswith(root):
                pattern = root + pattern
            return _glob.glob(pattern)
    so.glob = G
    so.name_to_uid = lambda name: 0
    so.existing_directory = lambda v: v
    so.existing_dirpath = lambda v: v
    err, real, real_out = io.StringIO(), sys.stderr, sys.stdout
    sys.stderr = sys.stdout = err
    opts = so.ServerOptions()
    opts.stderr = opts.stdout = err
    try:
        opts.realize(args=["-c", root + job["conf"]])
    except SystemExit:
        results.append({"error": err.getvalue()})
        continue
    finally:
        sys.stderr, sys.stdout = real, real_out
    out = []
    for g in opts.process_group_configs:
        for p in g.process_configs:
            out.append({"group": g.name, "name": p.name, "command": p.command, "directory": p.directory,
                        "environment": p.environment or {}, "autostart": bool(p.autostart)})
    results.append({"programs": out})
print(json.dumps(results))
'''


def supervisor_paths():
    target = os.path.join(CACHE, "supervisor-%s" % VERSION)
    if not os.path.isdir(target):
        _pip_target(target, ["supervisor==%s" % VERSION])
    return [target]


def supervisord_reads(jobs):
    r = subprocess.run([sys.executable, "-c", PROBE], input=json.dumps(jobs),
                       capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(supervisor_paths())})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _unroot(value, root):
    return value.replace(root, "") if isinstance(value, str) else value


def test_supervisor_cases_match_supervisords_reader(tmp_path):
    cases = []
    for name in [n for n in case_names() if n.startswith("sup-")]:
        host, services, problems, root = check_case(name, tmp_path / name)
        if not services:
            continue
        # supervisord's environment as the host holds it: /proc/PID/environ, else its unit's Environment=
        shows = [gs.parse_show(t)[0] for u, t in host.shows.items() if u.startswith("supervisor")]
        if shows:
            sup_env = gs.process_environ(host.fs, shows[0].get("MainPID")) or \
                gs.parse_show_environment(shows[0].get("Environment"))
        else:
            sup_env = gs._supervisord_environ_from_pidfile(host.fs, None)
        cases.append((name, services, root, {"root": root, "conf": services[0]["supervisord_conf"], "env": sup_env}))
    checked = 0
    for (name, services, root, _), read in zip(cases, supervisord_reads([c[3] for c in cases])):
        assert "error" not in read, (name, read)
        by_name = {}
        for p in read["programs"]:
            key = p["name"] if p["group"] == p["name"] else "%s:%s" % (p["group"], p["name"])
            by_name[key] = p
        for svc in services:
            where = "%s %s" % (name, svc["unit"])
            p = by_name.get(svc["process_name"])
            assert p, "%s: supervisord has no process %s: %s" % (where, svc["process_name"], sorted(by_name))
            words = shlex.split(_unroot(p["command"], root))
            if svc["launcher"] == ["gunicorn"]:
                assert words[1:] == svc["argv"][1:], where
            else:
                assert any("gunicorn" in w for w in words), where
            if p["directory"]:
                assert os.path.normpath(_unroot(p["directory"], root)) == \
                    os.path.normpath(svc["working_directory"]), where
            env = dict((k, _unroot(v, root)) for k, v in p["environment"].items())
            assert env == dict((k, gs._unquote(v)) for k, v in svc["environment_pairs"]), where
            assert p["autostart"] == svc["enabled"], where
            checked += 1
    assert checked >= 14, checked
