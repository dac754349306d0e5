"""The execution environments: `ansible-builder create` turns each definition
into a build context, offline, with the pinned ansible-core and the project's
collection requirements (what AWX / AAP would build and run)."""
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("definition,core", [("execution-environment.yml", "2.19.14"),
                                             ("execution-environment-legacy.yml", "2.16.19")])
def test_builder_creates_the_context(tmp_path, definition, core):
    builder = os.path.join(os.path.dirname(sys.executable), "ansible-builder")
    r = subprocess.run([builder, "create", "-f", os.path.join(ROOT, definition), "-c", str(tmp_path / "ctx"),
                        "--output-filename", "Containerfile"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    containerfile = (tmp_path / "ctx" / "Containerfile").read_text()
    assert "ansible-core==%s" % core in containerfile
    assert "ansible-galaxy collection install" in containerfile
    # The opt-in strategy's package, pinned as in requirements.txt.
    pins = open(os.path.join(ROOT, "requirements.txt")).read()
    python_reqs = (tmp_path / "ctx" / "_build" / "requirements.txt").read_text()
    assert "mitogen==0.3.54" in pins and "mitogen==0.3.54" in python_reqs
    copied = yaml.safe_load((tmp_path / "ctx" / "_build" / "requirements.yml").read_text())
    ours = yaml.safe_load(open(os.path.join(ROOT, "requirements.yml")).read())
    assert copied == ours
    # An SSH client for real fleets (the scenarios reach hosts through docker exec).
    assert "openssh-clients" in (tmp_path / "ctx" / "_build" / "bindep.txt").read_text()


def test_awx_reads_the_same_collection_requirements():
    """AWX installs collections from collections/requirements.yml of the project."""
    path = os.path.join(ROOT, "collections", "requirements.yml")
    assert os.path.realpath(path) == os.path.join(ROOT, "requirements.yml")
