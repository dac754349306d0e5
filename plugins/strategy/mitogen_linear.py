# -*- coding: utf-8 -*-
"""Mitogen's linear strategy, found through this project's ansible.cfg
wherever the virtualenv lives (no path to site-packages to configure).

Opt in per run:  ANSIBLE_STRATEGY=mitogen_linear ansible-playbook rollout.yml
(or `make demo MITOGEN=1`). Mitogen keeps one Python interpreter per host
for the whole run instead of starting one per task. It takes over the
`ssh`, `docker`, `local` and a few other connection names; hosts on other
connection plugins (community.docker.docker under that name, for one) run
as with the stock linear strategy. Pinned in requirements.txt and
requirements-legacy.txt; measured in bench/fleet_scale.py.
"""
from __future__ import annotations

try:
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401
except ImportError as e:  # pragma: no cover - only when chosen without mitogen installed
    from ansible.errors import AnsibleError

    raise AnsibleError("ANSIBLE_STRATEGY=mitogen_linear needs the mitogen package "
                       "(pip install -r requirements.txt): %s" % e)
