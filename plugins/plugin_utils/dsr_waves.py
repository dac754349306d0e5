"""Wave arithmetic for staged rollouts (filter plugin).

Ansible's `serial` list (e.g. [1, "25%", "100%"]) cuts the play's hosts into
consecutive batches: each item is a host count or a percentage of all hosts
(rounded down, at least 1), and the last item repeats until every host is in
a batch. These filters compute the same batches before the play runs, so
preflight can show the plan, check that it covers the fleet, and each host
can record its wave in the journal.
"""
from __future__ import annotations

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass


def _size(item, total):
    """ansible-core's own arithmetic for one `serial` item (pct_to_int), so
    a value it would reject at run time is rejected here, before anything
    changes."""
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise AnsibleFilterError("dsr_waves: %r is not a host count or a percentage" % (item,))
    from ansible.utils.helpers import pct_to_int
    try:
        n = pct_to_int(item, total)
    except (ValueError, TypeError):
        raise AnsibleFilterError("dsr_waves: %r is not a host count or a percentage ansible-core can read "
                                 "(an integer, or an integer followed by %%)" % (item,))
    # ansible-core would take these as "every host left": stricter here, since
    # a wave of 150% or -1 hosts is a typo more often than a wish.
    if isinstance(item, str) and item.strip().endswith("%") and not 0 < int(item.strip()[:-1]) <= 100:
        raise AnsibleFilterError("dsr_waves: %r must be between 0%% and 100%%" % (item,))
    if n < 0:
        raise AnsibleFilterError("dsr_waves: %r is negative" % (item,))
    return n


def waves(hosts, serial):
    """[[host, ...], ...]: the batches Ansible will run, in order, cut as
    ansible-core's PlayExecutor._get_serialized_batches cuts them (a size of
    0 or less takes every host left)."""
    hosts = list(hosts)
    if not hosts:
        raise AnsibleFilterError("dsr_waves: the group has no hosts (check the inventory group app_hosts)")
    if serial in (None, "", []):
        return [hosts]
    if not isinstance(serial, (list, tuple)):
        serial = [serial]
    out, k, total = [], 0, len(hosts)
    while hosts:
        size = _size(serial[min(k, len(serial) - 1)], total)
        if size <= 0:
            out.append(hosts)
            break
        out.append(hosts[:size])
        hosts = hosts[size:]
        k += 1
    return out


def wave_of(host, hosts, serial):
    """1-based wave number of `host`."""
    for n, batch in enumerate(waves(hosts, serial), 1):
        if host in batch:
            return n
    raise AnsibleFilterError("dsr_waves: %s is not in the rollout's hosts" % host)


def needs_change(gunicorn_plans, nginx_plan, kernel_now, sysctl_file_exists, bindv6only_policy="keep"):
    """Whether a host has anything left to change (else it is not drained)."""
    if not sysctl_file_exists:
        return True
    # The switches the kernel step always sets (other interfaces are set
    # only when they carry IPv4, and may be off on purpose).
    always = ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6", "net.ipv6.conf.lo.disable_ipv6")
    if any(str(v) == "1" for k, v in (kernel_now or {}).items() if k in always):
        return True
    if str(bindv6only_policy) != "keep" and str((kernel_now or {}).get("net.ipv6.bindv6only")) != str(bindv6only_policy):
        return True
    if any(p["plan"]["changed"] for p in gunicorn_plans or []):
        return True
    return bool((nginx_plan or {}).get("changed"))


def hosts_needing_change(hosts, hostvars):
    return [h for h in hosts if hostvars[h].get("dsr_needs_change", True)]
