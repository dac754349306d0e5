"""One value per default: where a playbook or task file writes a variable's
default inline (`VAR | default(VALUE)`, needed where a role's defaults are
not in scope: play keywords, other roles' tasks, hostvars of another host),
the value must be the one the variable's home gives it. A role variable's
home is its role's defaults/main.yml; a fleet-wide `dsr_` variable without a
role has one value across every file. A copy that drifts fails here, naming
the file, the line and both values."""
import glob
import os
import re

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOURCES = ["rollout.yml", "rollback.yml", "audit.yml", "playbooks/*.yml", "playbooks/tasks/*.yml",
           "roles/*/tasks/*.yml", "roles/*/defaults/main.yml"]
# VAR | default(LITERAL): a quoted string, a number, a boolean or a flat list.
INLINE = re.compile(r"\b([a-z][a-z0-9_]*)\s*\|\s*default\(\s*('[^']*'|\"[^\"]*\"|-?\d+|true|false|True|False|"
                    r"\[[^\[\]()]*\])\s*[,)]")


def role_defaults():
    out = {}
    for path in glob.glob(os.path.join(ROOT, "roles", "*", "defaults", "main.yml")):
        for k, v in (yaml.safe_load(open(path)) or {}).items():
            if not (isinstance(v, str) and "{{" in v):
                out[k] = (v, os.path.relpath(path, ROOT))
    return out


def inline_defaults():
    out = []
    for pattern in SOURCES:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            for number, line in enumerate(open(path), 1):
                if line.lstrip().startswith("#"):
                    continue
                for m in INLINE.finditer(line):
                    out.append((m.group(1), yaml.safe_load(m.group(2)), os.path.relpath(path, ROOT), number))
    return out


def _same(a, b):
    return a == b or str(a) == str(b)


def test_the_scan_finds_the_inline_defaults():
    found = set(v for v, _, _, _ in inline_defaults())
    # the ones every entry point needs: if these are not found, the pattern is wrong
    assert {"dsr_app_group", "dsr_lb_group", "dsr_waves", "dsr_change_timeout"} <= found, sorted(found)


def test_role_variables_default_to_their_roles_value_everywhere():
    home = role_defaults()
    drift = ["%s:%d: %s | default(%r), but %s says %r" % (path, n, var, value, home[var][1], home[var][0])
             for var, value, path, n in inline_defaults()
             if var in home and not _same(value, home[var][0])]
    assert drift == []


def test_fleet_wide_variables_have_one_default():
    home = role_defaults()
    seen = {}
    for var, value, path, n in inline_defaults():
        if var.startswith("dsr_") and var not in home:
            seen.setdefault(var, []).append((value, "%s:%d" % (path, n)))
    drift = ["%s: %s" % (var, "; ".join("%r at %s" % x for x in uses))
             for var, uses in sorted(seen.items()) if len(set(repr(v) for v, _ in uses)) > 1]
    assert drift == []


@pytest.mark.parametrize("line, expected", [
    ("{{ dsr_waves | default([1, '25%', '100%']) }}", ("dsr_waves", [1, "25%", "100%"])),
    ("timeout: \"{{ dsr_change_timeout | default(300) | int }}\"", ("dsr_change_timeout", 300)),
    ("hosts: \"{{ dsr_app_group | default('app_hosts') }}\"", ("dsr_app_group", "app_hosts")),
    ("{{ x | default(y) }}", None),
])
def test_the_pattern(line, expected):
    m = INLINE.search(line)
    assert ((m.group(1), yaml.safe_load(m.group(2))) if m else None) == expected
