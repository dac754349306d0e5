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
  - It prints nothing and changes no result. Enabled in the project's
    ansible.cfg (C(callbacks_enabled)); without it the playbooks work the
    same, at a higher cost in controller CPU per task.
author: dualstack-rollout contributors (!UNKNOWN)
"""

import importlib
import os

from ansible.plugins.callback import CallbackBase
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


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "dualstack.rollout.dsr_preload"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        preload()
