"""Validate every user-facing variable of the fleet before any host is touched (filter plugin).

Runs on the controller, from inventory data only, so a bad value anywhere
stops the run before a single connection: each message names the host, the
variable and, where one is involved, the service.

Role variables are checked against the roles' own meta/argument_specs.yml
(the same specs Ansible enforces when a role starts, here for every host at
once); the rollout's own variables and the checks that span variables (a
wave list, the groups, the balancer's addresses) are checked here.
"""
from __future__ import annotations

import glob
import ipaddress
import os

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_waves import waves as _waves

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass

ROLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles")


def role_specs(roles_dir=ROLES_DIR):
    """{variable: option spec} from every role's meta/argument_specs.yml (all entry points)."""
    import yaml
    specs = {}
    for path in sorted(glob.glob(os.path.join(roles_dir, "*", "meta", "argument_specs.yml"))):
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        for entry in (data.get("argument_specs") or {}).values():
            for name, opt in (entry.get("options") or {}).items():
                specs.setdefault(name, opt)
    return specs


def _get(hv, name):
    """A host variable, templated; (present, value)."""
    try:
        if name not in hv:
            return False, None
        return True, hv[name]
    except Exception as e:  # an undefined variable inside a template
        return True, e


def _check_spec(host, name, value, spec):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    opt = dict((k, v) for k, v in spec.items() if k not in ("description", "default", "version_added"))
    res = ArgumentSpecValidator({name: opt}).validate({name: value})
    return ["host %s: %s" % (host, str(e)) for e in res.errors]


def _port(value):
    try:
        return not isinstance(value, bool) and 1 <= int(value) <= 65535 and str(int(value)) == str(value).strip()
    except (TypeError, ValueError):
        return False


# The steps of a wave an operator's balancer can take over, each with a
# task file of its own (dsr_lb_external_drain, _enable, _verify).
EXTERNAL_STEPS = ("drain", "enable", "verify")
# The balancer programs the tool edits (group lb): roles lb_nginx, lb_haproxy.
LB_BACKENDS = ("nginx", "haproxy")


def input_problems(hostvars, groups, app_group="app_hosts", lb_group="lb", waves=None, specs=None):
    """Every bad input of the fleet, one message each (empty when all is well)."""
    specs = role_specs() if specs is None else specs
    problems = []
    apps = list(groups.get(app_group) or [])
    lbs = list(groups.get(lb_group) or [])
    if not apps:
        problems.append("inventory group %s (variable dsr_app_group) is empty or missing: nothing to migrate"
                        % app_group)
    if len(lbs) > 1:
        problems.append("inventory group %s (variable dsr_lb_group) has %d hosts (%s); one balancer is supported"
                        % (lb_group, len(lbs), ", ".join(lbs)))
    if apps:
        try:
            batches = _waves(apps, waves)
            if sorted(h for b in batches for h in b) != sorted(apps):
                problems.append("dsr_waves %r does not cover the hosts of %s" % (waves, app_group))
        except AnsibleFilterError as e:
            problems.append("dsr_waves: %s" % str(e).replace("dsr_waves: ", ""))
    inventory = set(h for members in groups.values() for h in members)
    # One balancer program for the fleet: every host must read the same one.
    backends = {}
    for host in apps + [h for h in lbs if h not in apps]:
        present, value = _get(hostvars[host], "dsr_lb_backend")
        backends.setdefault(value if present else "nginx", []).append(host)
    for value, hosts in sorted(backends.items(), key=lambda kv: str(kv[0])):
        if value not in LB_BACKENDS:
            problems.append("host %s: dsr_lb_backend %r is not one of %s"
                            % (", ".join(hosts), value, ", ".join(LB_BACKENDS)))
    if len(backends) > 1:
        problems.append("dsr_lb_backend differs between hosts (%s): set it once, for group all"
                        % "; ".join("%s on %s" % (v, ", ".join(h)) for v, h in sorted(backends.items(), key=lambda kv: str(kv[0]))))
    if "haproxy" in backends and not lbs:
        problems.append("dsr_lb_backend is haproxy, but group %s (variable dsr_lb_group) names no balancer" % lb_group)

    for host in apps + [h for h in lbs if h not in apps]:
        hv = hostvars[host]
        for name, spec in sorted(specs.items()):
            present, value = _get(hv, name)
            if not present:
                continue
            if isinstance(value, Exception):
                problems.append("host %s: %s cannot be evaluated: %s" % (host, name, value))
                continue
            problems.extend(_check_spec(host, name, value, spec))
        present, mfp = _get(hv, "dsr_max_fail_percentage")
        if present and not (isinstance(mfp, int) and not isinstance(mfp, bool) and 0 <= mfp <= 100):
            problems.append("host %s: dsr_max_fail_percentage %r is not a percentage from 0 to 100" % (host, mfp))
        for name, version in (("dsr_lb_address", 4), ("dsr_lb_address6", 6)):
            present, value = _get(hv, name)
            if not present or value in (None, ""):
                continue
            try:
                ok = ipaddress.ip_address(str(value)).version == version
            except ValueError:
                ok = False
            if not ok:
                problems.append("host %s: %s %r is not an IPv%d address" % (host, name, value, version))
        present, accept = _get(hv, "dsr_exposure_accept")
        if present and accept is not True:
            if not isinstance(accept, (list, tuple)):
                problems.append("host %s: dsr_exposure_accept must be a list of ports or true, not %r"
                                % (host, accept))
            else:
                for p in accept:
                    if not _port(p):
                        problems.append("host %s: dsr_exposure_accept: %r is not a TCP port (1-65535)" % (host, p))
        for name in ("dsr_accept_no_global_ipv6", "dsr_test_sabotage"):
            present, value = _get(hv, name)
            if present and not isinstance(value, bool):
                problems.append("host %s: %s must be true or false, not %r" % (host, name, value))
        # Meant for -e, where values arrive as strings.
        present, value = _get(hv, "dsr_break_lock")
        if present and not (isinstance(value, bool) or str(value).lower() in ("true", "false", "yes", "no")):
            problems.append("host %s: dsr_break_lock must be true or false, not %r" % (host, value))
        for name in ("dsr_lock_ttl", "dsr_change_timeout"):
            present, secs = _get(hv, name)
            if present and not (not isinstance(secs, bool) and str(secs).isdigit() and int(secs) > 0):
                problems.append("host %s: %s %r is not a number of seconds above 0" % (host, name, secs))
        for step in EXTERNAL_STEPS:
            name = "dsr_lb_external_" + step
            present, path = _get(hv, name)
            if not present or path in (None, ""):
                continue
            if not (isinstance(path, str) and os.path.isabs(path) and os.path.isfile(path)):
                problems.append("host %s: %s %r is not the absolute path of a task file on the controller "
                                "(for example \"{{ inventory_dir }}/balancer/%s.yml\")" % (host, name, path, step))
            elif lbs:
                problems.append("host %s: %s is set and group %s (variable dsr_lb_group) names a balancer (%s): "
                                "the tool drives one balancer, nginx in group %s or the operator's tasks, not both"
                                % (host, name, lb_group, ", ".join(lbs), lb_group))
        present, peer = _get(hv, "lb_nginx__verify_from")
        if present and peer and peer not in inventory:
            problems.append("host %s: lb_nginx__verify_from %r is not a host of this inventory" % (host, peer))
        present, peer = _get(hv, "listener_verify__peer")
        if present and peer and peer not in inventory:
            problems.append("host %s: listener_verify__peer %r is not a host of this inventory" % (host, peer))
        present, services = _get(hv, "gunicorn_dualstack__services")
        if present and isinstance(services, (list, tuple)):
            for s in services:
                if not isinstance(s, str) or not s.strip() or "/" in s or " " in s.strip():
                    problems.append("host %s: service %r in gunicorn_dualstack__services is not a systemd unit name"
                                    % (host, s))
    return problems


class FilterModule(object):
    def filters(self):
        return {"dsr_input_problems": input_problems}
