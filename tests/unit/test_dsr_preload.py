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


CONNECTIONS = r"""
import os, sys
from ansible.plugins import loader as L
L.init_plugin_loader([os.path.join(sys.argv[1], "collections")])
from ansible import constants as C
from ansible.parsing.dataloader import DataLoader
from ansible.inventory.manager import InventoryManager
from ansible.vars.manager import VariableManager
from ansible.playbook.play import Play
from ansible_collections.dualstack.rollout.plugins.callback.dsr_preload import CallbackModule
loader = DataLoader()
inv = InventoryManager(loader=loader, sources=[sys.argv[2]])
vm = VariableManager(loader=loader, inventory=inv)
play = Play.load(dict(hosts="all", gather_facts=False, tasks=[]), variable_manager=vm, loader=loader)
# The loader keeps a collection plugin's definitions under its module name.
names = ["ansible_collections.community.docker.plugins.connection.docker", "local", "ssh"]
print(" ".join(str(C.config.has_configuration_definition("connection", n)) for n in names))
cb = CallbackModule()
cb.v2_playbook_on_play_start(play)
print(" ".join(sorted(cb._connections)))
print(" ".join(str(C.config.has_configuration_definition("connection", n)) for n in names))
"""


def test_the_inventorys_connection_plugins_are_configured_before_any_worker(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("""all:
  hosts:
    plain: {}
    smart: {ansible_connection: smart}
    templated: {ansible_connection: "{{ some_var }}"}
  children:
    containers:
      hosts: {c1: {}, c2: {}}
      vars: {ansible_connection: community.docker.docker}
    controller:
      hosts: {here: {ansible_connection: local}}
""")
    r = subprocess.run([sys.executable, "-c", CONNECTIONS, ROOT, str(inv)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
    assert r.returncode == 0, r.stderr
    before, loaded, after = r.stdout.strip().split("\n")
    assert before == "False False False"
    # Group variables count, smart is ssh, a templated name is left to the workers.
    assert loaded == "community.docker.docker local ssh"
    assert after == "True True True"
