"""The playbooks call the collection's own plugins by their fully qualified
names (dualstack.rollout.NAME), in their YAML and in the templates they
render, and every filter the collection registers is
called somewhere: none is dead, none is called by its short name (which
resolves only through ansible.cfg settings this checkout no longer has)."""
import glob
import importlib
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the playbooks, roles, scenarios and the templates they render
YAML = [p for ext in ("yml", "yaml", "j2") for p in glob.glob(os.path.join(ROOT, "**", "*." + ext), recursive=True)
        if not os.path.relpath(p, ROOT).startswith((".venv", ".ansible", ".cache", "collections"))]
TEXT = {p: open(p).read() for p in YAML}
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))


def registered_filters():
    names = {}
    for path in glob.glob(os.path.join(ROOT, "plugins", "filter", "*.py")):
        mod = importlib.import_module(os.path.basename(path)[:-3])
        for name in mod.FilterModule().filters():
            names[name] = os.path.relpath(path, ROOT)
    return names


def test_every_registered_filter_is_called_by_its_fqcn():
    filters = registered_filters()
    assert len(filters) > 40
    unused = sorted(n for n in filters if not any("dualstack.rollout.%s" % n in t for t in TEXT.values()))
    assert unused == [], unused


def test_no_plugin_of_the_collection_is_called_by_its_short_name():
    names = sorted(registered_filters(), key=len, reverse=True)
    as_filter = re.compile(r"(\|\s*|map\(['\"])(%s)\b" % "|".join(names))
    as_module = re.compile(r"^\s*(?:- )?(%s):" % "|".join(MODULES))
    found = []
    for path, text in TEXT.items():
        for i, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            if as_filter.search(line) or as_module.search(line):
                found.append("%s:%d: %s" % (os.path.relpath(path, ROOT), i, line.strip()))
    assert found == [], found
