import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for sub in ("plugins/filter", "plugins/modules", "plugins/module_utils"):
    sys.path.insert(0, os.path.join(ROOT, sub))

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def data(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()
