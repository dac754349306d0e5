#!/usr/bin/python
# -*- coding: utf-8 -*-
# Documentation only: the work is done by the action plugin of the same name
# (plugins/action/dsr_journal.py), on the controller.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: dsr_journal
short_description: Write a host's journal entry on the controller and publish its result in the run's stats
description:
  - Writes I(entry) as JSON to I(path) on the controller, mode 0600, through
    a temporary file in the same directory, so no reader sees half an entry.
    The directory must exist.
  - Publishes I(stats), when given, as M(ansible.builtin.set_stats) does
    with C(aggregate=true) and C(per_host=false).
  - Runs on the controller whatever host the task runs for; starts no Python
    on any host. Never reports a change. In check mode it writes nothing.
options:
  path:
    description: The journal entry's file on the controller.
    type: path
    required: true
  entry:
    description: The entry.
    type: dict
    required: true
  stats:
    description: Data for the run's stats, merged into what earlier hosts published.
    type: dict
    default: {}
author: dualstack-rollout contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Record the host
  dualstack.rollout.dsr_journal:
    path: "/var/log/dualstack-rollout/run-1/{{ inventory_hostname }}.json"
    entry: {host: "{{ inventory_hostname }}", result: migrated}
    stats: {dsr_results: {"{{ inventory_hostname }}": {result: migrated}}}
"""

RETURN = r"""
path:
  description: The file written.
  returned: when not in check mode
  type: str
"""
