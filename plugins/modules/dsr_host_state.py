#!/usr/bin/python
# -*- coding: utf-8 -*-
# Documentation only: the work is done by the action plugin of the same name
# (plugins/action/dsr_host_state.py), through the connection's shell, like
# ansible.builtin.raw. No Python runs on the host for it.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: dsr_host_state
short_description: Read what the host listens on, who owns each listener, the run states and the kernel's IPv6 switches
description:
  - Reads, in one round trip through the connection's C(/bin/sh) and with no
    Python on the host, C(ss -V), C(ss -ltnpe), C(ss -lxn), C(ps), C(systemctl show)
    of the services and C(nginx.service), C(supervisorctl status) when a
    service is a supervisord program, and the kernel's C(bindv6only) and
    C(disable_ipv6) values.
  - Returns them parsed, at the top level of the result, so C(register)
    gives the state, with C(listeners) (each TCP listener with its owner, a
    service of I(services), C(nginx.service), or none), C(summary)
    (C(owner address:port) lines), C(unix), C(run_states), C(kernel) and
    C(ss_version).
  - Fails, naming host and command, when one of the reads the state needs
    exits non-zero or runs longer than I(timeout). It never reports a change
    and runs in check mode.
options:
  services:
    description:
      - The gunicorn services whose listeners and run states to read, each
        with C(unit) and C(manager) (C(systemd) or C(supervisor); C(name)
        and C(pid) are kept). C(nginx.service) is always read.
    type: list
    elements: dict
    default: []
  timeout:
    description: Seconds each read may run (coreutils C(timeout)); a read that runs longer fails the task.
    type: int
    default: 60
author: dualstack-rollout contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Read the listeners, the processes, the run states and the kernel's IPv6 switches
  dualstack.rollout.dsr_host_state:
    services: [{unit: app.service, manager: systemd}]
  register: dsr_state
"""

RETURN = r"""
listeners:
  description: Every TCP listener, with its owner.
  returned: success
  type: list
  elements: dict
summary:
  description: The listeners as C(owner address:port) lines.
  returned: success
  type: list
  elements: str
unix:
  description: The output of C(ss -lxn).
  returned: success
  type: str
run_states:
  description: The run state of each service and of nginx (owner, manager, active, enabled, state).
  returned: success
  type: list
  elements: dict
kernel:
  description: The values of C(net.ipv6.bindv6only) and every C(disable_ipv6) key.
  returned: success
  type: dict
ss_version:
  description: The output of C(ss -V).
  returned: success
  type: str
"""
