"""dsr_preload (plugins/callback/dsr_preload.py): the collection's filter
and action plugins are imported under the names ansible-core's own plugin
loader looks for, so a worker forked after it never loads them again. The
loader is the judge: it must find every preloaded plugin in sys.modules."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import os, sys
from ansible.plugins import loader as L
L.init_plugin_loader([os.path.join(sys.argv[1], "collections")])
from ansible_collections.dualstack.rollout.plugins.callback.dsr_preload import preload
names = preload()
calls = []
orig = L.PluginLoader._load_module_source
def observed(self, *, python_module_name, path):
    calls.append((python_module_name, python_module_name in sys.modules))
    return orig(self, python_module_name=python_module_name, path=path)
L.PluginLoader._load_module_source = observed
f = L.filter_loader.get("dualstack.rollout.dsr_wave_of")
a = L.action_loader.get("dualstack.rollout.dsr_host_state", class_only=True)
j = L.action_loader.get("dualstack.rollout.dsr_journal", class_only=True)
print(len(names))
for name, found in calls:
    print(name, found)
"""


def test_the_plugin_loader_finds_every_preloaded_plugin_already_loaded():
    r = subprocess.run([sys.executable, "-c", SCRIPT, ROOT], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    loaded = int(lines[0])
    expected = sum(1 for kind in ("filter", "action")
                   for f in os.listdir(os.path.join(ROOT, "plugins", kind)) if f.endswith(".py"))
    assert loaded == expected
    ours = [l.split() for l in lines[1:] if l.startswith("ansible_collections.dualstack.rollout.")]
    # The loader asked for the filter file and both actions: each was there already.
    assert {n for n, _ in ours} >= {"ansible_collections.dualstack.rollout.plugins.action.dsr_host_state",
                                    "ansible_collections.dualstack.rollout.plugins.action.dsr_journal"}
    assert any(".plugins.filter." in n for n, _ in ours)
    assert all(found == "True" for _, found in ours), ours
