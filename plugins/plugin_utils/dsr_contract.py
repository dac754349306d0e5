"""What the host listens on is the contract (filter plugin).

The plan (gunicorn discovery, nginx's configuration as read) is a
hypothesis about a host; the sockets its services hold are the truth. These
functions compare the two before anything changes, and compare the host
after a change with the host before it, never with the plan:

  dsr_listener_owners     who holds each listening socket: a gunicorn
                          service (systemd unit, or supervisord program by
                          process ancestry), nginx, or nobody we manage
  dsr_live_mismatches     preflight: the binds each running service is
                          believed to have against what it holds now
  dsr_contract_problems   after a change: every listener from before is
                          still there (same address, port, owner), and every
                          public IPv4 listener has its IPv6 twin
  dsr_ipv4_public         the IPv4 listeners a peer can reach (what must keep
                          answering), and the request targets for them
  dsr_run_state_problems  the run state of each service (systemctl show,
                          supervisorctl status) and the differences from before
  host_state              the state of a host in one read (the dsr_host_state
                          action): listeners with owners, run states, kernel
  dsr_kernel_restore      the sysctl writes that put disable_ipv6 and
                          bindv6only back at run time, in a safe order

Owners are labels: a systemd unit name (`app.service`), `supervisor:NAME`
for a supervisord program, and `nginx.service`.
"""
from __future__ import annotations

import ipaddress
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass

NGINX = "nginx.service"


# --- processes and owners -------------------------------------------------

def process_table(text):
    """{pid: ppid} from `ps -e -o pid=,ppid=`."""
    table = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            table[int(parts[0])] = int(parts[1])
    return table


def _descends(pid, ancestor, table):
    seen = set()
    while pid and pid not in seen:
        if pid == ancestor:
            return True
        seen.add(pid)
        pid = table.get(pid)
    return False


def _svc_pid(svc):
    try:
        return int(svc.get("pid") or 0)
    except (TypeError, ValueError):
        return 0


def owner_of(listener, services, table=None):
    """The owner label of one parsed listener (dsr_ss_listeners), or None.

    The socket's systemd unit (`cgroup:` of `ss -e`) names a systemd
    service exactly; a supervisord program shares supervisord's unit, so it
    is found by process ancestry (a socket held by the program's process or
    one of its descendants). Old ss prints no cgroup: then ancestry decides
    for systemd services too (their MainPID), and the process name for nginx.
    """
    table = table or {}
    pids = [p["pid"] for p in listener.get("processes") or []]
    unit = listener.get("unit")
    for svc in services or []:
        if svc.get("manager", "systemd") == "systemd" and unit and unit == svc.get("unit"):
            return svc["unit"]
    for svc in services or []:
        spid = _svc_pid(svc)
        if spid and any(_descends(p, spid, table) for p in pids):
            return svc["unit"]
    if unit == NGINX:
        return NGINX
    names = [p["name"] for p in listener.get("processes") or []]
    if not unit and names and all(n == "nginx" for n in names):
        return NGINX
    # ss shows no process for a socket whose processes root may not inspect
    # (a supervisord program that dropped privileges is not dumpable, and a
    # container without CAP_SYS_PTRACE cannot read its fds): the socket is
    # known to be supervisord's, not which program's.
    if unit and not pids and any(s.get("manager") == "supervisor" and s.get("cgroup_unit") == unit
                                 for s in services or []):
        return unit
    return None


def listener_owners(listeners, services=None, ps_text="", extra_units=()):
    """Each listener with an `owner` key (None when no managed service holds it).

    `extra_units`: other systemd units to recognise by cgroup (for example a
    stopped gunicorn's unit, so that a socket it should not hold is seen)."""
    table = process_table(ps_text) if isinstance(ps_text, str) else dict(ps_text or {})
    services = list(services or []) + [{"unit": u, "manager": "systemd"} for u in extra_units or []]
    out = []
    for l in listeners or []:
        item = dict(l)
        item["owner"] = owner_of(l, services, table)
        out.append(item)
    return out


def _fmt(address, port):
    return ("[%s]:%s" if ":" in address else "%s:%s") % (address, port)


def owned_summary(listeners, owners=None):
    """Sorted unique "ADDR:PORT v6only=X owner" strings of owned listeners
    (only those of `owners` when given). v6only is part of what a service
    holds: a dual `*:P` and a v6only `[::]:P` serve different families."""
    out = set()
    for l in listeners or []:
        if not l.get("owner") or (owners is not None and l["owner"] not in owners):
            continue
        v6 = "" if l["family"] == 4 else " v6only=%s" % ("?" if l.get("v6only") is None else l["v6only"])
        out.add("%s%s %s" % (_fmt(l["address"], l["port"]), v6, l["owner"]))
    return sorted(out)


# --- gunicorn's bind strings ----------------------------------------------

def parse_gunicorn_bind(text):
    """(kind, host, port) the way gunicorn's util.parse_address reads a bind:
    kind 'unix' (host = path), 'fd', or 'tcp' (host lower-cased, '' -> 0.0.0.0,
    default port 8000)."""
    s = str(text).strip()
    if re.match(r"^unix:(//)?", s):
        return ("unix", re.split(r"unix:(?://)?", s)[-1], None)
    if s.startswith("fd://"):
        return ("fd", s[5:], None)
    if s.startswith("tcp://"):
        s = s[len("tcp://"):]
    host, port = s, "8000"
    if "[" in s and "]" in s:
        host = s.split("]", 1)[0][1:]
        port = (s.split("]:") + ["8000"])[1]
    elif ":" in s:
        host, port = (s.split(":") + ["8000"])[:2]
    if host == "":
        host = "0.0.0.0"
    if not str(port).isdigit():
        raise AnsibleFilterError("bind %r: %r is not a port" % (text, port))
    return ("tcp", host.lower(), int(port))


def _ip(host):
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


def believed_tcp(binds, resolved=None):
    """{(address, port)} a bind list means, names resolved as gunicorn does
    (IPv4 only); raises on a name the host does not resolve."""
    out = set()
    for b in binds or []:
        kind, host, port = parse_gunicorn_bind(b)
        if kind != "tcp":
            continue
        ip = _ip(host)
        if ip is None:
            addr = (resolved or {}).get(host)
            if not addr:
                raise AnsibleFilterError("bind %r: the host does not resolve %r to an IPv4 address" % (b, host))
            ip = ipaddress.ip_address(addr)
        out.add((str(ip), port))
    return out


def unix_listening(ss_x_text):
    """Paths of listening unix stream sockets in `ss -lxn` output."""
    paths = set()
    for line in (ss_x_text or "").splitlines():
        f = line.split()
        if len(f) < 5 or "LISTEN" not in f[:2]:
            continue
        for tok in f[4:]:
            if tok.startswith("/") or tok.startswith("@"):
                paths.add(tok)
                break
    return paths


def getent_command(name):
    """The read that resolves a bind's host name as gunicorn will (IPv4)."""
    return ["getent", "ahostsv4", name]


def getent_results(results):
    """dsr_commands results of getent_command, shaped like a looped command's
    (item = the name) with `ipv4`, the first address, when it resolved."""
    out = []
    for r in results or []:
        name = r["cmd"][-1]
        words = (r.get("stdout") or "").split()
        out.append({"item": name, "rc": r["rc"], "stdout": r.get("stdout", ""),
                    "ipv4": words[0] if r["rc"] == 0 and words else None})
    return out


def test_sabotage(services, on=False):
    """FOR THE PROJECT'S TESTS ONLY (variable dsr_test_sabotage): each
    service's public binds planned as loopback, after the live check has
    passed, so that the rewrite moves a public service to loopback while
    agreeing with its own plan. Proves the before/after check and the
    restore. Off (the default): the services unchanged."""
    if not on:
        return services
    out = []
    for svc in services or []:
        binds = []
        for b in svc.get("binds") or ["127.0.0.1:8000"]:
            kind, host, port = parse_gunicorn_bind(b)
            binds.append("127.0.0.1:%d" % port if kind == "tcp" and ":" not in host else b)
        out.append(dict(svc, binds=binds))
    return out


# --- preflight: the plan against the live sockets -------------------------

def _counterparts(address, interfaces):
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return ["::"]
    if ip.is_loopback:
        return ["::1"]
    return [str(ipaddress.ip_address(a)) for a in (interfaces or {}).get(address, [])]


def _original(original, owner):
    """{(address, port)} `owner` held in an owned summary taken before the
    first change (the snapshot's), or None when there is none."""
    if original is None:
        return None
    return set((a, p) for a, p, _v6only, o in (_parse_summary(x) for x in original) if o == owner)


def live_mismatches(services, listeners, nginx_plan=None, nginx_active=False, ss_x_text="",
                    resolved=None, interfaces=None, ctx=None, original=None):
    """Preflight: what the plan believes against what the host holds.

    services    running gunicorn services (discovery's dicts: unit, binds)
    listeners   parsed listeners with `owner` (dsr_listener_owners)
    nginx_plan  dsr_nginx_plan's result (its `listens`: the IPv6 listens
                the configuration will have, existing ones included)
    original    the owned summary recorded before the first change, when an
                earlier run left a snapshot: a service that still holds
                exactly what it held then is a half-done host (its new files
                written, not yet in effect), not a wrong plan
    Returns one message per service whose plan and sockets differ.
    """
    host = (ctx or {}).get("host")
    where = "host %s: " % host if host else ""
    problems = []
    unix_paths = None
    # supervisord programs whose sockets could only be given to supervisord
    # itself (see owner_of): judged together, per supervisord.
    groups = {}
    for svc in services or []:
        cg = svc.get("cgroup_unit")
        if svc.get("manager") == "supervisor" and cg and any(l.get("owner") == cg for l in listeners):
            groups.setdefault(cg, []).append(svc)
    for cg, members in sorted(groups.items()):
        try:
            believed = set().union(*[believed_tcp(m.get("binds") or ["127.0.0.1:8000"], resolved) for m in members])
        except AnsibleFilterError as e:
            problems.append("%s%s: %s" % (where, cg, e))
            continue
        held = set((l["address"], l["port"]) for l in listeners if l.get("owner") in [cg] + [m["unit"] for m in members])
        if believed != held and held != _original(original, cg):
            problems.append(
                "%sthe plan believes the programs of %s (%s) listen on %s; they listen on %s (ss)"
                % (where, cg, ", ".join(m["unit"] for m in members),
                   ", ".join(_fmt(a, p) for a, p in sorted(believed)) or "nothing",
                   ", ".join(_fmt(a, p) for a, p in sorted(held)) or "nothing"))
    grouped = set(m["unit"] for ms in groups.values() for m in ms)
    for svc in services or []:
        unit = svc["unit"]
        if unit in grouped:
            continue
        try:
            believed = believed_tcp(svc.get("binds") or ["127.0.0.1:8000"], resolved)
        except AnsibleFilterError as e:
            problems.append("%s%s: %s" % (where, unit, e))
            continue
        held = set((l["address"], l["port"]) for l in listeners if l.get("owner") == unit)
        # A socket ss shows with neither a cgroup (ss before 4.13 prints
        # none) nor a process (ss -p cannot read the fds of a process that
        # dropped privileges without CAP_SYS_PTRACE): held by someone, but
        # ss does not say by whom. Say that, not that the bind is unknown.
        anonymous = sorted(set((l["address"], l["port"]) for l in listeners
                               if (l["address"], l["port"]) in believed and not l.get("owner")
                               and not l.get("unit") and not l.get("processes")))
        if not held and anonymous and held != _original(original, unit):
            problems.append(
                "%sthe plan believes %s listens on %s; ss shows a socket there but names no owner for it "
                "(no cgroup field, as ss before iproute2 4.13 prints none, and no process: ss -p must run as "
                "root with CAP_SYS_PTRACE to see a process that dropped privileges), so the tool cannot tell "
                "whose it is; run the reads as root with that capability, or leave the service out "
                "(gunicorn_dualstack__skip_services)"
                % (where, unit, ", ".join(_fmt(a, p) for a, p in anonymous)))
        elif believed != held and held != _original(original, unit):
            problems.append(
                "%sthe plan believes %s listens on %s; it listens on %s (ss). Its bind comes from a source "
                "the discovery did not read: make the unit state it (--bind), or leave the service out "
                "(gunicorn_dualstack__skip_services)"
                % (where, unit, ", ".join(_fmt(a, p) for a, p in sorted(believed)) or "nothing",
                   ", ".join(_fmt(a, p) for a, p in sorted(held)) or "nothing"))
        for b in svc.get("binds") or []:
            kind, path, _port = parse_gunicorn_bind(b)
            if kind == "unix":
                if unix_paths is None:
                    unix_paths = unix_listening(ss_x_text)
                if path not in unix_paths:
                    problems.append("%sthe plan believes %s listens on unix:%s; no unix socket listens there (ss -lx)"
                                    % (where, unit, path))
    # A gunicorn the discovery did not find (a wrapper it skipped, a unit
    # it could not read) still holds its sockets: it would be left IPv4-only
    # while the host is reported migrated.
    strays = {}
    for l in listeners:
        names = [p["name"] for p in l.get("processes") or []]
        if l.get("owner") is None and any(n.startswith("gunicorn") for n in names):
            strays.setdefault(l.get("unit") or "pid %s" % ",".join(
                str(p["pid"]) for p in l["processes"]), set()).add(_fmt(l["address"], l["port"]))
    for who, where_ in sorted(strays.items()):
        problems.append(
            "%sa gunicorn that the discovery did not find (%s) listens on %s (ss); make its unit start gunicorn "
            "directly so that it can be read, or stop it" % (where, who, ", ".join(sorted(where_))))
    if nginx_active and nginx_plan is not None:
        mine = [l for l in listeners if l.get("owner") == NGINX]
        v4 = set((l["address"], l["port"]) for l in mine if l["family"] == 4)
        v6 = set((l["address"], l["port"]) for l in mine if l["family"] == 6)
        planned = set((l["address"], int(l["port"])) for l in nginx_plan.get("listens", []))
        for a, p in sorted(v4):
            twins = set((t, p) for t in _counterparts(a, interfaces))
            if not (twins & (planned | v6)):
                problems.append(
                    "%snginx listens on %s (ss), but its configuration as read has no listen for it, so it would "
                    "get no IPv6 twin; name the file that holds it in nginx_dualstack__files, or reload nginx if "
                    "its configuration changed since it started" % (where, _fmt(a, p)))
        for t, p in sorted(planned):
            sources = [a for a, q in v4 if q == p and t in _counterparts(a, interfaces)]
            if not sources and (t, p) not in v6:
                problems.append(
                    "%snginx's configuration as read has a listen on port %d that nginx does not hold now (ss); "
                    "reload nginx so that it runs the configuration on disk, or check nginx_dualstack__files"
                    % (where, p))
    return problems


def pending(services, listeners, nginx_plan=None, nginx_active=False, resolved=None):
    """What an interrupted run wrote but did not bring into effect: the
    running services whose sockets are not yet those of their files, and
    whether nginx lacks an IPv6 listen its files have. These are restarted
    (nginx reloaded) even though their files need no change."""
    out = {"services": [], "nginx": False}
    for svc in services or []:
        try:
            believed = believed_tcp(svc.get("binds") or ["127.0.0.1:8000"], resolved)
        except AnsibleFilterError:
            continue
        owners = [svc["unit"]]
        if svc.get("manager") == "supervisor" and svc.get("cgroup_unit"):
            owners.append(svc["cgroup_unit"])  # its sockets given to supervisord (owner_of)
            held = set((l["address"], l["port"]) for l in listeners if l.get("owner") in owners)
            if not believed <= held:
                out["services"].append(svc["unit"])
            continue
        held = set((l["address"], l["port"]) for l in listeners if l.get("owner") == svc["unit"])
        if believed != held:
            out["services"].append(svc["unit"])
    if nginx_active and nginx_plan is not None:
        v6 = set((l["address"], l["port"]) for l in listeners if l.get("owner") == NGINX and l["family"] == 6)
        out["nginx"] = any((l["address"], int(l["port"])) not in v6 for l in nginx_plan.get("listens", []))
    return out


# --- after a change: nothing lost, every public IPv4 listener twinned -----

def _parse_summary(item):
    """'ADDR:PORT [v6only=X] OWNER' -> (address, port, v6only or None, owner)."""
    parts = item.split(" ")
    addr, port = parts[0].rsplit(":", 1)
    address = addr[1:-1] if addr.startswith("[") else addr
    v6only = None
    rest = parts[1:]
    if rest and rest[0].startswith("v6only="):
        v = rest[0].split("=", 1)[1]
        v6only = None if v == "?" else int(v)
        rest = rest[1:]
    return address, int(port), v6only, " ".join(rest)


def contract_problems(before, after, interfaces=None, not_migrated=None, ctx=None, require_dual=True):
    """Compare the owned listeners after a change with those before it.

    before, after   owned_summary lists (or listener dicts with `owner`)
    interfaces      {ipv4: [global ipv6 of its interface]}
    not_migrated    [{address, port, owner, reason}] the tool decided to
                    leave IPv4-only (named, never counted as done)
    require_dual    False for a restore / rollback: only "nothing lost"

    Nothing lost: each listener from before still exists with the same
    address, port and owner; an IPv4 wildcard also counts as kept by a
    dual-stack [::] socket of the same owner (one socket serving both).
    Dual-stack: 0.0.0.0:P has [::]:P, 127.x:P has [::1]:P, A:P has the
    global IPv6 of A's interface, each held by the same owner.
    """
    host = (ctx or {}).get("host")
    where = "host %s: " % host if host else ""
    b = [_parse_summary(x) if isinstance(x, str) else x for x in before or []]
    a = [_parse_summary(x) if isinstance(x, str) else x for x in after or []]
    have = set((ad, p, o) for ad, p, _v6only, o in a)
    dual = set((p, o) for ad, p, v6, o in a if ad == "::" and v6 == 0)
    skip = dict(((n["address"], int(n["port"]), n["owner"]), n.get("reason", "")) for n in not_migrated or [])
    problems = []
    for ad, p, v6, o in b:
        if (ad, p, o) in have or (ad == "0.0.0.0" and (p, o) in dual):
            continue
        problems.append("%s%s no longer listens on %s (it did before)" % (where, o, _fmt(ad, p)))
    if not require_dual:
        return problems
    for ad, p, v6, o in b:
        if ":" in ad or (ad, p, o) in skip:
            continue
        twins = _counterparts(ad, interfaces)
        if not twins:
            problems.append("%s%s listens on %s, and its interface has no global IPv6 address for a twin"
                            % (where, o, _fmt(ad, p)))
            continue
        if ad == "0.0.0.0" and (p, o) in dual:
            continue
        if not any((t, p, o) in have for t in twins):
            problems.append("%s%s listens on %s but not on %s: not dual-stack"
                            % (where, o, _fmt(ad, p), " or ".join(_fmt(t, p) for t in twins)))
    return problems


def ipv4_public(summary, addresses=None):
    """The peer's IPv4 request targets, [{address, port, owner}], for the
    public IPv4 listeners in an owned summary: a wildcard is requested on
    each of `addresses` (the host's global IPv4), a specific address on
    itself; loopback is left out (a peer cannot reach it)."""
    out = []
    for ad, p, _v6only, o in (_parse_summary(x) for x in summary or []):
        if ":" in ad:
            continue
        ip = ipaddress.ip_address(ad)
        if ip.is_loopback:
            continue
        for target in (addresses or []) if ip.is_unspecified else [ad]:
            item = {"address": target, "port": p, "owner": o}
            if item not in out:
                out.append(item)
    return out


def ipv6_public(summary, interfaces=None, addresses6=None):
    """IPv6 targets for the public IPv4 listeners of a summary taken
    before: [::] twins on each of `addresses6`, specific ones on their twin."""
    out = []
    for ad, p, _v6only, o in (_parse_summary(x) for x in summary or []):
        if ":" in ad or ipaddress.ip_address(ad).is_loopback:
            continue
        targets = addresses6 or [] if ad == "0.0.0.0" else _counterparts(ad, interfaces)
        for t in targets:
            item = {"address": t, "port": p, "owner": o}
            if item not in out:
                out.append(item)
    return out


def ipv6_answer_targets(ports, before, interfaces=None, addresses6=None):
    """IPv6 targets for the public listeners of `before` on `ports` (the
    ports that answered the peer over IPv4 before the change)."""
    ports = set(int(p) for p in ports or [])
    return [t for t in ipv6_public(before, interfaces, addresses6) if t["port"] in ports]


def answered(results, targets):
    """The targets whose request got any HTTP answer (dsr_http_probe results
    in the same order as the targets)."""
    return [t for t, r in zip(targets or [], results or []) if int(r.get("status", -1)) != -1]


def probe_urls(targets, path="/", expect="any"):
    """dsr_http_probe requests for [{address, port}] targets."""
    out = []
    for t in targets or []:
        host = "[%s]" % t["address"] if ":" in t["address"] else t["address"]
        out.append({"url": "http://%s:%d%s" % (host, int(t["port"]), path), "expect": expect})
    return out


# --- run states ------------------------------------------------------------

def systemctl_states(text):
    """{unit: {active, enabled, state, unit_file_state, load}} from
    `systemctl show -p Id,ActiveState,SubState,UnitFileState,LoadState U...`."""
    out = {}
    for block in re.split(r"\n\s*\n", text or ""):
        d = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if d.get("Id"):
            out[d["Id"]] = {
                "active": d.get("ActiveState") in ("active", "reloading", "activating"),
                "enabled": d.get("UnitFileState") in ("enabled", "enabled-runtime", "static", "alias", "indirect",
                                                      "generated"),
                "state": d.get("ActiveState", ""),
                "unit_file_state": d.get("UnitFileState", ""),
                "load": d.get("LoadState", ""),
            }
    return out


def supervisor_states(text):
    """{'supervisor:NAME': {active, state, pid}} from `supervisorctl status`."""
    out = {}
    for line in (text or "").splitlines():
        f = line.split()
        if len(f) < 2:
            continue
        m = re.search(r"pid (\d+)", line)
        out["supervisor:" + f[0]] = {"active": f[1] in ("RUNNING", "STARTING", "BACKOFF"), "state": f[1],
                                     "pid": int(m.group(1)) if m else 0}
    return out


def services_now(services, systemctl_text="", supervisor_text=""):
    """The services with the pid they run under now (systemd MainPID,
    supervisord's pid): a restart changes it, and ancestry needs the new one."""
    pids = {}
    for block in re.split(r"\n\s*\n", systemctl_text or ""):
        d = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if d.get("Id") and d.get("MainPID", "").isdigit():
            pids[d["Id"]] = int(d["MainPID"])
    for owner, s in supervisor_states(supervisor_text).items():
        pids[owner] = s["pid"]
    return [dict(svc, pid=pids.get(svc["unit"], 0)) for svc in services or []]


def interface_of(ip_json, address):
    """The name of the interface that holds `address` in `ip -j addr` output."""
    for link in ip_json or []:
        for a in link.get("addr_info", []):
            if a.get("local") == address:
                return link.get("ifname")
    return None


def run_states(services, systemctl_text="", supervisor_text=""):
    """[{owner, manager, active, enabled, state}] for the given services
    ({unit, manager}) from the two reads."""
    sd = systemctl_states(systemctl_text)
    sv = supervisor_states(supervisor_text)
    out = []
    for svc in services or []:
        unit, manager = svc["unit"], svc.get("manager", "systemd")
        if manager == "supervisor":
            s = sv.get(unit if unit.startswith("supervisor:") else "supervisor:" + unit)
            out.append({"owner": unit, "manager": manager, "active": bool(s and s["active"]),
                        "enabled": svc.get("enabled"), "state": s["state"] if s else "unknown"})
        else:
            s = sd.get(unit)
            out.append({"owner": unit, "manager": manager, "active": bool(s and s["active"]),
                        "enabled": bool(s and s["enabled"]), "state": s["state"] if s else "unknown"})
    return out


def service_recipe(svc, how="restart"):
    """What the restore needs of a service: who it is and how it is brought
    back onto restored files (`restart` for gunicorn, whose binds change
    only on a full restart; `reload` or `restart` for nginx)."""
    return {"unit": svc["unit"], "name": svc.get("name") or svc["unit"], "manager": svc.get("manager", "systemd"),
            "cgroup_unit": svc.get("cgroup_unit"), "restart": how}


def with_run_states(recipes, states):
    """Each recipe with the run state it was found in (active, enabled, state)."""
    by = dict((s["owner"], s) for s in states or [])
    out = []
    for r in recipes or []:
        s = by.get(r["unit"], {})
        out.append(dict(r, owner=r["unit"], active=bool(s.get("active")), enabled=bool(s.get("enabled")),
                        state=s.get("state", "unknown")))
    return out


def run_state_problems(before, now, ctx=None):
    """Differences in active / enabled between two run_states lists."""
    host = (ctx or {}).get("host")
    where = "host %s: " % host if host else ""
    now_by = dict((s["owner"], s) for s in now or [])
    problems = []
    for s in before or []:
        n = now_by.get(s["owner"])
        if n is None:
            problems.append("%s%s: its run state could not be read" % (where, s["owner"]))
            continue
        if bool(n["active"]) != bool(s["active"]):
            problems.append("%s%s is %s; before the rollout it was %s"
                            % (where, s["owner"], n["state"], s["state"]))
        if s["manager"] == "systemd" and bool(n.get("enabled")) != bool(s.get("enabled")):
            problems.append("%s%s is %s; before the rollout it was %s"
                            % (where, s["owner"], "enabled" if n.get("enabled") else "not enabled",
                               "enabled" if s.get("enabled") else "not enabled"))
    return problems


# --- kernel values at run time -----------------------------------------------

_KERNEL_KEY = re.compile(r"^net\.ipv6\.(bindv6only|conf\.[^.]+\.disable_ipv6)$")


def kernel_values(text):
    """{key: 'value'} of bindv6only and every disable_ipv6 key from `sysctl` output."""
    out = {}
    for line in (text or "").splitlines():
        if "=" not in line:
            continue
        k, v = [x.strip() for x in line.split("=", 1)]
        if _KERNEL_KEY.match(k):
            out[k] = v
    return out


def kernel_restore(before, now):
    """The `sysctl -w` arguments that put the run-time values of `before`
    back, in order, and the keys that cannot be put back without harm.

    Writing net.ipv6.conf.all.disable_ipv6 sets every interface: it is
    written only when every interface had that same value before (then it
    restores them all at once, the usual "IPv6 off" host). Otherwise the
    interfaces are written one by one and `all` stays as it is: writing it
    would switch interfaces that had IPv6 on off again, and a re-enabled
    interface does not get its addresses back until its network
    configuration is reapplied. `default` only affects interfaces created
    later and is always safe. An interface that no longer exists is skipped.
    """
    before = dict(before or {})
    now = dict(now or {})
    writes, kept = [], []
    all_key, def_key = "net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"
    ifaces = sorted(k for k in before if k.endswith(".disable_ipv6") and k not in (all_key, def_key) and k in now)
    state = dict(now)
    if all_key in before and before[all_key] != now.get(all_key):
        if all(before[k] == before[all_key] for k in ifaces):
            writes.append("%s=%s" % (all_key, before[all_key]))
            for k in ifaces:
                state[k] = before[all_key]
        else:
            kept.append(all_key)
    for k in ifaces:
        if state.get(k) != before[k]:
            writes.append("%s=%s" % (k, before[k]))
    for k in (def_key, "net.ipv6.bindv6only"):
        if k in before and k in now and before[k] != now[k]:
            writes.append("%s=%s" % (k, before[k]))
    return {"writes": writes, "kept": kept}


def kernel_problems(before, now, kept=(), ctx=None):
    host = (ctx or {}).get("host")
    where = "host %s: " % host if host else ""
    return ["%s%s is %s at run time; before the rollout it was %s" % (where, k, now.get(k), v)
            for k, v in sorted((before or {}).items()) if k in (now or {}) and now[k] != v and k not in kept]


# --- the host's state, in one read -------------------------------------------

# The reads behind a host's state, by name (one shell script, see
# dsr_shell): listeners, unix sockets, processes, the run states of the
# services and nginx, and the kernel's IPv6 switches.
STATE_NAMES = ("ss_version", "ss", "ss_unix", "ps", "systemctl", "supervisor", "kernel")
# The reads the state cannot do without. `ss -lxn` only refines the
# unix-socket check, and supervisorctl status exits 3 when a program is
# stopped: its output is read, not its exit code (a program it does not list
# is "unknown").
STATE_REQUIRED = ("ss_version", "ss", "ps", "systemctl", "kernel")


def _split_services(services):
    """The gunicorn services without nginx (it is always read, as systemd's)."""
    return [s for s in services or [] if s["unit"] != NGINX]


def state_commands(services):
    """The commands of STATE_NAMES, in order, for the given services
    ([{unit, manager}]: systemd units and supervisord programs)."""
    own = _split_services(services)
    units = [s["unit"] for s in own if s.get("manager", "systemd") != "supervisor"]
    programs = [s for s in own if s.get("manager") == "supervisor"]
    return [
        ["ss", "-V"],
        ["ss", "-ltnpe"],
        ["ss", "-lxn"],
        ["ps", "-e", "-o", "pid=,ppid="],
        ["systemctl", "show", "-p", "Id,ActiveState,SubState,UnitFileState,LoadState,MainPID"] + units + [NGINX],
        ["supervisorctl", "status"] if programs else ["true"],
        ["sysctl", "-a", "-r", r"^net\.ipv6\.(bindv6only|conf\..*\.disable_ipv6)$"],
    ]


def state_read_problems(by_name, ctx=None):
    """One message per required read that failed, naming host and command."""
    host = (ctx or {}).get("host")
    out = []
    for name in STATE_REQUIRED:
        r = by_name.get(name)
        if r is None:
            out.append("host %s: %s was not read" % (host, name))
        elif r["rc"] != 0:
            out.append("host %s: %s exited %d: %s" % (host, " ".join(r["cmd"]), r["rc"], (r["stderr"] or "").strip()[:300]))
    return out


def host_state(by_name, services):
    """{ss_version, listeners, summary, unix, run_states, kernel} from the
    reads of state_commands (by name): every TCP listener with its owner,
    the listeners as `owner address:port` lines, the run state of each
    service and of nginx, and the kernel's IPv6 switches."""
    from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import parse_ss

    own = _split_services(services)
    systemctl, supervisor = by_name["systemctl"]["stdout"], by_name["supervisor"]["stdout"]
    listeners = listener_owners(parse_ss(by_name["ss"]["stdout"], by_name["ss_version"]["stdout"]),
                                services_now(own, systemctl, supervisor), by_name["ps"]["stdout"])
    return {
        "ss_version": by_name["ss_version"]["stdout"],
        "listeners": listeners,
        "summary": owned_summary(listeners),
        "unix": by_name["ss_unix"]["stdout"],
        "run_states": run_states(own + [{"unit": NGINX, "manager": "systemd"}], systemctl, supervisor),
        "kernel": kernel_values(by_name["kernel"]["stdout"]),
    }
