"""Drain, enable and re-address app hosts in the load balancer (filter
plugin): an nginx upstream block, or HAProxy's servers (dsr_haproxy_*,
below; the module dsr_haproxy talks to its runtime API).

The load balancer's upstream file lists each app host as a `server` line:

    upstream app {
        server 172.30.30.11:80;
        server 172.30.30.12:80 max_fails=3;
    }

`upstream_edit(text, changes)` rewrites only the `server` lines of the hosts
named in `changes` ({ipv4 address: {"down": bool, "address": ipv4-or-ipv6}}),
keeping every other byte and every other parameter of those lines: drain adds
`down`, enable removes it, and "address" moves the line to the host's IPv6
address (or back to IPv4), so that LB-to-app traffic can go over IPv6 host by
host. A host's line is found by its IPv4 address or, once moved, by the IPv6
address given as "ipv6" in its change.
"""
from __future__ import annotations

import ipaddress
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass

_SERVER = re.compile(r"^(?P<indent>[ \t]*)server[ \t]+(?P<addr>\S+?)(?P<params>(?:[ \t]+[^;#\s]+)*)[ \t]*;(?P<rest>.*)$")


def _split(addr):
    if addr.startswith("["):
        host, _bracket, port = addr[1:].partition("]")
        return host, port.lstrip(":")
    host, _colon, port = addr.partition(":")
    return host, port


def _fmt(host, port):
    h = "[%s]" % host if ":" in host else host
    return "%s:%s" % (h, port) if port else h


def _same(a, b):
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def upstream_servers(text):
    """[{address, port, down, params}] for every server line."""
    out = []
    for line in (text or "").splitlines():
        m = _SERVER.match(line)
        if not m:
            continue
        host, port = _split(m.group("addr"))
        params = m.group("params").split()
        out.append({"address": host, "port": port, "down": "down" in params,
                    "params": [p for p in params if p != "down"]})
    return out


def upstream_edit(text, changes, ctx=None):
    """Apply {ipv4: {down, address, ipv6}} to the server lines. Returns the new text.

    Every host named in `changes` must have a line, or this fails naming it:
    draining a host the LB does not know would silently drain nothing.
    """
    seen = set()
    lines = (text or "").split("\n")
    for i, line in enumerate(lines):
        m = _SERVER.match(line)
        if not m:
            continue
        host, port = _split(m.group("addr"))
        for key, ch in changes.items():
            if not (_same(host, key) or (ch.get("ipv6") and _same(host, ch["ipv6"]))
                    or (ch.get("address") and _same(host, ch["address"]))):
                continue
            seen.add(key)
            if ch.get("keep"):
                break
            params = [p for p in m.group("params").split() if p != "down"]
            if ch.get("down"):
                params.append("down")
            new_host = ch.get("address") or host
            lines[i] = "%sserver %s%s;%s" % (m.group("indent"), _fmt(new_host, port),
                                             "".join(" " + p for p in params), m.group("rest"))
            break
    missing = [k for k in changes if k not in seen]
    if missing:
        where = "host %s: " % ctx["host"] if ctx and ctx.get("host") else ""
        raise AnsibleFilterError("%sthe load balancer's upstream file has no server line for %s "
                                 "(variable dsr_lb_upstream_file)" % (where, ", ".join(sorted(missing))))
    return "\n".join(lines)


def drain_change(ipv6=None):
    """The change that drains one host (found by IPv4, or IPv6 once moved)."""
    return {"down": True, "ipv6": ipv6 or None}


def _true(value):
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


def upstream_address(host, hostvars, ipv6_upstreams=True):
    """The address the balancer reaches `host` on once it is back: its IPv6
    address where it verified dual-stack (dsr_dualstack_ok), ipv6_upstreams
    is on and every rule that trusts the balancer has its IPv6 twin
    (dsr_trust.ipv6_upstream_ok, docs/trust.md); else its IPv4 address."""
    hv = hostvars[host]
    v4 = hv.get("dsr_lb_address") or None
    v6 = hv.get("dsr_lb_address6") or None
    trust_ok = _true((hv.get("dsr_trust") or {}).get("ipv6_upstream_ok", True))
    ok = _true(hv.get("dsr_dualstack_ok", False)) and trust_ok
    return v6 if (_true(ipv6_upstreams) and ok and v6) else v4


def targets(hosts, hostvars, ipv6_upstreams=True):
    """What an operator's balancer tasks (dsr_lb_external_*) get for
    `hosts`: [{host, ipv4, ipv6, address}], `address` being where the
    balancer should reach the host (upstream_address)."""
    out = []
    for h in hosts or []:
        hv = hostvars[h]
        out.append({"host": h, "ipv4": hv.get("dsr_lb_address") or None, "ipv6": hv.get("dsr_lb_address6") or None,
                    "address": upstream_address(h, hostvars, ipv6_upstreams)})
    return out


def enable_changes(hosts, hostvars, ipv6_upstreams=True):
    """{ipv4: change} putting `hosts` back, each on upstream_address()."""
    out = {}
    for h in hosts:
        hv = hostvars[h]
        if not hv.get("dsr_lb_address"):
            raise AnsibleFilterError("host %s: no dsr_lb_address (the IPv4 address the balancer uses for it)" % h)
        v6 = hv.get("dsr_lb_address6") or None
        address = upstream_address(h, hostvars, ipv6_upstreams)
        out[hv["dsr_lb_address"]] = {"down": False, "ipv6": v6, "address": address}
    return out


def known_changes(hosts, hostvars):
    """No-op changes for `hosts` (found by IPv4 or IPv6): checks each has a line."""
    out = {}
    for h in hosts:
        hv = hostvars[h]
        v4 = hv.get("dsr_lb_address")
        if not v4:
            raise AnsibleFilterError("host %s: its address is unknown (unreachable?)" % h)
        out[v4] = {"ipv6": hv.get("dsr_lb_address6") or None, "keep": True}
    return out


def drained_hosts(text, hosts, hostvars):
    """The app hosts whose server line is marked `down` in the upstream file
    (an earlier run drained them and never put them back), in `hosts` order."""
    down = [srv["address"] for srv in upstream_servers(text) if srv["down"]]
    out = []
    for h in hosts:
        hv = hostvars[h]
        mine = [a for a in (hv.get("dsr_lb_address"), hv.get("dsr_lb_address6")) if a]
        if any(_same(d, a) for d in down for a in mine):
            out.append(h)
    return out


_WORKER = re.compile(r"^\s*(\d+)\s+nginx: worker process\b")


def nginx_old_workers(ps_before, ps_now):
    """The pids of nginx workers in `ps_before` (`ps -e -o pid=,args=` read
    before the reload) still alive as nginx workers in `ps_now`. A reload
    makes every worker of before finish the requests it holds and exit
    (`nginx: worker process is shutting down` meanwhile); until it has, a
    request it holds may still be going to a drained server. A worker not
    yet told of the reload still counts: it holds requests too."""
    def workers(text):
        return set(int(m.group(1)) for m in (_WORKER.match(line) for line in (text or "").splitlines()) if m)
    return sorted(workers(ps_before) & workers(ps_now))


# --- HAProxy (dsr_lb_backend: haproxy) ----------------------------------------------------------

def _ep(address, port):
    if not address:
        return "?"
    a = "[%s]" % address if ":" in str(address) else str(address)
    return "%s:%s" % (a, port) if port else a


CMAINT = 0x04   # srv_admin_state: maintenance from the file (`disabled`, on the server or a default-server)


def haproxy_runtime(names, runtime, configured, hostvars, ctx=None):
    """HAProxy as it runs, against its configuration on disk, for the app
    hosts' servers (`names`: dsr_haproxy_server_names, matched in the file).

    runtime     dsr_haproxy's `servers` (state read): what HAProxy runs now
    configured  dsr_haproxy_servers of the file on disk

    Returns {names, problems, forced, unfinished, runtime_only}:
      names         `names` less the servers of a conditional block HAProxy
                    did not take (`.if`): it does not run them
      forced        {"B/S": ready|drain|maint}: the state `set server ...
                    state` (or `disabled` in the file) put it in, as found
      unfinished    app hosts whose server an earlier run left drained, or
                    at the host's other address than the file says (it
                    stopped between writing the file and the runtime API):
                    their wave finishes the move
      runtime_only  servers (any, not only the app hosts') whose drain or
                    maint was set at run time, not by `disabled` in the
                    file (HAProxy's CMAINT flag): a reload would lose it
      problems      a server the file names that HAProxy does not run; one
                    it runs at an address none of its host's (the file on
                    disk is not what runs: reload HAProxy first); a server
                    HAProxy runs at an app host's address that the file
                    does not name by that address (a host name, a
                    server-template): the tool could not move it; a host
                    left with no server HAProxy runs
    """
    ctx = ctx or {}
    where = "load balancer %s: " % ctx["host"] if ctx.get("host") else ""
    path = ctx.get("path", "haproxy.cfg")
    run = dict(("%s/%s" % (s["backend"], s["server"]), s) for s in runtime or [])
    conf = dict(("%s/%s" % (s["backend"], s["server"]), s) for s in configured or [] if not s.get("template"))
    out = {"names": {}, "problems": [], "forced": {}, "unfinished": [], "runtime_only": []}
    for host in sorted(names or {}):
        hv = hostvars[host]
        mine = [a for a in (hv.get("dsr_lb_address"), hv.get("dsr_lb_address6")) if a]
        kept = []
        for name in names[host]:
            r, c = run.get(name), conf.get(name)
            if r is None and c is not None and c.get("conditional"):
                continue
            if r is None:
                out["problems"].append(
                    "%s%s line %s names server %s for %s, but HAProxy does not run it (runtime API): reload "
                    "HAProxy so that it runs the file on disk" % (where, path, c["line"] if c else "?", name, host))
                continue
            kept.append(name)
            out["forced"][name] = r.get("forced") or "ready"
            same = c is not None and _same(r.get("address") or "", c.get("address") or "")
            if not same and not any(_same(r.get("address") or "", m) for m in mine):
                out["problems"].append(
                    "%sHAProxy runs server %s (%s) at %s, but %s line %s says %s: reload HAProxy so that it runs "
                    "the file on disk" % (where, name, host, _ep(r.get("address"), r.get("port")), path,
                                          c["line"] if c else "?", _ep(c and c.get("address"), c and c.get("port"))))
            elif not same or r.get("forced") == "drain":
                if host not in out["unfinished"]:
                    out["unfinished"].append(host)
        # Servers HAProxy runs at this host's address that the file does not
        # name by it: draining the others would leave them sending traffic.
        for name, r in sorted(run.items()):
            if name in kept or not any(_same(r.get("address") or "", m) for m in mine):
                continue
            c = conf.get(name)
            how = ("is written %s on %s line %s" % (c.get("raw") or c.get("address"), path, c["line"]) if c
                   else "comes from a server-template or the runtime API, not a server line")
            out["problems"].append(
                "%sHAProxy runs server %s at %s, the address of %s, but it %s: the tool can neither drain it "
                "with the host nor move it; write the host's address on its server line"
                % (where, name, _ep(r.get("address"), r.get("port")), host, how))
        if not kept and names[host]:
            out["problems"].append("%s%s: HAProxy runs none of its servers (%s): each is in a conditional block "
                                   "HAProxy did not take" % (where, host, ", ".join(names[host])))
        out["names"][host] = kept
    for name, r in sorted(run.items()):
        forced = r.get("forced") or "ready"
        try:
            flags = int(r.get("admin_flags") or 0)
        except (TypeError, ValueError):
            flags = 0
        if forced in ("drain", "maint") and not (forced == "maint" and flags & CMAINT):
            out["runtime_only"].append("%s (%s)" % (name, forced))
    return out


def _forced(live):
    """{"B/S": forced state} from dsr_haproxy's `servers` (a live read)."""
    if isinstance(live, dict):
        return live
    return dict(("%s/%s" % (s["backend"], s["server"]), s.get("forced") or "ready") for s in live or [])


def haproxy_drain(hosts, names, original=None, live=None):
    """The servers of `hosts` to drain. Left alone: a server that was in
    drain or maintenance before the first run (`original`, the balancer's
    snapshot; its operator's), and one in maintenance now (`live`, read just
    before: taken out since preflight). A drain would take either out of
    the state its operator chose."""
    original, live = _forced(original), _forced(live)
    return [n for h in hosts or [] for n in (names or {}).get(h, [])
            if original.get(n, "ready") == "ready" and live.get(n) != "maint"]


def haproxy_enable(hosts, hostvars, names, original=None, live=None, ipv6_upstreams=True):
    """[{host, server, address, state}] putting `hosts` back into HAProxy:
    each of a host's servers on upstream_address(), in the state its
    operator left it: `maint` if it was in maintenance before the first run
    (`original`) or is now (`live`), `drain` if it was draining before the
    first run, else `ready`. A server in maintenance only through a server
    it tracks is put `ready`: it follows that one."""
    original, live = _forced(original), _forced(live)
    out = []
    for h in hosts or []:
        address = upstream_address(h, hostvars, ipv6_upstreams)
        for name in (names or {}).get(h, []):
            before = original.get(name, "ready")
            state = ("maint" if "maint" in (before, live.get(name)) else "drain" if before == "drain" else "ready")
            out.append({"host": h, "server": name, "address": address, "state": state})
    return out


def _haproxy_procs(ps_text):
    """{pid: ppid} of the haproxy processes in `ps -e -o pid=,ppid=,args=`."""
    out = {}
    for line in (ps_text or "").splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            if parts[2].split()[0].rsplit("/", 1)[-1] == "haproxy":
                out[int(parts[0])] = int(parts[1])
    return out


def haproxy_old_workers(ps_before, ps_now):
    """The HAProxy workers of before a reload still alive (master-worker
    mode, as systemd runs it with -Ws): a reload forks new workers and
    leaves each old one finishing the sessions it holds, and the runtime
    API answers for the new workers only, so a drain would not see those
    sessions. The master keeps its pid across the reload and is not a
    worker (its parent is not haproxy)."""
    before, now = _haproxy_procs(ps_before), _haproxy_procs(ps_now)
    workers = set(pid for pid, ppid in before.items() if ppid in before)
    return sorted(pid for pid in workers if pid in now)


class FilterModule(object):
    def filters(self):
        return {
            "dsr_upstream_edit": upstream_edit,
            "dsr_lb_drain_change": drain_change,
            "dsr_lb_enable_changes": enable_changes,
            "dsr_lb_upstream_address": upstream_address,
            "dsr_lb_known_changes": known_changes,
            "dsr_lb_drained": drained_hosts,
            "dsr_nginx_old_workers": nginx_old_workers,
            "dsr_lb_targets": targets,
            "dsr_haproxy_runtime": haproxy_runtime,
            "dsr_haproxy_enable": haproxy_enable,
            "dsr_haproxy_drain": haproxy_drain,
            "dsr_haproxy_old_workers": haproxy_old_workers,
        }
