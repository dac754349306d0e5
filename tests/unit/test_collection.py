"""The repository is also an Ansible collection (dualstack.rollout): built
with ansible-galaxy itself, installed into a scratch collections path, and
read back by ansible-core (ansible-doc for every module and every role's
argument specs, an ad-hoc run of filters by their fully qualified names,
one of which imports its sibling plugin files)."""
import glob
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)
GALAXY = yaml.safe_load(open(os.path.join(ROOT, "galaxy.yml")))
FQCN = "%s.%s" % (GALAXY["namespace"], GALAXY["name"])


def run(args, env=None, cwd=ROOT):
    r = subprocess.run([os.path.join(BIN, args[0])] + args[1:], capture_output=True, text=True, cwd=cwd,
                       env=env, timeout=600)
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
    return r.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("collection")
    run(["ansible-galaxy", "collection", "build", "--output-path", str(out), "--force"])
    tarball = os.path.join(str(out), "%s-%s-%s.tar.gz" % (GALAXY["namespace"], GALAXY["name"], GALAXY["version"]))
    assert os.path.exists(tarball)
    cpath = out / "installed"
    cfg = out / "empty.cfg"
    cfg.write_text("")
    # Away from the checkout's ansible.cfg, whose collections path holds the
    # checkout itself as this collection (ansible-galaxy would find it there
    # "already installed", and ansible-doc would read the checkout).
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(cpath), ANSIBLE_CONFIG=str(cfg), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOME=str(out / "home"))
    run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", str(cpath), tarball], env=env, cwd=str(out))
    return tarball, env, str(out)


def test_the_tarball_holds_the_collection_and_not_the_checkouts_extras(built):
    tarball = built[0]
    with tarfile.open(tarball) as t:
        names = t.getnames()
        manifest = json.load(t.extractfile("MANIFEST.json"))["collection_info"]
    assert (manifest["namespace"], manifest["name"], manifest["version"]) == \
        (GALAXY["namespace"], GALAXY["name"], GALAXY["version"])
    assert "meta/runtime.yml" in names
    for path in glob.glob(os.path.join(ROOT, "plugins", "*", "*.py")) + glob.glob(os.path.join(ROOT, "roles", "*",
                                                                                                "*", "*.yml")):
        if "/plugins/strategy/" in path:
            continue  # the checkout's opt-in to Mitogen, left out (galaxy.yml)
        assert os.path.relpath(path, ROOT) in names, path
    for extra in ("molecule", "images", "bench", ".venv", "tests", "sandbox", "journal", "reports",
                  "plugins/strategy"):
        assert not any(n == extra or n.startswith(extra + "/") for n in names), extra


def test_ansible_core_reads_every_module_and_every_roles_argument_specs(built):
    env = built[1]
    modules = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
    out = run(["ansible-doc", "-t", "module"] + ["%s.%s" % (FQCN, m) for m in modules], env=env, cwd=built[2])
    for m in modules:
        assert re.search(r"MODULE \*?%s\.%s\b" % (re.escape(FQCN), m), out), m
    roles = sorted(os.path.basename(os.path.dirname(os.path.dirname(p)))
                   for p in glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml")))
    assert "lb_haproxy" in roles
    out = run(["ansible-doc", "-t", "role"] + ["%s.%s" % (FQCN, r) for r in roles], env=env, cwd=built[2])
    for r in roles:
        assert re.search(r"ROLE: \*?%s\.%s\b" % (re.escape(FQCN), r), out), r


def test_filters_run_by_their_fully_qualified_names(built):
    env = built[1]
    expr = ("{{ {'waves': ['a', 'b', 'c'] | %s.dsr_waves([1, '100%%']), "
            "'names': [{'binds': ['web.example:8000', '0.0.0.0:80']}] | %s.dsr_bind_hostnames} | to_json }}"
            % (FQCN, FQCN))
    out = run(["ansible", "localhost", "-c", "local", "-i", "localhost,", "-m", "ansible.builtin.debug",
               "-a", "msg=%s" % expr], env=env, cwd=built[2])
    assert '"waves": [["a"], ["b", "c"]]' in out.replace('\\"', '"'), out
    assert '"names": ["web.example"]' in out.replace('\\"', '"'), out
