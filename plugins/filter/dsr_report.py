"""Per-host tables and journal entries for the rollout (filter plugin)."""
from __future__ import annotations

from datetime import datetime


def _hv(hostvars, h):
    try:
        return hostvars[h]
    except KeyError:
        return {}


def preflight_failures(hosts, hostvars):
    """["host: reason"] for every host not ready (unreachable hosts included)."""
    out = []
    for h in hosts:
        pf = _hv(hostvars, h).get("dsr_preflight")
        if pf is None:
            out.append("%s: unreachable or not checked" % h)
        elif not pf.get("ok"):
            out.append("%s: %s" % (h, pf.get("reason", "failed")))
    return out


def preflight_table(hosts, hostvars):
    """One line per host: name, verdict, services and target binds (or the reason)."""
    width = max([len(h) for h in hosts] + [4])
    lines = ["%-*s  %-6s  %s" % (width, "host", "ready", "services -> binds / reason")]
    for h in hosts:
        pf = _hv(hostvars, h).get("dsr_preflight")
        if pf is None:
            lines.append("%-*s  %-6s  %s" % (width, h, "NO", "unreachable or not checked"))
        elif pf.get("ok"):
            detail = "%s -> %s" % (", ".join(pf.get("services") or []) or "(no gunicorn)", pf.get("binds") or "-")
            if pf.get("left_alone"):
                detail += "; left alone: %s" % "; ".join(pf["left_alone"])
            lines.append("%-*s  %-6s  %s" % (width, h, "yes", detail))
        else:
            lines.append("%-*s  %-6s  %s" % (width, h, "NO", pf.get("reason")))
    return lines


def _secs(a, b):
    try:
        return round((datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds(), 3)
    except (TypeError, ValueError):
        return None


def journal_entry(host, wave, times, before, after, failed, error, lb_address=None, not_migrated=None, trust=None):
    """The JSON a host leaves in the controller's journal. `not_migrated`
    names what the tool left as it was, with the reason (a stopped service);
    `trust` is preflight's dsr_trust (the rules that trust the balancer,
    their twins, and why the host stayed on its IPv4 upstream)."""
    steps = {}
    order = ["start", "kernel_done", "gunicorn_done", "nginx_done", "verify_done", "end"]
    present = [k for k in order if k in (times or {})]
    for a, b in zip(present, present[1:]):
        steps["%s..%s" % (a, b)] = _secs(times[a], times[b])
    return {
        "host": host,
        "wave": wave,
        "result": "failed" if failed else "migrated",
        "error": error or None,
        "listeners_before": before or [],
        "listeners_after": after or [],
        "times": times or {},
        "step_seconds": steps,
        "total_seconds": _secs(times.get("start"), times.get("end")) if times else None,
        "lb_upstream": lb_address,
        "not_migrated": list(not_migrated or []),
        "trust": {"rules": list(trust.get("rules") or []), "problems": list(trust.get("problems") or []),
                  "ipv6_upstream": str(trust.get("ipv6_upstream_ok", True)).lower() in ("true", "1", "yes")} if trust else None,
    }


class FilterModule(object):
    def filters(self):
        return {
            "dsr_preflight_failures": preflight_failures,
            "dsr_preflight_table": preflight_table,
            "dsr_journal_entry": journal_entry,
        }
