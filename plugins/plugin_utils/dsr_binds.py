"""Dual-stack bind derivation for gunicorn (filter plugin).

Given a gunicorn service's current bind list and what is true on its host
(net.ipv6.bindv6only, the gunicorn version, interface addresses), compute the
bind list, `reuse_port` and `forwarded_allow_ips` to write so that:

* gunicorn never crashes: `0.0.0.0:P` and `[::]:P` together only where
  bindv6only=1 (two separate sockets) or `reuse_port` is on;
* exposure never widens: 0.0.0.0 gains the IPv6 wildcard, 127.0.0.0/8 gains
  ::1 only, a specific IPv4 address gains the global IPv6 address(es) of its
  own interface (or the host fails), unix sockets and fds stay as they are,
  hostnames become the literal addresses gunicorn really bound;
* IPv4 clients keep working: where a dual socket carries IPv4 the proxy's
  `::ffff:` form (and `::1`) join `forwarded_allow_ips`, so X-Forwarded-Proto
  still counts on gunicorn 19.9 (exact string match) and later.

Two strategies for a wildcard bind (see docs/rules.md, "Bind rules (gunicorn)"):
  separate (default)  keep 0.0.0.0:P, add [::]:P as its own socket. IPv4 peers,
                      logs and proxy trust stay byte-identical. Needs
                      bindv6only=1, or reuse_port (gunicorn >= 19.8) which
                      this sets.
  dual                replace 0.0.0.0:P by [::]:P, one socket for both
                      families (bindv6only=0 only); IPv4 peers appear as
                      ::ffff:a.b.c.d and the proxy trust is widened to match.
"""
from __future__ import annotations

import ipaddress
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - unit tests import without Ansible
    class AnsibleFilterError(Exception):
        pass

STRATEGIES = ("separate", "dual")
REUSE_PORT_SINCE = (19, 8)
# gunicorn trusts ::1 by default from 23.0 on.
FORWARDED_DEFAULT_V6_SINCE = (23, 0)
# forwarded_allow_ips entries are networks (ipaddress.ip_network, a peer
# matches when it is in one) from 24.1.0 (benoitc/gunicorn#3449); before,
# each entry is compared with the peer's address as an exact string, so a
# CIDR entry never matches anything.
FORWARDED_NETWORKS_SINCE = (24, 1)
# A service whose gunicorn version could not be read is planned as the oldest
# release this tool supports, never as the newest: no reuse_port, exact-string
# forwarded_allow_ips, 127.0.0.1 as the only default trusted proxy.
OLDEST_SUPPORTED = (19, 0, 0)


class BindError(AnsibleFilterError):
    """A bind that cannot be understood or migrated safely."""


def _where(ctx):
    ctx = ctx or {}
    parts = []
    for key in ("host", "service", "variable"):
        if ctx.get(key):
            parts.append("%s %s" % (key, ctx[key]))
    return (", ".join(parts) + ": ") if parts else ""


def parse_version(text):
    """'19.9.0' -> (19, 9, 0); None or '' -> None."""
    if not text:
        return None
    nums = re.findall(r"\d+", str(text))
    if not nums:
        raise BindError("cannot read a gunicorn version from %r" % (text,))
    return tuple(int(n) for n in nums[:3])


def parse_bind(text, ctx=None):
    """Parse one gunicorn bind string the way gunicorn's parse_address does.

    Returns a dict: kind (tcp|unix|fd), and for tcp: host (as written, lower
    case), port (int), family (4, 6, or 'name' for a hostname).
    """
    where = _where(ctx)
    if not isinstance(text, str) or not text.strip():
        raise BindError("%sbind %r is not a string of the form HOST:PORT or unix:PATH" % (where, text))
    s = text.strip()
    if re.match(r"unix:(//)?", s):
        path = re.split(r"unix:(//)?", s)[-1]
        if not path:
            raise BindError("%sbind %r names no socket path" % (where, text))
        return {"kind": "unix", "path": path, "text": s}
    if s.startswith("fd://"):
        fd = s[len("fd://"):]
        if not fd.isdigit():
            raise BindError("%sbind %r: fd must be a number" % (where, text))
        return {"kind": "fd", "fd": int(fd), "text": s}
    if s.startswith("tcp://"):
        s = s[len("tcp://"):]
    if "[" in s or "]" in s:
        m = re.match(r"^\[([^\]]*)\](?::(.*))?$", s)
        if not m:
            raise BindError("%sbind %r is malformed: expected [IPV6]:PORT" % (where, text))
        host, port = m.group(1).lower(), m.group(2)
    elif s.count(":") > 1:
        raise BindError("%sbind %r is malformed: an IPv6 address must be written in brackets, as [%s]:PORT"
                        % (where, text, s.rsplit(":", 1)[0]))
    elif ":" in s:
        host, port = s.split(":", 1)
        host = host.lower()
    else:
        host, port = s.lower(), None
    if port is None or port == "":
        if port == "":
            raise BindError("%sbind %r has an empty port" % (where, text))
        port = "8000"  # gunicorn's default port
    if not port.isdigit():
        raise BindError("%sbind %r: port %r is not a number" % (where, text, port))
    port = int(port)
    if not 1 <= port <= 65535:
        raise BindError("%sbind %r: port %d is out of range 1-65535" % (where, text, port))
    if host == "":
        host = "0.0.0.0"
    try:
        addr = ipaddress.ip_address(host)
        family = addr.version
        host = str(addr)
    except ValueError:
        if "[" in s:
            raise BindError("%sbind %r: %r is not an IPv6 address" % (where, text, host))
        if re.match(r"^[0-9.]+$", host) or \
                not re.match(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$", host):
            raise BindError("%sbind %r: %r is neither an IP address nor a host name" % (where, text, host))
        family = "name"
    return {"kind": "tcp", "host": host, "port": port, "family": family, "text": text.strip()}


def format_bind(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _normalise(b):
    if b["kind"] != "tcp":
        return b["text"]
    return format_bind(b["host"], b["port"])


def bind_plan(binds, bindv6only=0, gunicorn_version=None, strategy="separate",
              reuse_port=False, forwarded_allow_ips=None, interfaces=None,
              resolved=None, ctx=None):
    """Compute the dual-stack settings for one gunicorn service.

    binds               current effective bind list (strings)
    bindv6only          effective net.ipv6.bindv6only on the host (0 or 1)
    gunicorn_version    e.g. "19.9.0" (reuse_port support, trust defaults)
    strategy            "separate" or "dual" (wildcard binds only)
    reuse_port          current reuse_port setting of the service
    forwarded_allow_ips current value as gunicorn sees it (None = default)
    interfaces          {ipv4 address: [global ipv6 addresses of its interface]}
    resolved            {hostname: ipv4 address} as the host resolves it
    ctx                 {host, service} for error messages

    Returns a dict with binds (new list), binds_before, reuse_port (bool or
    None when it must stay as it is), forwarded_allow_ips (str or None),
    listeners (what must listen afterwards), changed, notes.
    """
    where = _where(ctx)
    if strategy not in STRATEGIES:
        raise BindError("%sunknown wildcard strategy %r (variable gunicorn_dualstack__wildcard_strategy): "
                        "use one of %s" % (where, strategy, ", ".join(STRATEGIES)))
    try:
        bindv6only = int(bindv6only)
    except (TypeError, ValueError):
        bindv6only = -1
    if bindv6only not in (0, 1):
        raise BindError("%snet.ipv6.bindv6only must be 0 or 1" % where)
    if isinstance(binds, str):
        binds = [binds]
    if not binds:
        binds = ["127.0.0.1:8000"]  # gunicorn's default bind
    version = parse_version(gunicorn_version)
    version_unknown = version is None
    if version_unknown:
        version = OLDEST_SUPPORTED
    interfaces = interfaces or {}
    resolved = resolved or {}
    parsed = [parse_bind(b, ctx) for b in binds]

    # Hostnames: gunicorn binds a name as IPv4 only (benoitc/gunicorn#1719),
    # so the name stands for the IPv4 address the host resolves it to.
    for b in parsed:
        if b["kind"] == "tcp" and b["family"] == "name":
            addr = resolved.get(b["host"])
            if not addr:
                raise BindError("%sbind %r: host name %r does not resolve to an IPv4 address on the host; "
                                "write a literal address" % (where, b["text"], b["host"]))
            b["host"] = str(ipaddress.IPv4Address(addr))
            b["family"] = 4

    existing = set(_normalise(b) for b in parsed)
    out = []
    notes = []
    set_reuse_port = None
    dual_carries_v4 = False
    listeners = []

    def add(text):
        if text not in out:
            out.append(text)

    for b in parsed:
        if b["kind"] != "tcp":
            add(b["text"])
            notes.append("%s stays as it is (not an IP socket)" % b["text"])
            continue
        host, port = b["host"], b["port"]
        addr = ipaddress.ip_address(host)
        if b["family"] == 6:
            add(format_bind(host, port))
            if addr.is_unspecified:
                # gunicorn never sets IPV6_V6ONLY: the kernel default decides.
                if bindv6only == 0 and format_bind("0.0.0.0", port) not in existing:
                    dual_carries_v4 = True
                listeners.append({"address": "::", "port": port, "family": 6, "v6only": bindv6only,
                                  "accepts": [6] if bindv6only else [4, 6]})
            else:
                listeners.append({"address": host, "port": port, "family": 6, "v6only": None, "accepts": [6]})
            continue
        # IPv4
        if addr.is_unspecified:
            v6 = format_bind("::", port)
            if v6 in existing:
                add(format_bind(host, port))
                listeners.append({"address": "0.0.0.0", "port": port, "family": 4, "v6only": None, "accepts": [4]})
                continue
            if strategy == "dual" and bindv6only == 0:
                add(v6)
                dual_carries_v4 = True
                listeners.append({"address": "::", "port": port, "family": 6, "v6only": 0, "accepts": [4, 6]})
                notes.append("0.0.0.0:%d -> [::]:%d: one dual-stack socket; IPv4 peers appear as ::ffff:a.b.c.d"
                             % (port, port))
                continue
            # separate sockets
            if bindv6only == 0 and not reuse_port:
                if version < REUSE_PORT_SINCE:
                    which = ("gunicorn's version could not be read, so it is taken as the oldest supported "
                             "(19.0), which" if version_unknown else "gunicorn %s" % gunicorn_version)
                    raise BindError(
                        "%sbind 0.0.0.0:%d: %s has no reuse_port, and with net.ipv6.bindv6only=0 a "
                        "second [::]:%d socket would crash it; set ipv6_kernel__bindv6only: 1 or "
                        "gunicorn_dualstack__wildcard_strategy: dual" % (where, port, which, port))
                set_reuse_port = True
            add(format_bind(host, port))
            add(v6)
            listeners.append({"address": "0.0.0.0", "port": port, "family": 4, "v6only": None, "accepts": [4]})
            listeners.append({"address": "::", "port": port, "family": 6,
                              "v6only": 1 if bindv6only else 0, "accepts": [6] if bindv6only else [4, 6]})
            continue
        add(format_bind(host, port))
        listeners.append({"address": host, "port": port, "family": 4, "v6only": None, "accepts": [4]})
        if addr.is_loopback:
            add(format_bind("::1", port))
            listeners.append({"address": "::1", "port": port, "family": 6, "v6only": None, "accepts": [6]})
            if host != "127.0.0.1":
                notes.append("%s:%d gains [::1]:%d, the only IPv6 loopback address" % (host, port, port))
            continue
        peers = [a for a in interfaces.get(host, []) if _usable_v6(a)]
        if not peers:
            raise BindError("%sbind %s:%d: the interface that carries %s has no global IPv6 address; "
                            "give it one, or leave this service IPv4-only (gunicorn_dualstack__skip_services)"
                            % (where, host, port, host))
        for a in peers:
            add(format_bind(str(ipaddress.IPv6Address(a)), port))
            listeners.append({"address": str(ipaddress.IPv6Address(a)), "port": port, "family": 6,
                              "v6only": None, "accepts": [6]})

    forwarded, fwd_notes = _forwarded(forwarded_allow_ips, version, dual_carries_v4,
                                      any(ipaddress.ip_address(x["address"]).is_loopback
                                          or ipaddress.ip_address(x["address"]).is_unspecified
                                          for x in listeners if x["family"] == 6))
    notes.extend(fwd_notes)
    before = [_normalise(b) if b["kind"] == "tcp" else b["text"] for b in parsed]
    return {
        "binds_before": list(binds),
        "binds": out,
        "reuse_port": set_reuse_port,
        "forwarded_allow_ips": forwarded,
        "listeners": listeners,
        "changed": out != before or set_reuse_port is not None or forwarded is not None
        or any(b["kind"] == "tcp" and b["text"] != _normalise(b) for b in parsed),
        "notes": notes,
    }


def _usable_v6(a):
    try:
        ip = ipaddress.IPv6Address(a.split("/")[0])
    except ValueError:
        return False
    return not (ip.is_link_local or ip.is_loopback or ip.is_unspecified or ip.is_multicast)


def forwarded_default(version):
    """gunicorn's default forwarded_allow_ips; an unknown version is the oldest."""
    if version is not None and version >= FORWARDED_DEFAULT_V6_SINCE:
        return "127.0.0.1,::1"
    return "127.0.0.1"


def forwarded_networks(version):
    """Whether this gunicorn treats forwarded_allow_ips entries as networks."""
    return version is not None and version >= FORWARDED_NETWORKS_SINCE


def _forwarded(current, version, dual_carries_v4, v6_local_listener):
    """(new forwarded_allow_ips or None when it needs no change, notes).

    Only other spellings of addresses that are already trusted are added:
    a proxy that was trusted over IPv4 stays trusted when it connects through
    a dual socket (::ffff:a.b.c.d) or over IPv6 loopback (::1). A network
    (a.b.c.d/n) gains its IPv4-mapped twin (::ffff:a.b.c.d/96+n) where this
    gunicorn matches networks; where it compares exact strings the entry has
    never matched a peer and is left as written.
    """
    notes = []
    value = current if current not in (None, "") else forwarded_default(version)
    items = [x.strip() for x in str(value).split(",") if x.strip()]
    if "*" in items:
        return None, notes
    nets = forwarded_networks(version)
    extra = []
    for item in items:
        if "/" in item:
            try:
                net = ipaddress.ip_network(item, strict=False)
            except ValueError:
                continue
            if not nets:
                notes.append("forwarded_allow_ips entry %s is a network: this gunicorn compares exact addresses, "
                             "so it matches no peer; left as written" % item)
                continue
            if net.version == 4:
                if dual_carries_v4:
                    extra.append("::ffff:%s/%d" % (net.network_address, 96 + net.prefixlen))
                if net.network_address.is_loopback and v6_local_listener:
                    extra.append("::1")
            continue
        try:
            ip = ipaddress.ip_address(item)
        except ValueError:
            continue  # a name: left as written
        if ip.version == 4:
            if dual_carries_v4:
                extra.append("::ffff:%s" % item)
            if ip.is_loopback and v6_local_listener:
                extra.append("::1")
    new = list(items)
    for e in extra:
        if e not in new and not _covered(e, new, nets):
            new.append(e)
    if new == items:
        return None, notes
    return ",".join(new), notes


def _covered(entry, items, nets):
    """Whether gunicorn already trusts `entry` (an address or network) through `items`."""
    if not nets:
        return False
    try:
        want = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    for item in items:
        try:
            have = ipaddress.ip_network(item, strict=False)
        except ValueError:
            continue
        if have.version == want.version and want.subnet_of(have):
            return True
    return False
