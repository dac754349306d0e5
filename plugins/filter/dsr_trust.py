"""Trust follows the hop: plan the IPv6 twin of every address-based rule that
names the balancer (filter plugin; issue 19, see docs/trust.md).

When the balancer reaches an app host over IPv6, every rule on that host that
recognised the balancer by its IPv4 address stops matching: nginx's realip
no longer trusts it (logs, rate limits and the app see the balancer as the
client), `allow`/`deny` answer 403, geo blocks give the default value, and
gunicorn ignores X-Forwarded-Proto. This plugin finds those rules and plans
their IPv6 counterparts.

Functions (the filters the playbooks use are marked with theirs)
  route_source(text)                the `src` of `ip -6 route get ADDR` (or
                                    `ip -4 route get`, either in text or -j
                                    JSON) run on the balancer: the address
                                    it really uses toward ADDR. Raises when
                                    the output names no usable source.
  trust_plan(files, balancer, services=None, ctx=None)   the plan
  host_trust(files, listen_plan, balancer, services=None, ctx=None)
                                    dsr_host_trust, preflight's view: the
                                    trust plan on top of dsr_nginx_plan's
                                    listen plan, and that plan with the
                                    twins merged in
  rule_line(rule), gunicorn_line(entry)   dsr_trust_rule_line,
                                    dsr_trust_gunicorn_line: one line each
                                    for preflight's output and the journal
  trust_rules(files, lb_ipv4s, lb_ipv6s, ctx=None)   dsr_trust_rules, the
                                    audit view

Inputs
  files     what dsr_nginx_plan takes: dsr_read_files' `files` list
            ({path, real_path, content (base64)}) or {path: text}.
  balancer  one dict, or a list of them (an HA pair), read ON THE BALANCER:
              route      stdout of `ip -6 route get <app host IPv6>`
              addresses  stdout of `ip -o addr show` (or `ip -j addr show`)
              route4     optional: stdout of `ip -4 route get <app host IPv4>`
              ipv4       optional: list of the balancer's IPv4 addresses as the
                         app host sees them (a NAT address, a VIP)
              name       optional, for messages
              why        optional, with no route: why there is no route
                         to read (the reason S is unknown in messages)
            The balancer's IPv4 addresses are `ipv4` plus route4's source;
            when neither is given, every global IPv4 address of `addresses`.
  services  gunicorn services as plugins/modules/gunicorn_services.py
            returns them (unit, version, version_known, forwarded_allow_ips,
            forwarded_allow_ips_source).
  ctx       {host: for messages, prefix: nginx's configuration prefix}.

Counterparts (for each balancer, from its route source S toward this host)
  a rule naming one of the balancer's IPv4 addresses    -> S (a single address)
  a rule naming an IPv4 network that contains it        -> S's on-link prefix
      (from the balancer's own address list: the prefix length of the
      interface address S), or S alone when that address is a /128 or is not
      listed; the plan's notes say which
  IPv4-mapped forms (::ffff:a.b.c.d[/n]) count as the IPv4 they map.

Rules (nginx, in http and stream)
  set_real_ip_from            twin `set_real_ip_from C;` (a hostname, which
                              nginx resolves when it loads, is a problem when
                              no address entry of the same list names the
                              balancer)
  allow / deny                at http, server, location and limit_except
                              level: twin `allow C;` / `deny C;` (a deny is
                              twinned too: the balancer keeps the outcome it
                              has today in both families)
  geo blocks keyed on the     twin each entry (`C value;`) and each `proxy`;
  client address              a `ranges` geo naming the balancer is a problem
  ($remote_addr, the default, (nginx's ranges are IPv4 only). A geo keyed on
  or $realip_remote_addr)     anything else ($http_x_forwarded_for, $arg_ip)
                              is not about the hop: listed, never changed.
  real_ip_header              reported in every rule's context: allow/deny and
                              geo on $remote_addr in a context where realip
                              trusts the balancer judge the client's address
                              from that header, not the balancer's.
A twin goes on its own line right after the rule with the rule's indentation
and the file's line endings (on the same line, after the `;`, when another
statement follows on that line, so the order of first-match lists is kept),
and is not added where the same list already has it. A rule in a file that
several blocks include is edited once. After the twins, every list is
evaluated again as nginx does (allow/deny: first match, an empty list allows;
realip: any entry; geo: most specific network, else default): when the
balancer's IPv6 source would get another outcome than its IPv4 address gets
today, the host stays on IPv4 (a problem naming file and line).

gunicorn forwarded_allow_ips (None = the version's default: 127.0.0.1 up to
22, 127.0.0.1,::1 from 23): an entry naming the balancer's IPv4 gains S; an
IPv4 network containing it gains S's prefix (or S) where gunicorn matches
networks (24.1.0 on, benoitc/gunicorn#3449; gunicorn checks them with
ipaddress.ip_network in strict mode, so the network address is written).
Older versions compare the peer's address as an exact string: a network
entry never matched the balancer, so nothing is added there (a note), and
only single addresses are ever added. `*` trusts every peer already.

Output of trust_plan
  {"files": {real_path: {"content", "added": [lines], "changed"}},
   "rules": [{file, line, directive, value, balancer (its name or IPv4
              address, None when not about the balancer), counterpart (the
              IPv6 twin, None), action (add|present|none|problem), context:
              {block, key (geo), real_ip_header, realip_trusts_balancer},
              added: [twin lines] when action is add}],
   "gunicorn": [{unit, value, before, add, source}]  (only services that
              change; value is the new forwarded_allow_ips, written by
              dsr_gunicorn; add: the entries appended to the current value,
              to append in turn to the value a bind plan computes when
              that plan changes forwarded_allow_ips too),
   "problems": [...], "notes": [...], "changed": bool,
   "ipv6_upstream_ok": bool (False when any problem: keep the IPv4 upstream)}
With problems, `files` still carries the twins that could be planned: they
change nothing for IPv4 traffic.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import re


try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass

# dsr_nginx's reader, include resolution and byte-exact insertion are reused
# as they are; _Walk, _Edits and _indent are private there (imported anyway:
# one reading of nginx's configuration for every plan).
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_nginx import _Edits, _indent, _inputs, _resolve, _Walk
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_addresses import ip_addresses, usable
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import forwarded_default, forwarded_networks, parse_version

try:
    from crossplane.analyzer import enter_block_ctx
except ImportError:  # pragma: no cover  (dsr_nginx says how to install it)
    enter_block_ctx = None

REALIP = "set_real_ip_from"
ACCESS = ("allow", "deny")
# geo keys that are the connection's (or realip's) client address
GEO_CLIENT_KEYS = ("$remote_addr", "$realip_remote_addr")
# blocks whose lines are table entries, not directives (a map key may read `allow`)
TABLES = ("map", "types", "split_clients", "charset_map", "match")
GEO_KEYWORDS = ("default", "include", "proxy", "proxy_recursive", "ranges", "delete")
ROUTE_TYPES = ("unicast", "local", "broadcast", "multicast", "anycast", "unreachable", "prohibit", "blackhole",
               "throw", "nat")


class TrustError(AnsibleFilterError):
    pass


# -- the balancer's source address ---------------------------------------------

def route_get(text):
    """`ip route get` output (text of any iproute2 release, or -j JSON) ->
    {type, dst, src, dev, via}; raises TrustError when it names no source."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    s = (text or "").strip()
    if not s:
        raise TrustError("ip route get printed nothing: run it on the balancer with the app host's address")
    if "RTNETLINK answers" in s or s.startswith("Error"):
        raise TrustError("ip route get failed on the balancer: %s" % s.splitlines()[0])
    if s[0] in "[{":
        try:
            data = json.loads(s)
        except ValueError as e:
            raise TrustError("ip -j route get printed invalid JSON (%s)" % e)
        r = data[0] if isinstance(data, list) and data else data
        out = {"type": r.get("type", "unicast"), "dst": r.get("dst"), "src": r.get("prefsrc"),
               "dev": r.get("dev"), "via": r.get("gateway")}
    else:
        words = []
        for line in s.splitlines():
            if line.strip() == "cache" or line.strip().startswith("cache "):
                continue  # old iproute2: a second line `    cache ` (with flags)
            words.extend(line.split())
        kind = words.pop(0) if words and words[0] in ROUTE_TYPES else "unicast"
        out = {"type": kind, "dst": words[0] if words else None, "src": None, "dev": None, "via": None}
        for key, value in zip(words[1:], words[2:]):
            if key in ("src", "dev", "via") and out[key] is None:
                out[key] = value
        if "error" in words and words[words.index("error") + 1:words.index("error") + 2] not in (["0"], []):
            out["type"] = "unreachable"
    if out["type"] not in ("unicast", "local"):
        raise TrustError("ip route get: the balancer has no usable route to %s (%s)" % (out["dst"], out["type"]))
    if out["type"] == "local":
        raise TrustError("ip route get: %s is the balancer's own address, not the app host's" % out["dst"])
    if not out["src"]:
        raise TrustError("ip route get: no source address toward %s (the balancer has no address of that family "
                         "to use): %s" % (out["dst"], s.splitlines()[0]))
    src = ipaddress.ip_address(out["src"].split("%")[0])
    if src.version == 6 and src.is_link_local:
        raise TrustError("ip route get: the source toward %s is link-local (%s): the app host needs a global or "
                         "unique local IPv6 address on the balancer's network" % (out["dst"], src))
    out["src"] = str(src)
    return out


def route_source(text):
    """The source address the balancer uses toward the address it was asked about."""
    return route_get(text)["src"]


def _balancers(balancer):
    """-> [{name, ipv4: [..], ipv6: S or None, prefix: S's on-link network or None,
    why: the reason S is unknown, why4: the reason route4 could not be read}]."""
    out = []
    for b in (balancer if isinstance(balancer, (list, tuple)) else [balancer or {}]):
        links = ip_addresses(b.get("addresses"))
        ipv4 = [str(ipaddress.IPv4Address(a)) for a in (b.get("ipv4") or [])]
        why4 = None
        if b.get("route4"):
            try:
                src4 = route_source(b["route4"])
                if src4 not in ipv4:
                    ipv4.insert(0, src4)
            except TrustError as e:
                why4 = str(e)
        if not ipv4 and not why4:
            ipv4 = [a["local"] for link in links for a in link["addr_info"]
                    if a["family"] == "inet" and a["scope"] == "global" and usable(a)]
        item = {"name": b.get("name") or (ipv4[0] if ipv4 else "balancer"), "ipv4": ipv4, "ipv6": None,
                "prefix": None, "why": None, "why4": why4}
        try:
            if not (b.get("route") or "").strip() and b.get("why"):
                # the caller knows why there is no route to ask about (the
                # app host has no global IPv6 address yet)
                raise TrustError(b["why"])
            src = route_source(b.get("route"))
            if ipaddress.ip_address(src).version != 6:
                raise TrustError("ip route get printed an IPv4 route: run `ip -6 route get <app host IPv6>`")
            item["ipv6"] = src
        except (TrustError, ValueError) as e:
            item["why"] = str(e)
        for link in links:
            for a in link["addr_info"]:
                if item["ipv6"] and a["family"] == "inet6" and a["local"] == item["ipv6"] and a["prefixlen"] < 128:
                    item["prefix"] = str(ipaddress.ip_network("%s/%d" % (a["local"], a["prefixlen"]), strict=False))
        out.append(item)
    return out


# -- addresses in rules ----------------------------------------------------------

def _net(value):
    """An address or network as written in a rule -> ip_network (IPv4-mapped
    IPv6 as the IPv4 it maps), or None (all, unix:, a name)."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    if net.version == 6 and net.prefixlen >= 96 and net.network_address.ipv4_mapped is not None:
        return ipaddress.ip_network("%s/%d" % (net.network_address.ipv4_mapped, net.prefixlen - 96), strict=False)
    return net


def _matches(value, address):
    """Whether a rule's value matches the peer address (nginx's `all` matches every peer)."""
    if value == "all":
        return True
    net = _net(value)
    ip = ipaddress.ip_address(address)
    return net is not None and net.version == ip.version and ip in net


def _counterpart(value, b):
    """(counterpart or None, how) of a rule value for balancer b; how is
    'address', 'prefix', 'single' (a network twinned as S alone) or None when
    the rule does not name b."""
    net = _net(value)
    if net is None or net.version != 4 or not any(ipaddress.IPv4Address(a) in net for a in b["ipv4"]):
        return None, None
    if net.prefixlen == 32:
        return b["ipv6"], "address"
    if b["prefix"]:
        return b["prefix"], "prefix"
    return b["ipv6"], "single"


def _covered(counterpart, values):
    want = ipaddress.ip_network(counterpart)
    for v in values:
        have = _net(v)
        if have is not None and have.version == 6 and want.subnet_of(have):
            return True
    return False


# -- walking nginx's configuration ---------------------------------------------------

class _TrustWalk(_Walk):
    """dsr_nginx's reading (files, includes, errors) with its own traversal:
    blocks with the address rules they hold, includes expanded in place."""

    def run(self):
        self.blocks = []
        for path in self.roots():
            ctx = ("http",) if self._bare(path) else ()
            self.block(None, path, [(s, path) for s in self.trees[path]], ctx, (path,), None, "main")

    def flat(self, items, ctx, chain):
        """A block's statements with its includes expanded in place: [(stmt, path, chain)]."""
        out = []
        for s, path in items:
            if s["directive"] == "include" and s["args"]:
                for t in _resolve(s["args"][0], self.prefix, self.trees) or []:
                    if t in chain:
                        self.problems.append("%s%s line %d: include %s includes itself"
                                             % (self.where, self.real[path], s["line"], s["args"][0]))
                        continue
                    out.extend(self.flat([(x, t) for x in self.trees[t]], ctx, chain + (t,)))
                continue
            out.append((s, path, chain))
        return out

    def block(self, stmt, path, items, ctx, chain, parent, label):
        node = {"stmt": stmt, "path": path, "ctx": ctx, "label": label, "parent": parent,
                "items": self.flat(items, ctx, chain)}
        self.blocks.append(node)
        for s, path, ch in node["items"]:
            if "block" not in s:
                continue
            inner = enter_block_ctx(s, ctx)
            name = " ".join([s["directive"]] + s["args"])
            self.block(s, path, [(x, path) for x in s["block"]], inner, ch, node,
                       "%s (%s line %d)" % (name, self.real[path], s["line"]))
        return node


def _geo_key(stmt):
    """(key variable, whether it is the client address) of a geo block."""
    args = stmt["args"]
    key = args[0] if len(args) == 2 else "$remote_addr"
    return key, key in GEO_CLIENT_KEYS


def _own(node, names):
    return [(s, p) for s, p, _chain in node["items"] if s["directive"] in names and "block" not in s]


def _effective(node, names, inherited_by=("http", "server", "location", "limit_except", "stream")):
    """The rules of `names` in force in a block: its own, else its parent's (nginx's merge of these arrays)."""
    while node is not None:
        own = _own(node, names)
        if own or not node["ctx"] or node["ctx"][-1] not in inherited_by:
            return own, node
        node = node["parent"]
    return [], None


def _real_ip_header(node):
    while node is not None:
        own = _own(node, ("real_ip_header",))
        if own:
            return own[-1][0]["args"][0] if own[-1][0]["args"] else None
        node = node["parent"]
    return None


# -- the plan ------------------------------------------------------------------

class _Plan(object):
    def __init__(self, files, balancer, ctx):
        ctx = ctx or {}
        self.where = "host %s: " % ctx["host"] if ctx.get("host") else ""
        self.inputs = _inputs(files)
        prefix = ctx.get("prefix")
        if not prefix:
            mains = [p for p, _real, _text in self.inputs if os.path.basename(p) == "nginx.conf"]
            prefix = os.path.dirname(mains[0]) + "/" if mains and "/" in mains[0] else "/etc/nginx/"
        self.w = _TrustWalk(self.inputs, prefix if prefix.endswith("/") else prefix + "/", self.where)
        self.w.run()
        self.lbs = _balancers(balancer)
        self.problems, self.notes, self.rules = list(self.w.problems), [], []
        self.edits = _Edits(self.w.texts)
        self.done = {}

    def record(self, stmt, path, directive, value, ctx, siblings):
        entry = {"file": self.w.real[path], "line": stmt["line"], "directive": directive, "value": value,
                 "balancer": None, "counterpart": None, "action": "none", "context": ctx, "list": siblings}
        self.rules.append(entry)
        return entry

    def at(self, stmt, path):
        return "%s%s line %d" % (self.where, self.w.real[path], stmt["line"])

    def context(self, node, key=None):
        realip, _found_in = _effective(node, (REALIP,))
        trusts = any(_matches(r["args"][0], a) for r, _path in realip if r["args"] for b in self.lbs for a in b["ipv4"])
        out = {"block": node["label"], "real_ip_header": (_real_ip_header(node) or "X-Real-IP") if realip else None,
               "realip_trusts_balancer": trusts}
        if key:
            out["key"] = key
        return out

    def rule(self, stmt, path, directive, value, ctx, siblings, twin_text):
        """Record a rule, and plan its twins for each balancer it names."""
        real = self.w.real[path]
        k = (real, stmt["end"])
        if k in self.done:
            return self.done[k]
        named = [(b,) + _counterpart(value, b) for b in self.lbs]
        named = [x for x in named if x[2]]
        entry = self.record(stmt, path, directive, value, ctx, siblings)
        self.done[k] = entry
        lines = []
        for b, c, how in named:
            entry["balancer"] = b["name"]
            if not b["ipv6"]:
                entry["action"] = "problem"
                self.problems.append("%s: %s %s names the balancer %s, whose IPv6 source toward this host is "
                                     "unknown (%s): keep this host on its IPv4 upstream"
                                     % (self.at(stmt, path), directive, value, b["name"], b["why"]))
                continue
            entry["counterpart"] = c
            if _covered(c, siblings):
                entry["action"] = "present" if entry["action"] == "none" else entry["action"]
                continue
            if how == "single":
                self.notes.append("%s: %s %s is a network; the balancer's IPv6 source %s is not listed with an "
                                  "on-link prefix in its addresses, so the twin is that single address"
                                  % (self.at(stmt, path), directive, value, c))
            elif how == "prefix":
                self.notes.append("%s: %s %s is a network; its twin is the on-link prefix %s of the balancer's "
                                  "IPv6 source %s" % (self.at(stmt, path), directive, value, c, b["ipv6"]))
            entry["action"] = "add"
            lines.append(twin_text(c))
            siblings.append(c)
        if lines:
            text = self.w.texts[real]
            base, line_start = _indent(text, stmt["start"] if stmt["start"] is not None else stmt["end"])
            first = stmt["start"] is not None and not text[line_start:stmt["start"]].strip()
            self.edits.after(real, stmt["end"], lines, base if first else base + "    ")
            entry["added"] = lines
        return entry

    # -- per kind of rule

    def realip(self, node):
        own = _own(node, (REALIP,))
        values = [s["args"][0] for s, _path in own if s["args"]]
        named = False
        for s, path in own:
            if not s["args"]:
                continue
            v = s["args"][0]
            if v.startswith("unix:"):
                self.record(s, path, REALIP, v, self.context(node), values)
                continue
            e = self.rule(s, path, REALIP, v, self.context(node), values, lambda c: "%s %s;" % (REALIP, c))
            named = named or e["balancer"] is not None
        for s, path in own:
            v = s["args"][0] if s["args"] else ""
            if v and not v.startswith("unix:") and _net(v) is None:
                msg = ("%s: set_real_ip_from %s is a name, which nginx resolves when it loads its configuration; "
                       "whether it names the balancer cannot be told from here" % (self.at(s, path), v))
                if named:
                    self.notes.append(msg + " (the list names the balancer by address too)")
                else:
                    self.problems.append(msg + ": write its addresses, or keep this host on its IPv4 upstream")

    def access(self, node):
        own = _own(node, ACCESS)
        values = dict((d, [s["args"][0] for s, _path in own if s["directive"] == d and s["args"]]) for d in ACCESS)
        for s, path in own:
            d = s["directive"]
            if s["args"]:
                self.rule(s, path, d, s["args"][0], self.context(node), values[d], lambda c, d=d: "%s %s;" % (d, c))

    def geo(self, node):
        stmt = node["stmt"]
        key, client = _geo_key(stmt)
        ctx = self.context(node["parent"], key=key)
        ctx["block"] = node["label"]
        entries = [(s, p) for s, p, _chain in node["items"]]
        ranges = any(s["directive"] == "ranges" for s, _path in entries)
        by_value = {}
        for s, p in entries:
            if s["directive"] not in GEO_KEYWORDS:
                by_value.setdefault(tuple(s["args"]), []).append(s["directive"])
        proxies = [s["args"][0] for s, _path in entries if s["directive"] == "proxy" and s["args"]]
        for s, path in entries:
            d = s["directive"]
            if d == "proxy" and s["args"]:
                value, siblings = s["args"][0], proxies
            elif d not in GEO_KEYWORDS:
                value, siblings = d, by_value[tuple(s["args"])]
            else:
                continue
            if not client:
                self.record(s, path, "geo" if d != "proxy" else "geo proxy", value, ctx, siblings)
                continue
            if ranges and d != "proxy":
                self._geo_range(s, path, value, ctx, siblings)
                continue
            text = self.w.texts[self.w.real[path]]
            rest = text[s["start"] + len(d):s["end"] + 1] if s["start"] is not None else " %s;" % " ".join(s["args"])
            self.rule(s, path, "geo" if d != "proxy" else "geo proxy", value, ctx, siblings,
                      (lambda c, r=rest: c + r) if d != "proxy" else (lambda c: "proxy %s;" % c))
        if client and not ranges:
            self._geo_check(node, entries)
        if not client:
            self.notes.append("%s: geo %s is keyed on %s, not on the client's address: not about the balancer's "
                              "hop, left as it is" % (self.at(stmt, node["path"]), " ".join(stmt["args"]), key))

    def _geo_range(self, s, path, value, ctx, siblings):
        lo, _dash, hi = value.partition("-")
        entry = self.record(s, path, "geo", value, ctx, siblings)
        try:
            lo, hi = ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi or lo)
        except ValueError:
            return
        for b in self.lbs:
            if any(lo <= ipaddress.IPv4Address(a) <= hi for a in b["ipv4"]):
                entry.update(balancer=b["name"], action="problem")
                self.problems.append("%s: geo range %s contains the balancer %s, and nginx's geo `ranges` take IPv4 "
                                     "only: keep this host on its IPv4 upstream, or rewrite the geo without ranges"
                                     % (self.at(s, path), value, b["name"]))

    def _geo_check(self, node, entries):
        """geo's answer (most specific network, else default) for the balancer's
        IPv4 today and for its IPv6 source with the twins."""
        default = ""
        table = []
        for s, path in entries:
            d = s["directive"]
            if d == "default" and s["args"]:
                default = s["args"][0]
            elif d not in GEO_KEYWORDS and _net(d) is not None:
                table.append((_net(d), " ".join(s["args"])))
                e = self.done.get((self.w.real[path], s["end"]))
                for line in (e or {}).get("added", []):
                    table.append((ipaddress.ip_network(line.split()[0]), " ".join(s["args"])))

        def value(address):
            ip = ipaddress.ip_address(address)
            hits = [(n.prefixlen, v) for n, v in table if n.version == ip.version and ip in n]
            return max(hits)[1] if hits else default
        for b in self.lbs:
            if b["ipv6"] and b["ipv4"] and value(b["ipv4"][0]) != value(b["ipv6"]):
                self.problems.append(
                    "%s: %s gives the balancer's IPv4 %s the value %r but its IPv6 source %s the value %r: keep "
                    "this host on its IPv4 upstream until the geo agrees"
                    % (self.at(node["stmt"], node["path"]), node["label"], b["ipv4"][0], value(b["ipv4"][0]),
                       b["ipv6"], value(b["ipv6"])))

    # -- evaluation after the twins

    def check(self):
        """Every allow/deny, realip and geo list gives the balancer's IPv6 source
        the outcome its IPv4 address gets today."""
        seen = set()
        for node in self.w.blocks:
            if node["stmt"] is not None and node["stmt"]["directive"] in ("geo",) + TABLES:
                continue
            for names, kind in ((ACCESS, "access"), ((REALIP,), "realip")):
                own, where = _effective(node, names)
                if not own or id(where) in seen:
                    continue
                seen.add(id(where))
                for b in self.lbs:
                    if not b["ipv6"] or not b["ipv4"]:
                        continue
                    before = self._outcome(own, kind, b["ipv4"][0], planned=False)
                    after = self._outcome(own, kind, b["ipv6"], planned=True)
                    if before != after:
                        s, path = own[0]
                        self.problems.append(
                            "%s: the %s rules of %s give the balancer's IPv4 %s %s but its IPv6 source %s %s: keep "
                            "this host on its IPv4 upstream until the rules agree"
                            % (self.at(s, path), "allow/deny" if kind == "access" else "set_real_ip_from",
                               where["label"], b["ipv4"][0], before, b["ipv6"], after))

    def _outcome(self, own, kind, address, planned):
        values = []
        for s, path in own:
            if not s["args"]:
                continue
            values.append((s["directive"], s["args"][0]))
            e = self.done.get((self.w.real[path], s["end"]))
            if planned and e and e.get("added"):
                values.extend((s["directive"], line.split()[1].rstrip(";")) for line in e["added"])
        if kind == "realip":
            return "trusted" if any(_matches(v, address) for _directive, v in values) else "untrusted"
        for d, v in values:
            if _matches(v, address):
                return d
        return "allow"

    def run(self):
        for node in self.w.blocks:
            kind = node["stmt"]["directive"] if node["stmt"] is not None else None
            if kind == "geo":
                self.geo(node)
            elif kind not in TABLES:
                self.realip(node)
                self.access(node)
        self.check()


def _gunicorn(services, lbs, where):
    out, problems, notes = [], [], []
    for svc in services or []:
        version = None if svc.get("version_known") is False else parse_version(svc.get("version"))
        current = svc.get("forwarded_allow_ips")
        if isinstance(current, (list, tuple)):
            current = ",".join(current)
        value = current if current not in (None, "") else forwarded_default(version)
        items = [x.strip() for x in str(value).split(",") if x.strip()]
        nets = forwarded_networks(version)
        unit = svc.get("unit")
        if "*" in items:
            continue
        new = list(items)
        for item in items:
            for b in lbs:
                c, how = _counterpart(item, b)
                if how is None:
                    continue
                if "/" in item and not nets:
                    notes.append("%sservice %s: forwarded_allow_ips entry %s is a network and this gunicorn (%s) "
                                 "compares exact addresses: it never trusted the balancer, so nothing is added"
                                 % (where, unit, item, svc.get("version") or "version unknown"))
                    continue
                if not b["ipv6"]:
                    problems.append("%sservice %s: forwarded_allow_ips entry %s names the balancer %s, whose IPv6 "
                                    "source toward this host is unknown (%s): keep this host on its IPv4 upstream"
                                    % (where, unit, item, b["name"], b["why"]))
                    continue
                if (c in new) or (nets and _covered(c, new)):
                    continue
                new.append(c)
        if new != items:
            out.append({"unit": unit, "value": ",".join(new), "before": current, "add": new[len(items):],
                        "source": svc.get("forwarded_allow_ips_source")})
    return out, problems, notes


def trust_plan(files, balancer, services=None, ctx=None):
    """Plan the IPv6 twins of the rules that trust the balancer (see the module's doc)."""
    p = _Plan(files or [], balancer, ctx)
    p.run()
    for b in p.lbs:
        if b["why4"]:
            p.problems.append("%sthe balancer %s: its IPv4 source toward this host is unknown (%s)"
                              % (p.where, b["name"], b["why4"]))
        elif not b["ipv4"]:
            p.problems.append("%sthe balancer %s: its IPv4 addresses are unknown, so the rules that trust it cannot "
                              "be found; give its `ip -o addr show` output, `ipv4` or `route4`" % (p.where, b["name"]))
    gunicorn, gproblems, gnotes = _gunicorn(services, p.lbs, p.where)
    rules = [dict((k, v) for k, v in r.items() if k != "list") for r in p.rules]
    result = {"files": {}, "rules": rules, "gunicorn": gunicorn, "problems": p.problems + gproblems,
              "notes": p.notes + gnotes, "changed": bool(gunicorn)}
    for path, real, text in p.inputs:
        if real in result["files"]:
            continue
        new, lines = p.edits.apply(real, text)
        if new != text and re.search("[\udc80-\udcff]", text):
            result["problems"].append("%s%s: not UTF-8 text; add these lines by hand (%s)"
                                      % (p.where, real, "; ".join(lines)))
            new, lines = text, []
        result["files"][real] = {"content": new, "added": lines, "changed": new != text}
        result["changed"] = result["changed"] or new != text
    result["ipv6_upstream_ok"] = not result["problems"]
    return result


def host_trust(files, listen_plan, balancer, services=None, ctx=None):
    """The trust plan on top of dsr_nginx_plan's listen plan, for preflight.

    The twins are added to the text the listen plan leaves, so one write, one
    snapshot and one restore carry both edits; the rules and messages name
    the lines of the files as they are on the host. Returns {"trust": trust_plan's result, "nginx": the
    listen plan with the twins merged into its files (`added` lists both
    kinds of line, `changed` is true when either plan changes the file)}.
    """
    listen = dict(listen_plan or {})
    planned = listen.get("files") or {}
    inputs = []
    for path, real, text in _inputs(files):
        if real in planned and planned[real].get("changed"):
            text = planned[real]["content"]
        inputs.append({"path": path, "real_path": real,
                       "content": base64.b64encode(text.encode("utf-8", "surrogateescape")).decode("ascii")})
    # Rules, problems and notes name the lines of the files as they are on
    # the host; the twins go into the text the listen plan leaves.
    trust = trust_plan(files, balancer, services, ctx)
    composed = trust_plan(inputs, balancer, services, ctx)["files"]
    trust["files"] = composed
    merged = dict(planned)
    for real, f in composed.items():
        if f["changed"]:
            before = planned.get(real) or {"added": []}
            merged[real] = {"content": f["content"], "added": list(before.get("added") or []) + f["added"],
                            "changed": True}
    listen["files"] = merged
    listen["changed"] = bool(listen.get("changed")) or any(f["changed"] for f in trust["files"].values())
    return {"trust": trust, "nginx": listen}


def rule_line(rule):
    """One rule of the plan as preflight and the journal show it."""
    head = "%s:%s %s %s" % (rule["file"], rule["line"], rule["directive"], rule["value"])
    if rule["action"] == "add":
        return "%s: gains %s" % (head, " ".join(rule.get("added") or [rule["counterpart"]]))
    if rule["action"] == "present":
        return "%s: its twin %s is there already" % (head, rule["counterpart"])
    if rule["action"] == "problem":
        return "%s: no safe IPv6 twin" % head
    return "%s: not about the balancer's hop" % head


def gunicorn_line(entry):
    """One gunicorn service whose forwarded_allow_ips gains the balancer's source."""
    return "%s forwarded_allow_ips %s: gains %s" % (entry["unit"], entry["before"] or "(gunicorn's default)",
                                                    ",".join(entry["add"]))


def trust_rules(files, lb_ipv4s, lb_ipv6s, ctx=None, services=None):
    """Every address-based rule on the host: [{file, line, directive, value,
    context, ipv4, ipv6, both}]. ipv4 / ipv6: whether the balancer's IPv4 /
    IPv6 address is matched by the rule (when the rule names the balancer:
    by the rule's list, i.e. the same directive in the same block, for geo
    the entries with the same value); both: the rule names the balancer and
    its list covers both families. A rule that names neither is listed with
    both False: it is not about the balancer. With `services`
    (gunicorn_services' list), each forwarded_allow_ips that names the
    balancer is listed too (file: the unit, line: None), matched as that
    gunicorn version matches peers (exact strings before 24.1.0)."""
    v4 = [str(ipaddress.ip_address(a)) for a in (lb_ipv4s or [])]
    v6 = [str(ipaddress.ip_address(a)) for a in (lb_ipv6s or [])]
    p = _Plan(files or [], {"ipv4": v4}, ctx)  # no route: nothing is planned, the lists are read
    p.run()
    out = []
    for r in p.rules:
        names = any(_matches(r["value"], a) for a in v4 + v6)
        values = r["list"] if names else [r["value"]]
        fam4 = any(_matches(v, a) for v in values for a in v4)
        fam6 = any(_matches(v, a) for v in values for a in v6)
        out.append({"file": r["file"], "line": r["line"], "directive": r["directive"], "value": r["value"],
                    "context": r["context"], "ipv4": fam4, "ipv6": fam6, "both": names and fam4 and fam6})
    for svc in services or []:
        value = svc.get("forwarded_allow_ips")
        if isinstance(value, (list, tuple)):
            value = ",".join(value)
        version = None if svc.get("version_known") is False else parse_version(svc.get("version"))
        items = [x.strip() for x in str(value if value not in (None, "") else forwarded_default(version)).split(",")
                 if x.strip()]
        nets = forwarded_networks(version)

        def trusted(a):
            if "*" in items:
                return True
            for x in items:
                if nets and "/" in x:
                    if _matches(x, a):
                        return True
                elif x == a or (_net(x) is not None and "/" not in x and _net(x).network_address ==
                                ipaddress.ip_address(a)):
                    return True
            return False
        fam4 = any(trusted(a) for a in v4)
        fam6 = any(trusted(a) for a in v6)
        if fam4 or fam6:
            out.append({"file": svc.get("unit"), "line": None, "directive": "forwarded_allow_ips", "value": value,
                        "context": {"source": svc.get("forwarded_allow_ips_source")}, "ipv4": fam4, "ipv6": fam6,
                        "both": fam4 and fam6})
    return out


class FilterModule(object):
    # What the playbooks use; trust_plan and route_source are their parts.
    def filters(self):
        return {
            "dsr_host_trust": host_trust,
            "dsr_trust_rule_line": rule_line,
            "dsr_trust_gunicorn_line": gunicorn_line,
            "dsr_trust_rules": trust_rules,
        }
