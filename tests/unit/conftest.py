import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for sub in ("plugins/filter", "plugins/modules"):
    sys.path.insert(0, os.path.join(ROOT, sub))
# The plugins share code as the collection they are (plugins/plugin_utils,
# imported as ansible_collections.dualstack.rollout...): collections/ holds
# the link that makes this checkout that collection, for Ansible and here.
sys.path.insert(0, os.path.join(ROOT, "collections"))

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def data(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


def pyenv_python(version, exe):
    """The path of `exe` (python2.7, python3.6, ...) of pyenv's `version`
    build on this machine; the calling test skips when there is none."""
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("pyenv") else ""
    path = os.path.join(root, "versions", version, "bin", exe) if root else ""
    if not path or not os.path.exists(path):
        pytest.skip("%s %s is not installed here (pyenv)" % (exe, version))
    return path
