# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
name: dsr_preload
type: aggregate
short_description: Load the collection's filter and action plugins once, before any worker forks
description:
  - Ansible runs every task of every host in a worker process forked from the
    controller's main process, and a worker loads each plugin it uses from
    its source unless the main process had loaded it before the fork. The
    main process seldom templates this collection's filters, so every task
    that calls one loaded the filter plugins and the plugin_utils they import
    again, on every host (and compiled them too, where Python writes no
    bytecode). This callback imports them in the main process at start-up,
    under the names Ansible's plugin loader looks for, so every worker
    inherits them.
  - At the start of each play it also loads the connection plugins the
    inventory's hosts use (C(ansible_connection), else the default
    transport), so each worker does not parse the plugin's documentation
    for its configuration again. It is best effort; what it cannot work out is
    left to the workers, as without it.
  - It prints nothing and changes no result. Enabled in the project's
    ansible.cfg (C(callbacks_enabled)); without it the playbooks work the
    same, at a higher cost in controller CPU per task. A C(callbacks_enabled)
    or C(ANSIBLE_CALLBACKS_ENABLED) of the operator's own replaces that list,
    so it should name C(dualstack.rollout.dsr_preload) too.
author: dualstack-rollout contributors (!UNKNOWN)
"""

import importlib
import os

from ansible import constants as C
from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import connection_loader
from ansible.utils.display import Display

display = Display()

PACKAGE = "ansible_collections.dualstack.rollout.plugins"
KINDS = ("filter", "action")


def preload(kinds=KINDS):
    """Import each plugin file of `kinds` as PACKAGE.KIND.NAME, the module
    name the plugin loader checks in sys.modules before it loads a file.
    Returns the names loaded; a plugin that fails to load is left for the
    loader, which reports it where it is used."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    loaded = []
    for kind in kinds:
        for f in sorted(os.listdir(os.path.join(here, kind))):
            if not f.endswith(".py") or f.startswith("_"):
                continue
            name = "%s.%s.%s" % (PACKAGE, kind, f[:-3])
            try:
                importlib.import_module(name)
                loaded.append(name)
            except Exception as e:  # the loader will say it where the plugin is used
                display.vvv("dsr_preload: %s not preloaded: %s" % (name, e))
    return loaded


def connections_of(hosts_vars, default=None):
    """The connection plugin names that hosts with these variables use:
    `ansible_connection` (`smart` is ssh), else the default transport.
    Names still holding a template are left to the workers."""
    names = set()
    for v in hosts_vars:
        name = v.get("ansible_connection") or default or C.DEFAULT_TRANSPORT
        name = "ssh" if name == "smart" else name
        if isinstance(name, str) and "{" not in name:
            names.add(str(name))
    return sorted(names)


def preload_connections(names):
    """Load each connection plugin in this process: the loader then has its
    configuration definitions, which a forked worker inherits."""
    loaded = []
    for name in names:
        try:
            if connection_loader.get(name, class_only=True) is not None:
                loaded.append(name)
        except Exception as e:  # the worker will say it when it connects
            display.vvv("dsr_preload: connection %s not preloaded: %s" % (name, e))
    return loaded


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "dualstack.rollout.dsr_preload"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        preload()
        self._connections = set()

    def v2_playbook_on_play_start(self, play):
        # Once: the inventory's hosts are the same for every play.
        if self._connections:
            return
        # ansible-core hands callbacks no inventory: the play's variable
        # manager holds it. Anything unexpected here only costs the preload.
        try:
            vm = play._variable_manager
            hosts = vm._inventory.get_hosts("all")
            names = connections_of(vm.get_vars(host=h, include_hostvars=False) for h in hosts)
        except Exception as e:
            display.vvv("dsr_preload: the play's connections were not preloaded: %s" % e)
            return
        self._connections.update(preload_connections([n for n in names if n not in self._connections]))
