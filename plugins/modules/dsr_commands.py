#!/usr/bin/python
# -*- coding: utf-8 -*-
# Documentation only: the work is done by the action plugin of the same name
# (plugins/action/dsr_commands.py), through the connection's shell, like
# ansible.builtin.raw. No Python runs on the host for it.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: dsr_commands
short_description: Run several read-only commands in one round trip
description:
  - Runs each command (an argument list, no shell) in order and returns their
    results in C(results), shaped like a looped M(ansible.builtin.command)
    (C(cmd), C(rc), C(stdout), C(stderr)), so C(register.results[N].stdout)
    reads the same as before.
  - One task instead of a loop. A looped command costs one connection round
    trip per item, this costs one per host. Meant for reads (C(ss), C(ip),
    C(sysctl), C(iptables-save)); it never reports a change and runs in
    check mode.
  - An action plugin, so the commands run through the connection's own
    C(/bin/sh) (with become when the task has it), as one script whose output
    comes back base64-framed. No Python starts on the host, so a read costs
    the host a shell instead of a Python interpreter and Ansible's
    module_utils. The host needs C(mktemp) and C(base64) (coreutils).
  - A command that exits non-zero, or cannot be found, fails the task unless
    I(allow_failure) is set; the message names the command. The entries
    carry no C(failed) key, since Ansible reads one in C(results) as the task's own.
options:
  commands:
    description: Commands to run, each a list of arguments.
    type: list
    elements: list
    required: true
  allow_failure:
    description: Report non-zero exits in C(results) instead of failing (a time-out still fails).
    type: bool
    default: false
  names:
    description: One name per command; the results are then also returned by name in C(by_name).
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds each command may run (coreutils C(timeout), TERM then KILL 5 s later);
        a command that runs longer fails the task, naming it. 0 for none.
    type: int
    default: 60
author: dualstack-rollout contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Read the ss version and the TCP listeners
  dsr_commands:
    commands:
      - [ss, -V]
      - [ss, -ltnpe]
  register: ss_out
"""

RETURN = r"""
results:
  description: One entry per command, in order.
  returned: always
  type: list
  elements: dict
by_name:
  description: The same entries by the name given in I(names).
  returned: when names is given
  type: dict
"""
