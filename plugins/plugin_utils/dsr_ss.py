"""Parse `ss -ltn[H]e[p]` output into listeners (filter plugin).

The same text means different things on old and new iproute2:

  iproute2 >= 4.13   `*:P` dual-stack IPv6 wildcard (v6only:0),
                     `[::]:P` IPv6-only wildcard, `0.0.0.0:P` IPv4 wildcard,
                     IPv6 addresses in brackets.
  iproute2 <  4.13   `*:P` IPv4 wildcard, `:::P` IPv6 wildcard (dual or not:
                     only the `v6only:` field of -e tells), IPv6 addresses
                     without brackets (`::1:25`). RHEL/CentOS 7 has these.

So the parser needs to know the format: pass `ss -V` output, or it decides
from unambiguous lines (brackets => new, `:::` => old) and refuses to guess
when only `*:P` lines remain.

Each listener: address, port, family (4 or 6), v6only (0, 1 or None when
unknown / not IPv6), accepts (families it takes connections from),
wildcard/loopback flags, interface (for `%iface`), and process names/pids
when -p was given.
"""
from __future__ import annotations

import ipaddress
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass

NEW_FORMAT_SINCE = (4, 13)
NEW_FORMAT_SINCE_SNAPSHOT = 170905  # iproute2-ssYYMMDD of the 4.13 release


class SsParseError(AnsibleFilterError):
    pass


def ss_format(version_text):
    """'new' or 'old' from `ss -V` output; None when it cannot tell."""
    if not version_text:
        return None
    m = re.search(r"iproute2-ss(\d{6})", version_text)
    if m:
        return "new" if int(m.group(1)) >= NEW_FORMAT_SINCE_SNAPSHOT else "old"
    m = re.search(r"iproute2-(?:v)?(\d+)\.(\d+)", version_text)
    if m:
        return "new" if (int(m.group(1)), int(m.group(2))) >= NEW_FORMAT_SINCE else "old"
    return None


# users:(("name",pid=N,fd=N),...) since iproute2 3.14; users:(("name",N,N))
# before (RHEL/CentOS 7's 3.10). A name may hold spaces (setproctitle's
# "gunicorn: maste"), so the field is read from the line, not split words.
_USERS = re.compile(r'users:\((\("(?:[^"\\]|\\.)*",(?:pid=)?\d+,(?:fd=)?\d+\)(?:,\("(?:[^"\\]|\\.)*",(?:pid=)?\d+,(?:fd=)?\d+\))*)\)')
_PROC = re.compile(r'\("((?:[^"\\]|\\.)*)",(?:pid=)?(\d+),(?:fd=)?(\d+)\)')


def _split_addr(local):
    """'[::1]:80' -> ('[::1]', '80'); '127.0.0.53%lo:53' -> ('127.0.0.53%lo', '53')."""
    if ":" not in local:
        raise SsParseError("cannot read a local address:port from %r" % local)
    addr, port = local.rsplit(":", 1)
    return addr, port


def parse_ss(text, version_text=None, fmt=None):
    lines = [l for l in (text or "").splitlines() if l.strip()]
    rows = []
    for line in lines:
        users = _USERS.search(line)
        procs = []
        if users:
            procs = [{"name": n, "pid": int(p), "fd": int(f)} for n, p, f in _PROC.findall(users.group(1))]
            line = line[:users.start()] + " " + line[users.end():]
        fields = line.split()
        if fields[0] in ("State", "Netid"):
            continue  # header (old ss has no -H)
        if fields[0] != "LISTEN" or len(fields) < 5:
            continue
        rows.append((fields, procs))
    fmt = fmt or ss_format(version_text)
    if fmt is None:
        locals_ = [r[0][3] for r in rows]
        if any(l.startswith("[") for l in locals_):
            fmt = "new"
        elif any(l.startswith(":::") or re.match(r"^[0-9a-fA-F]*::", l) for l in locals_):
            fmt = "old"
        elif any(l.startswith("*:") for l in locals_):
            raise SsParseError("ss output has '*:PORT' listeners, which mean the IPv4 wildcard before "
                               "iproute2 4.13 and the dual-stack IPv6 wildcard after; pass the output "
                               "of `ss -V` to tell which")
        else:
            fmt = "new"
    if fmt not in ("new", "old"):
        raise SsParseError("unknown ss format %r" % fmt)

    listeners = []
    for fields, procs in rows:
        local = fields[3]
        rest = fields[5:]
        v6only = None
        cgroup_unit = None
        for item in rest:
            if item.startswith("v6only:"):
                v6only = int(item.split(":", 1)[1])
            elif item.startswith("cgroup:"):
                unit = item.rstrip("/").rsplit("/", 1)[-1]
                if unit.endswith(".service"):
                    cgroup_unit = unit
        addr, port = _split_addr(local)
        iface = None
        if "%" in addr:
            addr, iface = addr.split("%", 1)
        if fmt == "new":
            if addr == "*":
                host, family = "::", 6
                if v6only is None:
                    v6only = 0  # new ss prints '*' only for a dual-stack wildcard
            elif addr.startswith("["):
                host, family = addr[1:-1], 6
            else:
                host, family = addr, 4
        else:
            if addr == "*":
                host, family = "0.0.0.0", 4
            elif ":" in addr:
                host, family = addr, 6
            else:
                host, family = addr, 4
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            raise SsParseError("cannot read the address in %r" % local)
        if not port.isdigit():
            raise SsParseError("cannot read the port in %r" % local)
        if family == 4:
            v6only = None
            accepts = [4]
        elif ip.is_unspecified:
            accepts = [6] if v6only == 1 else ([4, 6] if v6only == 0 else None)
        elif getattr(ip, "ipv4_mapped", None):
            accepts = [4]
        else:
            accepts = [6]
        listeners.append({
            "address": str(ip),
            "port": int(port),
            "family": family,
            "v6only": v6only,
            "accepts": accepts,
            "wildcard": ip.is_unspecified,
            "loopback": ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback),
            "interface": iface,
            "processes": procs,
            "unit": cgroup_unit,
            "raw": local,
        })
    return listeners


def listener_check(actual, expected, ctx=None):
    """Compare expected listeners (from the bind plan) with parsed ss output.

    An expected item matches an actual socket of the same address and port;
    where the expected v6only is 0 or 1 the socket's must be the same. Returns
    a list of problems (empty when all is well).
    """
    problems = []
    for exp in expected:
        same = [a for a in actual if a["port"] == exp["port"]
                and ipaddress.ip_address(a["address"]) == ipaddress.ip_address(exp["address"])]
        where = ("[%s]:%s" if ":" in exp["address"] else "%s:%s") % (exp["address"], exp["port"])
        if not same:
            problems.append("nothing listens on %s" % where)
            continue
        want = exp.get("v6only")
        if want is not None and not any(a["v6only"] == want for a in same):
            problems.append("%s listens with v6only=%s, expected %s"
                            % (where, ",".join(str(a["v6only"]) for a in same), want))
    return problems


def listener_class(l):
    """ipv4 | dual | ipv6 | loopback-ipv4 | loopback-ipv6 for one listener."""
    if l["loopback"]:
        return "loopback-ipv4" if l["family"] == 4 or l["accepts"] == [4] else "loopback-ipv6"
    if l["accepts"] == [4, 6]:
        return "dual"
    if l["family"] == 4 or l["accepts"] == [4]:
        return "ipv4"
    return "ipv6"


def listener_summary(listeners):
    """Sorted, de-duplicated "ADDR:PORT class" strings (for journals and reports)."""
    out = set()
    for l in listeners:
        addr = "[%s]" % l["address"] if l["family"] == 6 else l["address"]
        out.add("%s:%d %s" % (addr, l["port"], listener_class(l)))
    return sorted(out, key=lambda x: (int(x.split(" ")[0].rsplit(":", 1)[1]), x))


MANAGED_PROCESSES = ("gunicorn", "nginx")


def managed_listeners(listeners, ports, units=None, processes=MANAGED_PROCESSES):
    """Listeners on `ports` held by the managed services.

    A rollback must find these exactly as before; another daemon on the same
    port (or Docker's DNS on a random port) is not the rollout's business.
    The owner is known from the socket's systemd unit (`cgroup:` of ss -e,
    readable without ptrace rights) when `units` is given, else from the
    process name (ss -p); a socket whose owner cannot be told is kept.
    """
    ports = set(int(p) for p in ports or [])
    units = set(units or [])
    out = []
    for l in listeners:
        if l["port"] not in ports:
            continue
        if units and l.get("unit"):
            if l["unit"] in units:
                out.append(l)
            continue
        names = [p["name"] for p in l.get("processes") or []]
        if names and not any(n.startswith(processes) for n in names):
            continue
        out.append(l)
    return out


def verify_targets(gunicorn_plans, nginx_plan=None):
    """What listener_verify must check, from the gunicorn and nginx plans."""
    expected, public, private, nginx_ports = [], [], [], []
    for item in gunicorn_plans or []:
        for l in item["plan"]["listeners"]:
            expected.append({"address": l["address"], "port": l["port"], "v6only": l["v6only"]})
            ip = ipaddress.ip_address(l["address"])
            bucket = public if ip.is_unspecified else (private if ip.is_loopback else None)
            if bucket is not None and l["port"] not in bucket:
                bucket.append(l["port"])
    for l in (nginx_plan or {}).get("listens", []):
        expected.append({"address": l["address"], "port": l["port"], "v6only": l.get("v6only")})
        if ipaddress.ip_address(l["address"]).is_unspecified and l["port"] not in nginx_ports and not l.get("tls"):
            nginx_ports.append(l["port"])
    private = [p for p in private if p not in public]
    return {"expected": expected, "public_ports": public, "private_ports": private, "nginx_ports": nginx_ports}
