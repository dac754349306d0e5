"""Lay out a host from a corpus case of tests/corpus/services/ and run discovery on it.

A case file holds sections, each starting with a line `=== KIND ARGS`:

  === expect               JSON: {"services": [{field: value, ...}], "problems": ["substring", ...]}
  === show UNIT            what `systemctl show` prints for UNIT (Id, LoadState and the states default
                           to a loaded, active, enabled unit); a line `argv: WORDS` stands for systemd's
                           `ExecStart={ path=FIRST ; argv[]=WORDS ; ignore_errors=no ; ... }`
  === file PATH            a file on the host (PATH under the host's root); /proc/PID/environ is written
                           NUL-separated from whitespace-separated NAME=value items
  === link PATH -> TARGET  a symlink
  === venv DIR PY GUNICORN a virtualenv made by `python -m venv` with gunicorn installed by pip
  === pip PY GUNICORN      gunicorn installed by pip into /usr/local/lib/pythonPY/dist-packages
                           (Debian's pip) with /usr/local/bin/gunicorn
  === deb GUNICORN [NAME]  Debian's python3-gunicorn: /usr/bin/gunicorn (or NAME) and
                           /usr/lib/python3/dist-packages/gunicorn
  === python PY            /usr/bin/pythonPY and /usr/bin/python3 -> pythonPY
  === supervisorctl        what `supervisorctl status` prints
  === no-systemd           the host has no systemd (a container running supervisord)

Lines starting with '#' before the first section describe the case and where its form comes from.
"""
import json
import os
import re

import gunicorn_services as gs

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "corpus", "services")

EXEC_TAIL = " ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }"


def case_names():
    return sorted(f[:-len(".case")] for f in os.listdir(CORPUS) if f.endswith(".case"))


def read_case(name):
    with open(os.path.join(CORPUS, name + ".case")) as f:
        text = f.read()
    sections = []
    for chunk in re.split(r"(?m)^=== ", text)[1:]:
        head, _, body = chunk.partition("\n")
        sections.append((head.strip(), body))
    return sections


def _write(root, path, content, mode=0o644):
    full = os.path.join(root, path.lstrip("/"))
    d = os.path.dirname(full)
    if not os.path.isdir(d):
        os.makedirs(d)
    with open(full, "w") as f:
        f.write(content)
    os.chmod(full, mode)


def _link(root, path, target):
    full = os.path.join(root, path.lstrip("/"))
    d = os.path.dirname(full)
    if not os.path.isdir(d):
        os.makedirs(d)
    if os.path.lexists(full):
        os.remove(full)
    os.symlink(target, full)


CONSOLE_SCRIPT = """#!%s
# -*- coding: utf-8 -*-
import re
import sys
from gunicorn.app.wsgiapp import run
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(run())
"""

DEBIAN_SCRIPT = """#!/usr/bin/python3
# EASY-INSTALL-ENTRY-SCRIPT: 'gunicorn==%s','console_scripts','gunicorn'
__requires__ = 'gunicorn==%s'
import re
import sys
from pkg_resources import load_entry_point

if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])
    sys.exit(
        load_entry_point('gunicorn==%s', 'console_scripts', 'gunicorn')()
    )
"""

INIT = """# -*- coding: utf-8 -
#
# This file is part of gunicorn released under the MIT license.
# See the NOTICE for more information.

version_info = (%s)
__version__ = ".".join([str(v) for v in version_info])
SERVER_SOFTWARE = "gunicorn/%%s" %% __version__
"""


def _gunicorn_pkg(root, sitedir, version):
    _write(root, sitedir + "/gunicorn/__init__.py", INIT % ", ".join(version.split(".")))
    _write(root, sitedir + "/gunicorn-%s.dist-info/METADATA" % version,
           "Metadata-Version: 2.1\nName: gunicorn\nVersion: %s\n" % version)


def _python(root, py):
    _write(root, "/usr/bin/python%s" % py, "\x7fELF python", 0o755)
    _link(root, "/usr/bin/python%s" % py[0], "python%s" % py)


class CaseHost(object):
    """The commands' answers come from the case; files from its laid-out root."""

    def __init__(self, root, shows, supervisorctl=None, systemd=True):
        self.fs = gs.FS(root)
        self.shows = shows
        self.status = supervisorctl
        self.systemd = systemd
        self.commands = []
        self.envs = {}

    def has_systemd(self):
        return self.systemd

    def list_units(self):
        self.commands.append("list-units")
        return "".join("%s loaded active running x\n" % u for u in self.shows)

    def list_unit_files(self):
        self.commands.append("list-unit-files")
        out = ""
        for u in self.shows:
            out += "%s enabled enabled\n" % u
            if "@" in u:
                out += "%s@.service enabled enabled\n" % u.split("@")[0]
        return out

    def show(self, units):
        self.commands.append("show")
        return "\n\n".join(self.shows[u] for u in units if u in self.shows)

    def supervisorctl_status(self, conf):
        self.commands.append("supervisorctl")
        if self.status is None:
            raise AssertionError("supervisorctl status was not expected in this case")
        return self.status

    def supervisor_unit(self):
        return "supervisor.service"

    def observe(self, svc, env):
        self.envs[svc["unit"]] = env


def show_block(unit, body):
    props = {"Id": unit, "LoadState": "loaded", "ActiveState": "active", "SubState": "running",
             "UnitFileState": "enabled", "FragmentPath": "/etc/systemd/system/%s" % unit, "DropInPaths": "",
             "MainPID": "4242", "User": "", "WorkingDirectory": "", "Environment": "", "EnvironmentFiles": ""}
    lines = []
    for line in body.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("argv: "):
            words = line[len("argv: "):]
            line = "ExecStart={ path=%s ; argv[]=%s%s" % (words.split()[0], words, EXEC_TAIL)
        k = line.split("=", 1)[0]
        props.pop(k, None)
        lines.append(line)
    if props.get("ActiveState") == "inactive":
        props["MainPID"] = "0"
    for line in lines:
        if line.startswith("ActiveState=") and line != "ActiveState=active":
            props["MainPID"] = "0"
            props["SubState"] = "dead"
    return "\n".join(["%s=%s" % kv for kv in sorted(props.items())] + lines) + "\n"


def lay_out(name, root):
    """-> (CaseHost, expect)"""
    shows, status, expect, systemd = {}, None, None, True
    for head, body in read_case(name):
        kind, _, args = head.partition(" ")
        if kind == "expect":
            expect = json.loads(body)
        elif kind == "show":
            shows[args] = show_block(args, body)
        elif kind == "file":
            mode = 0o755 if body.startswith("#!") else 0o644
            if args.startswith("/proc/") and args.endswith("/environ"):
                body = "".join(item + "\0" for item in body.split())  # NUL-separated, as the kernel writes it
            _write(root, args, body, mode)
        elif kind == "link":
            path, _, target = args.partition(" -> ")
            _link(root, path, target)
        elif kind == "venv":
            d, py, ver = args.split()
            _python(root, py)
            _write(root, d + "/pyvenv.cfg", "home = /usr/bin\ninclude-system-site-packages = false\n"
                                           "version = %s.2\n" % py)
            _link(root, d + "/bin/python%s" % py, "/usr/bin/python%s" % py)
            _link(root, d + "/bin/python3" if py[0] == "3" else d + "/bin/python2", "python%s" % py)
            _link(root, d + "/bin/python", "python%s" % py)
            _write(root, d + "/bin/gunicorn", CONSOLE_SCRIPT % (d + "/bin/python%s" % py), 0o755)
            if ver != "none":
                _gunicorn_pkg(root, d + "/lib/python%s/site-packages" % py, ver)
        elif kind == "pip":
            py, ver = args.split()
            _python(root, py)
            _write(root, "/usr/local/bin/gunicorn", CONSOLE_SCRIPT % ("/usr/bin/python%s" % py), 0o755)
            _gunicorn_pkg(root, "/usr/local/lib/python%s/dist-packages" % py, ver)
        elif kind == "deb":
            parts = args.split()
            ver, binname = parts[0], (parts[1] if len(parts) > 1 else "gunicorn")
            _python(root, "3.9")
            _write(root, "/usr/bin/" + binname, DEBIAN_SCRIPT % (ver, ver, ver), 0o755)
            _write(root, "/usr/lib/python3/dist-packages/gunicorn/__init__.py", INIT % ", ".join(ver.split(".")))
            _write(root, "/usr/lib/python3/dist-packages/gunicorn-%s.egg-info/PKG-INFO" % ver,
                   "Metadata-Version: 1.1\nName: gunicorn\nVersion: %s\n" % ver)
        elif kind == "python":
            _python(root, args.strip())
        elif kind == "supervisorctl":
            status = body
        elif kind == "no-systemd":
            systemd = False
        else:
            raise ValueError("case %s: unknown section %r" % (name, kind))
    return CaseHost(root, shows, status, systemd), expect


def run_case(name, root, only=(), skip=()):
    host, expect = lay_out(name, root)
    services, problems = gs.discover(host, only, skip)
    return host, expect, services, problems


# ---------------------------------------------------------------------------
# the corpus: every case's expected discovery

import pytest  # noqa: E402


def _match(expected, actual, where):
    for key, value in expected.items():
        assert key in actual, "%s: no field %r in %r" % (where, key, sorted(actual))
        assert actual[key] == value, "%s: %s is %r, expected %r" % (where, key, actual[key], value)


def check_case(name, tmp_path):
    root = str(tmp_path / "host")
    os.makedirs(root)
    host, expect = lay_out(name, root)
    services, problems = gs.discover(host, expect.get("only", ()), expect.get("skip", ()))
    want = expect["services"]
    assert [s["unit"] for s in services] == [w["unit"] for w in want], (name, problems)
    for w, s in zip(want, services):
        _match(w, s, "%s %s" % (name, s["unit"]))
    for p in expect["problems"]:
        assert any(p in q for q in problems), "%s: no problem mentions %r in %r" % (name, p, problems)
    for q in problems:
        assert any(p in q for p in expect["problems"]), "%s: unexpected problem %r" % (name, q)
    # read-only: no case's wrapper script was ever executed
    assert not os.path.exists("/tmp/gunicorn-start-was-executed")
    return host, services, problems, root


@pytest.mark.parametrize("name", case_names())
def test_corpus_case(name, tmp_path):
    check_case(name, tmp_path)


def test_corpus_is_broad():
    names = case_names()
    assert len(names) >= 60
    classes = {}
    for n in names:
        classes.setdefault(n.split("-")[0], []).append(n)
    assert len(classes["sysd"]) >= 40 and len(classes["sup"]) >= 12
