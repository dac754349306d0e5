"""gunicorn's own configuration machinery judges the discovered binds of every corpus case.

For each service discovery found in tests/corpus/services/, gunicorn (the version the case
installs: 19.9.0, or 27.0.1 for 20 and later; an unknown version is taken as 19.9.0, the
oldest supported) is started far enough to build its configuration - WSGIApplication with
the service's gunicorn arguments, its environment (PORT, GUNICORN_CMD_ARGS,
FORWARDED_ALLOW_IPS, ...) and its working directory - and its bind, reuse_port and
forwarded_allow_ips must be exactly what discovery reported.

The gunicorn copies are installed for the tests only, into .cache/gunicorn-<version>/
(`pip install --target` into a temporary directory, then a rename, so concurrent runs never
see half an install); the test is skipped only when pip cannot reach the package index.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from test_gunicorn_services_corpus import case_names, check_case

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache")
ORACLES = ("19.9.0", "27.0.1")


def _importable(paths):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    r = subprocess.run([sys.executable, "-c", "import gunicorn.app.wsgiapp"], env=env, capture_output=True,
                       text=True)
    return r.returncode == 0, r.stderr


def _pip_target(target, requirements):
    if not os.path.isdir(CACHE):
        os.makedirs(CACHE, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(target) + ".tmp-", dir=CACHE)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-compile", "--target", tmp] + list(requirements), capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        if re.search(r"(?i)connection|network|resolve|timed out|No matching distribution|proxy", r.stderr):
            pytest.skip("pip cannot reach the package index to install %s: %s"
                        % (" ".join(requirements), r.stderr.strip().splitlines()[-1:]))
        raise RuntimeError("pip install %s failed: %s" % (" ".join(requirements), r.stderr))
    try:
        os.rename(tmp, target)
    except OSError:  # another run installed it first
        shutil.rmtree(tmp, ignore_errors=True)


_PATHS = {}


def oracle_paths(version):
    if version not in _PATHS:
        _PATHS[version] = _oracle_paths(version)
    return _PATHS[version]


def _oracle_paths(version):
    target = os.path.join(CACHE, "gunicorn-%s" % version)
    if not os.path.isdir(target):
        reqs = ["gunicorn==%s" % version]
        if version.startswith("19."):
            reqs.append("setuptools<70")  # 19.x imports pkg_resources
        _pip_target(target, reqs)
    paths = [target]
    ok, err = _importable(paths)
    if not ok and "pkg_resources" in err:
        st = os.path.join(CACHE, "setuptools-lt70")
        if not os.path.isdir(st):
            _pip_target(st, ["setuptools<70"])
        paths.append(st)
        ok, err = _importable(paths)
    if not ok:
        raise RuntimeError("gunicorn %s in %s does not import: %s" % (version, target, err))
    return paths


PROBE = r'''
import io, json, os, sys
jobs = json.load(sys.stdin)
out = []
for job in jobs:
    # the Bind and ForwardedAllowIPS defaults are computed from os.environ when gunicorn.config is imported
    for m in ("gunicorn.config", "gunicorn.app.base", "gunicorn.app.wsgiapp"):
        sys.modules.pop(m, None)
    os.environ.clear()
    os.environ.update(job["env"])
    os.chdir(job["cwd"])
    import importlib
    base = importlib.import_module("gunicorn.app.base")
    root = job["root"]
    real_load = base.Application.load_config_from_module_name_or_filename

    def load(self, location, real_load=real_load, root=root):
        # the case's host lives under root: absolute config paths are read from there
        path = location[len("file:"):] if location.startswith("file:") else location
        if os.path.isabs(path) and not path.startswith(root):
            location = root + path
        return real_load(self, location)
    base.Application.load_config_from_module_name_or_filename = load
    from gunicorn.app.wsgiapp import WSGIApplication
    sys.argv = ["gunicorn"] + job["args"]
    err, real_err = io.StringIO(), sys.stderr
    sys.stderr = err
    try:
        cfg = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").cfg
        out.append({"ok": True, "bind": list(cfg.bind), "reuse_port": bool(cfg.reuse_port),
                    "forwarded_allow_ips": list(cfg.forwarded_allow_ips)})
    except SystemExit as e:
        out.append({"ok": False, "error": err.getvalue().strip() or "exit %s" % e.code})
    finally:
        sys.stderr = real_err
print(json.dumps(out))
'''


def gunicorn_configs(version, jobs):
    paths = oracle_paths(version)
    r = subprocess.run([sys.executable, "-c", PROBE], input=json.dumps(jobs), capture_output=True, text=True,
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.pathsep.join(paths)},
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def oracle_for(version):
    if version is None or version == "19.9.0":
        return "19.9.0"
    if version == "27.0.1" or int(version.split(".")[0]) >= 20:
        return "27.0.1"
    return None  # 19.6 etc: judged by the case's expectation only


def test_discovery_matches_gunicorns_own_config(tmp_path):
    jobs = {v: [] for v in ORACLES}
    for name in case_names():
        host, services, problems, root = check_case(name, tmp_path / name)
        for svc in services:
            oracle = oracle_for(svc["version"])
            if oracle is None or svc.get("app_module") is None:
                continue
            cwd = os.path.normpath(root + svc["working_directory"])
            if not os.path.isdir(cwd):
                os.makedirs(cwd)
            jobs[oracle].append({"case": name, "unit": svc["unit"], "svc": svc, "root": root, "cwd": cwd,
                                 "env": host.envs[svc["unit"]],
                                 "args": svc["argv"][svc["gunicorn_index"] + 1:]})
    checked = 0
    for version, vjobs in jobs.items():
        results = gunicorn_configs(version, [{k: j[k] for k in ("root", "cwd", "env", "args")} for j in vjobs])
        for job, res in zip(vjobs, results):
            where = "%s %s (gunicorn %s)" % (job["case"], job["unit"], version)
            assert res["ok"], "%s: gunicorn refused it: %s" % (where, res.get("error"))
            svc = job["svc"]
            assert res["bind"] == svc["binds"], where
            assert res["reuse_port"] == svc["reuse_port"], where
            if svc["forwarded_allow_ips"] is None:
                default = ["127.0.0.1"] if version == "19.9.0" else ["127.0.0.1", "::1"]
                assert res["forwarded_allow_ips"] == default, where
            else:
                assert res["forwarded_allow_ips"] == [x.strip() for x in svc["forwarded_allow_ips"].split(",")
                                                      if x.strip()], where
            checked += 1
    assert checked >= 60, checked


def test_refused_ambiguous_option_is_refused_by_gunicorn_too(tmp_path):
    """A command line discovery refuses as not gunicorn's is refused by gunicorn's parser as well."""
    for version in ORACLES:
        res = gunicorn_configs(version, [{"root": str(tmp_path), "cwd": str(tmp_path), "env": {},
                                          "args": ["--work", "2", "-b", "0.0.0.0:8001", "amb:app"]}])
        assert not res[0]["ok"] and "ambiguous" in res[0]["error"], res


def test_default_config_file_is_loaded_by_19_9_0_too(tmp_path):
    """The precedence table: ./gunicorn.conf.py in the working directory counts on 19.9.0, not only from 20.0."""
    (tmp_path / "gunicorn.conf.py").write_text("bind = '127.0.0.1:8123'\n")
    for version in ORACLES:
        res = gunicorn_configs(version, [{"root": str(tmp_path), "cwd": str(tmp_path), "env": {"PORT": "9"},
                                          "args": ["app:app"]}])
        assert res[0]["bind"] == ["127.0.0.1:8123"], (version, res)
