"""Fleet audit: classify each host's listeners and IPv6 readiness (filter plugin).

Input per host (gathered read-only by audit.yml), a dict with:
  host        inventory name
  role        'app' or 'lb'
  error       why the host could not be read ('' when it could)
  listeners   parsed `ss -ltnpe` with their owner (dsr_listener_owners)
  services    gunicorn_services module output (unit, binds, active, ...);
              a stopped service is shown as stopped
  kernel      sysctl values (the dsr_host_state action)
  nginx       nginx plan (dsr_nginx_plan): IPv6 listen lines still missing
  reach       {"4": true|false|null, "6": ...}: real requests to every port
              the host serves publicly, over each family (null: not tried)
  summary     the owned listener summary (dsr_owned_summary)
  manifest    the snapshot's manifest (None when no rollout touched the
              host): its plan and `before` give the rollout verdict

audit_host() turns that into a report row; audit_summary() counts hosts per
state and lists the fleet-wide problems. The reports (JSON, Markdown, HTML)
are rendered from these rows by templates; no logic lives there.
"""
from __future__ import annotations

import re

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_plan import plan_of
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import listener_check, listener_class

STATES = ("dual-stack", "partial", "ipv4-only", "ipv6-disabled", "no-global-ipv6", "unreadable")


def _fmt(l):
    return ("[%s]:%d" if l["family"] == 6 else "%s:%d") % (l["address"], l["port"])


def families(listeners):
    """What a set of listeners answers on, loopback aside when anything else is there.

    Returns one of: dual-stack, ipv4-only, ipv6-only, loopback-dual,
    loopback-ipv4, loopback-ipv6, none.
    """
    if not listeners:
        return "none"
    classes = set(listener_class(l) for l in listeners)
    public = classes - {"loopback-ipv4", "loopback-ipv6"}
    if public:
        v4 = bool(public & {"ipv4", "dual"})
        v6 = bool(public & {"ipv6", "dual"})
        return "dual-stack" if v4 and v6 else ("ipv4-only" if v4 else "ipv6-only")
    if classes == {"loopback-ipv4", "loopback-ipv6"}:
        return "loopback-dual"
    return classes.pop()


def _owner(l):
    names = sorted(set(p["name"] for p in l.get("processes") or []))
    pids = sorted(set(p["pid"] for p in l.get("processes") or []))
    if names:
        return "%s (pid %s%s)" % (",".join(names), ",".join(str(p) for p in pids),
                                  ", " + l["unit"] if l.get("unit") else "")
    if l.get("unit"):
        return l["unit"]
    return "unknown (not visible to ss: another namespace or no rights)"


def rollout_verdict(manifest, listeners, summary, active_units):
    """The host against its recorded plan (dsr_plan.py) and the state
    before the rollout: {verdict, missing}.

    none        no rollout recorded a plan here
    as-planned  every service still running (and nginx) listens where the
                plan said; a service stopped since is not judged
    as-before   the host listens exactly as before the first rollout
                (rolled back, or not changed yet)
    drifted     neither: `missing` names what the plan wanted and is gone
    """
    plan = plan_of(manifest)
    if plan is None:
        return {"verdict": "none", "missing": []}
    missing = []
    for svc in plan["services"]:
        if svc["active"] and svc["unit"] in active_units:
            missing.extend("%s: %s" % (svc["unit"], p) for p in listener_check(listeners, svc.get("listens") or []))
    if plan["nginx"]["active"] and "nginx.service" in active_units:
        missing.extend("nginx.service: %s" % p for p in listener_check(listeners, plan["nginx"]["listens"]))
    if not missing:
        return {"verdict": "as-planned", "missing": []}
    before = ((manifest or {}).get("data") or {}).get("before") or {}
    if list(summary or []) == list(before.get("listeners") or []):
        return {"verdict": "as-before", "missing": []}
    return {"verdict": "drifted", "missing": missing}


def audit_host(h):
    host = h.get("host")
    row = {"host": host, "role": h.get("role", "app"), "state": "unreadable", "error": h.get("error") or "",
           "kernel": {}, "services": [], "nginx": None, "haproxy": None, "unmanaged": [], "reach": h.get("reach") or {},
           "problems": [], "trust": [], "rollout": {"verdict": "none", "missing": []}}
    if row["error"]:
        row["problems"].append(row["error"])
        return row
    row["problems"].extend(h.get("service_problems") or [])
    # Address-based rules (dsr_trust_rules): whether each covers the
    # balancer over both families.
    row["trust"] = list(h.get("trust") or [])
    kernel = h.get("kernel") or {}
    ipv6_addresses = h.get("ipv6_addresses") or []
    # all.disable_ipv6=1 with an interface switched back on (Docker does
    # that for eth0) still carries IPv6: the addresses tell.
    all_off = str(kernel.get("net.ipv6.conf.all.disable_ipv6", "0")) == "1"
    row["kernel"] = {
        "ipv6": "enabled" if not all_off else ("partly" if ipv6_addresses else "disabled"),
        "bindv6only": kernel.get("net.ipv6.bindv6only"),
        "ipv6_addresses": ipv6_addresses,
    }
    listeners = h.get("listeners") or []
    managed_units = set()
    states = []
    for svc in h.get("services") or []:
        unit = svc.get("unit")
        managed_units.add(unit)
        # `owner` (dsr_listener_owners) tells supervisord's programs apart;
        # the cgroup unit alone would give them all to supervisord.
        own = [l for l in listeners if l.get("owner", l.get("unit")) == unit]
        cg = svc.get("cgroup_unit")
        if not own and svc.get("manager") == "supervisor" and cg:
            # Sockets only known as supervisord's (processes root may not
            # inspect): the ones on this program's ports.
            ports = set(int(m) for b in svc.get("binds") or [] for m in re.findall(r":(\d+)$", b))
            own = [l for l in listeners if l.get("owner") == cg and l["port"] in ports]
            managed_units.add(cg)
        if svc.get("active") is False:
            row["services"].append({"unit": unit, "binds": svc.get("binds") or [], "families": "stopped",
                                    "listeners": [], "version": svc.get("version")})
            continue
        fam = families(own)
        row["services"].append({"unit": unit, "binds": svc.get("binds") or [], "families": fam,
                                "listeners": sorted(set(_fmt(l) for l in own)),
                                "version": svc.get("version")})
        states.append(fam)
        if fam == "none":
            row["problems"].append("%s: running, but no listening socket found" % unit)

    nginx_listeners = [l for l in listeners if l.get("unit") == "nginx.service"]
    plan = h.get("nginx")
    if plan is not None or nginx_listeners:
        managed_units.add("nginx.service")
        missing = sorted(set(int(m) for f in ((plan or {}).get("files") or {}).values() if f.get("changed")
                             for line in f.get("added", []) for m in re.findall(r"\]:(\d+)", line)))
        fam = families(nginx_listeners)
        row["nginx"] = {"families": fam, "listeners": sorted(set(_fmt(l) for l in nginx_listeners)),
                        "missing_ipv6_ports": missing,
                        "coverage": "complete" if not missing else "IPv6 missing on %s" % ", ".join(map(str, missing))}
        states.append(fam if not missing else "ipv4-only")

    # A balancer's HAProxy (dsr_lb_backend: haproxy): its sockets, and the
    # IPv4 binds of its file that have no IPv6 twin yet (dsr_haproxy_dualstack_plan).
    hplan = h.get("haproxy")
    haproxy_listeners = [l for l in listeners if "haproxy.service" in (l.get("unit"), l.get("owner"))]
    if hplan is not None or haproxy_listeners:
        managed_units.add("haproxy.service")
        missing = sorted(set(int(x["port"]) for x in (hplan or {}).get("listens", [])
                             if x.get("added") and str(x.get("port")).isdigit()))
        fam = families(haproxy_listeners)
        row["haproxy"] = {"families": fam, "listeners": sorted(set(_fmt(l) for l in haproxy_listeners)),
                          "missing_ipv6_ports": missing,
                          "coverage": "complete" if not missing else "IPv6 missing on %s" % ", ".join(map(str, missing))}
        row["problems"].extend((hplan or {}).get("problems", []))
        states.append(fam if not missing else "ipv4-only")

    ignore = set(h.get("ignore_addresses") or [])
    for l in listeners:
        if l.get("owner") in managed_units or l.get("unit") in managed_units or l["address"] in ignore:
            continue
        # A process name check covers hosts where ss shows no cgroup.
        if not l.get("unit") and any(p["name"].startswith(("gunicorn", "nginx")) for p in l.get("processes") or []):
            continue
        row["unmanaged"].append({"listener": _fmt(l), "families": listener_class(l), "process": _owner(l)})
    row["unmanaged"].sort(key=lambda u: (u["listener"].rsplit(":", 1)[1].zfill(5), u["listener"]))

    for fam, ok in sorted((row["reach"] or {}).items()):
        if ok is False:
            row["problems"].append("no answer over IPv%s" % fam)
        elif ok is None and fam == "6" and not ipv6_addresses:
            row["problems"].append("no global IPv6 address to request")

    active_units = set(s["unit"] for s in row["services"] if s["families"] != "stopped")
    if row["nginx"] is not None and row["nginx"]["listeners"]:
        active_units.add("nginx.service")
    row["rollout"] = rollout_verdict(h.get("manifest"), listeners, h.get("summary"), active_units)
    if row["rollout"]["verdict"] == "drifted":
        row["problems"].append("neither as the rollout planned nor as before it: %s"
                               % "; ".join(row["rollout"]["missing"]))

    if row["kernel"]["ipv6"] == "disabled":
        row["state"] = "ipv6-disabled"
    elif states and all(s in ("dual-stack", "loopback-dual") for s in states):
        row["state"] = "dual-stack"
    elif states and all(s in ("ipv4-only", "loopback-ipv4", "none") for s in states):
        row["state"] = "ipv4-only"
    elif not states:
        row["state"] = "ipv4-only" if not listeners else families(listeners).replace("loopback-", "")
        if row["state"] not in STATES:
            row["state"] = "partial"
    else:
        row["state"] = "partial"
    # Sockets that take IPv6 are not "dual-stack" when no IPv6 client can
    # reach the host: it needs a global IPv6 address.
    if row["state"] == "dual-stack" and not ipv6_addresses:
        row["state"] = "no-global-ipv6"
        row["problems"].append("IPv6 sockets, but no global IPv6 address: no IPv6 client can reach the host")
    return row


def reach(results, has_ipv6=True):
    """{"4": ok, "6": ok} from the audit's requests (dsr_http_probe results):
    ok when every port answered over that family, None when nothing could
    be requested over it (no public port, or no global IPv6 address)."""
    out = {}
    for fam in ("4", "6"):
        rs = [r for r in results or [] if ("[" in r["url"]) == (fam == "6")]
        out[fam] = all(int(r.get("status", -1)) != -1 for r in rs) if rs else None
    if not has_ipv6:
        out["6"] = None
    return out


def public_ports(listeners):
    """Sorted ports of the public (not loopback) listeners, parsed ss output
    (dsr_ss_listeners): the ports the audit requests over both families."""
    return sorted(set(int(l["port"]) for l in listeners or [] if not l["loopback"]))


def row_or_unreadable(pair):
    """[row or None, host] -> the row, or an 'unreadable' row for a host that never answered."""
    row, host = pair
    if row:
        return row
    return audit_host({"host": host, "error": "host unreachable (no answer to Ansible)"})


def journal_timeline(entries):
    """Rollout journal entries -> bars on one time axis (offsets and widths in % of the run)."""
    from datetime import datetime

    def ts(v):
        try:
            return datetime.fromisoformat(v)
        except (TypeError, ValueError):
            return None

    items = []
    for e in entries or []:
        t = e.get("times") or {}
        a, b = ts(t.get("start")), ts(t.get("end"))
        if a and b:
            items.append((a, b, e))
    if not items:
        return []
    t0 = min(a for a, _end, _entry in items)
    t1 = max(b for _start, b, _entry in items)
    span = max((t1 - t0).total_seconds(), 0.001)
    out = []
    for a, b, e in sorted(items, key=lambda i: (i[0], i[2].get("host"))):
        out.append({"host": e.get("host"), "wave": e.get("wave"), "result": e.get("result"),
                    "error": e.get("error"), "start": e["times"]["start"],
                    "seconds": round((b - a).total_seconds(), 1),
                    "offset_pct": round(100.0 * (a - t0).total_seconds() / span, 2),
                    "width_pct": max(round(100.0 * (b - a).total_seconds() / span, 2), 0.5)})
    return out


def audit_summary(rows):
    counts = dict((s, 0) for s in STATES)
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return {
        "hosts": len(rows),
        "counts": counts,
        "unmanaged": sum(len(r["unmanaged"]) for r in rows),
        "problems": ["%s: %s" % (r["host"], p) for r in rows for p in r["problems"]],
    }


def audit_table(rows):
    """Compact fixed-width lines for the end of the play."""
    fmt = "%-14s %-4s %-13s %-8s %-10s %-8s %-7s %-9s %s"
    head = fmt % ("host", "role", "state", "ipv6", "bindv6only", "services", "nginx", "unmanaged", "plan")
    lines = [head, "-" * len(head)]
    for r in rows:
        nginx = "-" if not r["nginx"] else ("ok" if not r["nginx"]["missing_ipv6_ports"] else "missing")
        lines.append(fmt % (
            r["host"][:14], r["role"], r["state"], r["kernel"].get("ipv6", "?"),
            r["kernel"].get("bindv6only", "?") if r["kernel"] else "?",
            len(r["services"]), nginx, len(r["unmanaged"]), r.get("rollout", {}).get("verdict", "none")))
    return lines


class FilterModule(object):
    def filters(self):
        return {
            "dsr_audit_host": audit_host,
            "dsr_audit_summary": audit_summary,
            "dsr_audit_table": audit_table,
            "dsr_audit_row_or_unreachable": row_or_unreadable,
            "dsr_audit_reach": reach,
            "dsr_public_ports": public_ports,
            "dsr_journal_timeline": journal_timeline,
        }
