"""Does a dual-stack migration open a port to IPv6 wider than IPv4 filtering does? (filter plugin)

Reads the host's input filtering for each family, from `iptables-save -t
filter` / `ip6tables-save -t filter` (legacy or nft backend) and `nft -j
list ruleset` (native nftables: ip, ip6 and inet tables), and computes, for
the first packet of a new TCP connection to port P arriving from outside
(a SYN, conntrack state NEW, not a fragment, not on `lo`), the set of
sources that can get it accepted:

  all   every source (possibly minus a blocklist: fail2ban, rate limits...)
  some  only listed sources (an allow-list: networks, ipsets by name,
        interfaces, destination addresses)
  none  no source

IPv6 must be at most as open as IPv4. IPv4 and IPv6 networks cannot be
compared address by address, so the comparison is by kind:
IPv4 none -> IPv6 must be none; IPv4 some -> IPv6 none or some; IPv4 all ->
anything. docs/exposure.md states what is modelled and what is not.

The walk is a "may" analysis: a source is allowed when some path through
the chains accepts its packet. A rule whose match holds for some packets
only, independently of the source (a rate limit, a TCP source port, a TTL),
accepts for every source it reaches and never closes anything. A match on
something that selects sources without naming addresses (an interface, an
ipset by name, a `recent` list, a mark, a destination address, an unknown
option)
counts as an explicit, opaque subset of sources: accepting it is an
allow-list, dropping it is a blocklist.

Filters: dsr_ipv6_exposed_ports (the ports to check, from the plans),
dsr_exposure_problems (the comparison), dsr_port_access / dsr_port_verdict
(one port and family), dsr_private_bind_widening (a service bound to a
private IPv4 address that gains a global IPv6 address).
"""
from __future__ import annotations

import ipaddress
import json
import functools
import shlex
import socket

ALL, SOME, NONE = "all", "some", "none"
VERDICT = {ALL: "open", SOME: "restricted", NONE: "closed"}
LOOPBACK = {4: "127.0.0.0/8", 6: "::1/128"}
SYN, FLAG_BITS = 0x02, {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20,
                        "ecn": 0x40, "cwr": 0x80, "ece": 0x40}


# Source sets ---------------------------------------------------------------
#
# ("all", items): every source except those items; ("list", items): only those
# items. An item is (label, network or None); a network is (version, number,
# prefix length, exact), plain integers so that sets of tens of thousands of
# banned addresses stay fast. None is an opaque subset (an ipset by name, an
# interface) that covers nothing else and is covered by nothing but itself.
# An inexact network is an opaque subset known to lie inside that network
# ("iif eth1 & 10.0.0.0/8"): it may be covered by a larger exact network, and
# covers nothing.

S_ALL = ("all", ())
S_NONE = ("list", ())
_BITS = {4: 32, 6: 128}
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


@functools.lru_cache(maxsize=65536)
def _net(text):
    """(label, (version, number, prefix length)) of an address or network, host bits cleared."""
    addr, _slash, plen = str(text).strip().partition("/")
    v = 6 if ":" in addr else 4
    try:
        num = int.from_bytes(socket.inet_pton(_AF[v], addr.split("%")[0]), "big")
    except OSError:
        raise ValueError("not an IP address: %r" % (text,))
    p = int(plen) if plen else _BITS[v]
    if not 0 <= p <= _BITS[v]:
        raise ValueError("not a prefix length: %r" % (text,))
    num = num >> (_BITS[v] - p) << (_BITS[v] - p)
    return ("%s/%d" % (socket.inet_ntop(_AF[v], num.to_bytes(_BITS[v] // 8, "big")), p), (v, num, p, True))


def _item(text):
    return _net(text)


def _index(items):
    """{(version, prefix length): {network number}} of the networks among items, for cover tests."""
    idx = {}
    for _label, net in items:
        if net is not None and net[3]:
            v, num, p = net[:3]
            idx.setdefault((v, p), set()).add(num >> (_BITS[v] - p))
    return idx


def _in_index(item, idx, opaque=(), strict=False):
    """Is item inside one of the indexed networks (strict: a strictly larger one)?"""
    net = item[1]
    if net is None:
        return item in opaque
    if not net[3] and item in opaque:
        return True
    v, num, p = net[:3]
    for (w, q), nums in idx.items():
        if w == v and (q < p or (q == p and not strict)) and (num >> (_BITS[v] - q)) in nums:
            return True
    return False


def _inexact(items):
    return set(i for i in items if i[1] is None or not i[1][3])


def _covered(item, items):
    return _in_index(item, _index(items), _inexact(items))


def _inside(a, b):
    """Is network a inside network b?"""
    return a[0] == b[0] and a[2] >= b[2] and (a[1] >> (_BITS[a[0]] - b[2])) == (b[1] >> (_BITS[b[0]] - b[2]))


def _meet(a, b):
    """Intersection of two items, or None when empty."""
    if a == b:
        return a
    if a[1] is not None and b[1] is not None:
        if _inside(a[1], b[1]):
            inner, outer = a, b
        elif _inside(b[1], a[1]):
            inner, outer = b, a
        else:
            return None
        if outer[1][3]:
            return inner  # all of inner lies inside an exact network
        return ("%s & %s" % (inner[0], outer[0]), inner[1][:3] + (False,))
    net = a[1] if a[1] is not None else b[1]
    return ("%s & %s" % (a[0], b[0]), None if net is None else net[:3] + (False,))


def _normal(kind, items):
    items = tuple(dict.fromkeys(items))
    if kind == "list" and len(items) > 1:
        # drop items inside a larger item
        idx = _index(items)
        items = tuple(i for i in items if not _in_index(i, idx, strict=True))
    return (kind, items)


def _final(s):
    """A list that covers a whole address family is everyone (each family is evaluated on its own)."""
    if s[0] == "list":
        for v in (4, 6):
            spans = sorted((n[1], n[1] + (1 << (_BITS[v] - n[2])) - 1) for _label, n in s[1] if n and n[3] and n[0] == v)
            end = -1
            for lo, hi in spans:
                if lo > end + 1:
                    break
                end = max(end, hi)
            if end == (1 << _BITS[v]) - 1 and spans and spans[0][0] == 0:
                return S_ALL
    return s


def s_list(items):
    return _normal("list", items)


def s_not(s):
    return ("list" if s[0] == "all" else "all", s[1])


def s_and(a, b):
    if a[0] == "all" and b[0] == "all":
        return _normal("all", a[1] + b[1])
    if a[0] == "all" or b[0] == "all":
        excl, lst = (a[1], b[1]) if a[0] == "all" else (b[1], a[1])
        if not excl:
            return ("list", lst)
        idx, opaque = _index(excl), _inexact(excl)
        return _normal("list", [i for i in lst if not _in_index(i, idx, opaque)])
    out = []
    for x in a[1]:
        for y in b[1]:
            m = _meet(x, y)
            if m is not None:
                out.append(m)
    return _normal("list", out)


def s_or(a, b):
    return s_not(s_and(s_not(a), s_not(b)))


def s_minus(a, b):
    return s_and(a, s_not(b))


def s_empty(s):
    return s[0] == "list" and not s[1]


def _nets(text):
    """Items for an address, network or a-b range as iptables and nft print them."""
    text = str(text).strip()
    if "-" in text:
        a, b = (ipaddress.ip_address(x.strip()) for x in text.split("-", 1))
        return [_item(str(n)) for n in ipaddress.summarize_address_range(a, b)]
    return [_item(text)]


def _nets_or_opaque(text):
    try:
        return _nets(text)
    except (ValueError, TypeError):
        return [(str(text), None)]  # not an address this reader knows: an explicit subset of sources


# Conditions -----------------------------------------------------------------
#
# A condition is a list of alternatives (source set, other), "other" being ALL
# (holds for every such packet), SOME (for some packets only, whatever the
# source) or NONE. The packet: first SYN of a new TCP connection to the port.

TRUE = [(S_ALL, ALL)]
FALSE = []
SOMETIMES = [(S_ALL, SOME)]


def _o_and(a, b):
    if NONE in (a, b):
        return NONE
    return SOME if SOME in (a, b) else ALL


def c_and(a, b):
    out = []
    for sa, oa in a:
        for sb, ob in b:
            s, o = s_and(sa, sb), _o_and(oa, ob)
            if o != NONE and not s_empty(s):
                out.append((s, o))
    return out


def c_src(s, neg=False):
    s = s_not(s) if neg else s
    return FALSE if s_empty(s) else [(s, ALL)]


def c_bool(hit, neg=False):
    return TRUE if bool(hit) != bool(neg) else FALSE


def c_not(c):
    """Negation of a condition (exact for one alternative with a definite 'other')."""
    if not c:
        return TRUE
    if len(c) == 1 and c[0][1] == ALL:
        return c_src(c[0][0], neg=True)
    if len(c) == 1 and c[0][0] == S_ALL:
        return SOMETIMES if c[0][1] == SOME else FALSE
    return [(S_ALL, SOME)]


def c_opaque(label, neg=False):
    return c_src(s_list([(label, None)]), neg)


# iptables-save -------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def parse_iptables_save(text):
    """{'policies': {chain: policy}, 'rules': {chain: [rule text, ...]}, 'present', 'notes'} of the filter table."""
    policies, rules, table, notes, backend = {}, {}, None, [], None
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("# Warning:") or "incompatible" in line:
            notes.append(line.lstrip("# "))
        if line.startswith("# Generated by") and backend is None:
            backend = "nft" if "(nf_tables)" in line else "legacy"
        if line.startswith("*"):
            table = line[1:]
        elif table != "filter" or not line or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            policies[name] = policy
            rules.setdefault(name, [])
        elif line.startswith("-A "):
            chain = line.split()[1]
            rules.setdefault(chain, []).append(line)
    return {"policies": policies, "rules": rules, "present": "INPUT" in policies, "notes": notes,
            "backend": backend, "incompatible": any("incompatible" in n for n in notes)}


def _same_table(ipt, nft_text):
    """Is nft's `filter` table of this family the one iptables-save printed (iptables-nft)?

    iptables-nft keeps its rules in nft tables ip/ip6 `filter`: read them from
    iptables-save, which prints them exactly. A native nftables table that
    happens to be called `filter` is not iptables': iptables-nft-save calls it
    incompatible, and iptables-legacy-save never shows nft tables.
    """
    if not ipt["present"] or ipt["incompatible"]:
        return False
    if ipt["backend"] is not None:
        return ipt["backend"] == "nft"
    return '"INPUT"' in (nft_text or "")


def _port_in(spec, port):
    for part in str(spec).split(","):
        part = part.strip()
        if ":" in part or "-" in part:
            a, b = part.replace("-", ":").split(":", 1)
            if _portnum(a or 0) <= port <= _portnum(b or 65535):
                return True
        elif part and _portnum(part) == port:
            return True
    return False


def _portnum(v):
    if isinstance(v, int):
        return v
    v = str(v).strip()
    if v.isdigit():
        return int(v)
    try:
        return socket.getservbyname(v, "tcp")
    except OSError:
        return -1


def _flags(text):
    """Bits of TCP flags as iptables (`SYN,ACK`, `ALL`, `NONE`) or nft's JSON (`syn`, lists, {"|": [...]})
    write them."""
    if isinstance(text, dict) and "|" in text:
        text = text["|"]
    if isinstance(text, (list, tuple)):
        bits = 0
        for t in text:
            bits |= _flags(t)
        return bits
    t = str(text).lower()
    if t == "all":
        return 0x3F
    if t == "none":
        return 0
    return sum(FLAG_BITS.get(f.strip(), 0) for f in t.split(","))


# options that take no argument, and those that take two
_IPT_NOARG = {"--syn", "-f", "--fragment", "--rsource", "--rdest", "--set", "--rcheck", "--update", "--remove",
              "--reap", "--rttl", "--connlimit-saddr", "--connlimit-daddr", "--limit-iface-in",
              "--limit-iface-out", "--return-nomatch", "--update-counters", "--update-subcounters",
              "--kerneltz", "--contiguous", "--soft", "--strict", "--next", "--invert", "--loose",
              "--validmark", "--accept-local", "--physdev-is-in", "--physdev-is-out", "--physdev-is-bridged",
              "--transparent", "--nowildcard", "--restore-skmark", "--ipv4", "--ipv6", "-4", "-6",
              "--log-uid", "--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-macdecode"}
_IPT_TWOARG = {"--tcp-flags", "--match-set"}
# matches that hold for some packets whatever their source: rate limits,
# counters, marks, TTLs, payload, the TCP source port
# (the sender chooses them: a rule that accepts on them accepts from anyone).
_IPT_SOMETIMES = {"limit", "hashlimit", "connlimit", "statistic", "time", "ttl", "hl", "length", "string", "u32",
                  "bpf", "quota", "tos", "dscp", "ecn", "cpu", "rpfilter", "realm", "connbytes", "nfacct", "tcpmss",
                  "conntrack", "state", "multiport", "tcp", "comment", "osf"}
# Matches on something earlier rules or other hosts decide (a mark, a socket,
# an ipset, an interface): an explicit but unknown subset of sources.
_IPT_OPAQUE = {"mark", "connmark", "connlabel", "socket", "cluster", "policy", "physdev", "geoip", "devgroup",
               "recent", "set", "mac", "addrtype", "pkttype", "iprange"}
# IPv6 extension headers, other protocols, the output path, helpers: never a
# plain SYN from outside
_IPT_NEVER = {"rt", "frag", "hbh", "dst", "ipv6header", "mh", "owner", "esp", "ah", "helper"}
_IPT_VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "drop", "TARPIT": "drop", "RETURN": "return",
                 "NFQUEUE": "queue", "QUEUE": "queue", "SYNPROXY": "queue"}


@functools.lru_cache(maxsize=65536)
def _tokens(rule):
    """Words of an iptables-save line; only comments and log prefixes carry quotes."""
    return tuple(shlex.split(rule)) if ('"' in rule or "'" in rule) else tuple(rule.split())


def _ipt_rule(rule, port):
    """(condition, target, goto) of one `-A CHAIN ...` line."""
    toks = _tokens(rule)[2:]
    cond, target, goto, neg, module, i = TRUE, None, False, False, None, 0
    while i < len(toks) and cond:
        t = toks[i]
        if t == "!":
            neg = True
            i += 1
            continue
        if t in ("-j", "--jump", "-g", "--goto"):
            target = toks[i + 1] if i + 1 < len(toks) else None
            goto = t in ("-g", "--goto")
            break  # what follows are the target's own options (--reject-with ...)
        if t in ("-m", "--match"):
            module = toks[i + 1] if i + 1 < len(toks) else None
            if module in _IPT_NEVER:
                cond = FALSE
            i += 2
            continue
        n = 0 if t in _IPT_NOARG else 2 if t in _IPT_TWOARG else 1
        args = toks[i + 1:i + 1 + n]
        if not t.startswith("-") or len(args) < n:
            i += 1
            neg = False
            continue
        val = args[0] if args else ""
        cond = c_and(cond, _ipt_option(t, args, val, neg, module, port))
        i += 1 + n
        neg = False
    return cond, target, goto


def _ipt_option(opt, args, val, neg, module, port):
    if opt in ("-p", "--protocol"):
        return c_bool(val.lower() in ("tcp", "6", "all", "0"), neg)
    if opt in ("-s", "--source", "--ctorigsrc"):
        return c_src(s_list([n for part in val.split(",") for n in _nets_or_opaque(part)]), neg)
    if opt in ("-d", "--destination", "--dst-range", "--ctorigdst"):
        return c_opaque("to " + val, neg)
    if opt == "--src-range":
        return c_src(s_list(_nets_or_opaque(val)), neg)
    if opt in ("-i", "--in-interface"):
        if val == "lo":
            return c_bool(False, neg)
        return c_opaque("iif " + val, neg)
    if opt in ("-o", "--out-interface"):
        return c_bool(False, neg)  # no output interface on the input path
    if opt in ("-f", "--fragment"):
        return c_bool(False, neg)  # later fragments only: a SYN is never one
    if opt in ("--dport", "--destination-port", "--dports", "--destination-ports", "--ports"):
        return c_bool(_port_in(val, port), neg)
    if opt in ("--sport", "--source-port", "--sports", "--source-ports"):
        return SOMETIMES
    if opt == "--syn":
        return c_bool(True, neg)
    if opt == "--tcp-flags":
        return c_bool(SYN & _flags(args[0]) == _flags(args[1]), neg)
    if opt in ("--state", "--ctstate"):
        return c_bool("NEW" in val.upper().split(","), neg)
    if opt == "--ctstatus":
        return c_bool(False, neg)  # a new connection to the host is neither NATed, confirmed nor seen-reply
    if opt == "--ctdir":
        return c_bool(val.upper() == "ORIGINAL", neg)
    if opt in ("--icmp-type", "--icmpv6-type"):
        return FALSE
    if opt == "--dst-type":
        return c_bool(any(v in ("LOCAL", "UNICAST") for v in val.upper().split(",")), neg)
    if opt == "--src-type":
        return c_bool("UNICAST" in val.upper().split(","), neg)
    if opt == "--pkt-type":
        return c_bool(val.lower() in ("unicast", "host"), neg)
    if opt in ("--rcheck", "--update"):
        return c_opaque("recent list", neg)
    if opt in ("--set", "--remove", "--rsource", "--rdest", "--reap", "--rttl", "--name", "--mask", "--seconds",
               "--hitcount") and module == "recent":
        return TRUE
    if opt == "--match-set":
        return c_opaque("ipset %s (%s)" % (args[0], args[1]), neg)
    if opt in ("--mac-source", "--physdev-in", "--src-cc", "--source-country", "--src-group", "--dir", "--pol"):
        return c_opaque("%s %s" % (opt.lstrip("-"), val), neg)
    if opt in ("--comment", "-c", "--set-counters"):
        return TRUE
    if module in _IPT_SOMETIMES:
        return SOMETIMES
    if module in ("policy", "physdev", "geoip", "devgroup", "recent", "set", "addrtype", "pkttype", "iprange", "mac"):
        return TRUE  # a further option of a match counted by its main option (--proto esp of policy, ...)
    if module in _IPT_OPAQUE:
        return c_opaque("-m %s %s%s %s" % (module, "! " if neg else "", opt, " ".join(args)))
    # an option this reader does not know: an explicit subset of sources
    return c_opaque("%s%s %s" % ("! " if neg else "", opt, " ".join(args)))


# nftables ----------------------------------------------------------------------

def parse_nft_json(text, skip_tables=()):
    return _parse_nft_json(text or "", frozenset(skip_tables))


@functools.lru_cache(maxsize=8)
def _parse_nft_json(text, skip_tables):
    """Chains, sets and maps of `nft -j list ruleset`, and the base chains on the input path."""
    if not text or not text.strip():
        return {"chains": {}, "base": [], "sets": {}, "present": False}
    data = json.loads(text).get("nftables", [])
    chains, base, sets = {}, [], {}
    for item in data:
        if "chain" in item:
            c = item["chain"]
            if (c["family"], c["table"]) in skip_tables:
                continue
            key = (c["family"], c["table"], c["name"])
            chains[key] = {"policy": c.get("policy", "accept"), "rules": []}
            if c["family"] in ("ip", "ip6", "inet") and c.get("hook") in ("input", "prerouting") \
                    and c.get("type", "filter") == "filter":
                base.append((c.get("prio", 0), key))
        elif "set" in item or "map" in item:
            s = item.get("set") or item.get("map")
            sets[(s["family"], s["table"], s["name"])] = s.get("elem", [])
        elif "rule" in item:
            r = item["rule"]
            key = (r["family"], r["table"], r["chain"])
            if key in chains:
                chains[key]["rules"].append(r)
    return {"chains": chains, "base": [k for _prio, k in sorted(base)], "sets": sets, "present": bool(base)}


def _nft_elems(right, sets, table):
    """The elements a right-hand side stands for: values, ('range', a, b), ('prefix', addr, len), lists."""
    if isinstance(right, str) and right.startswith("@"):
        return [_nft_elem(e, sets, table) for e in sets.get(table + (right[1:],), [])]
    if isinstance(right, dict) and "set" in right:
        return [_nft_elem(e, sets, table) for e in right["set"]]
    if isinstance(right, list):
        return [_nft_elem(e, sets, table) for e in right]
    return [_nft_elem(right, sets, table)]


def _nft_elem(e, sets, table):
    if isinstance(e, dict):
        if "elem" in e:
            return _nft_elem(e["elem"]["val"], sets, table)
        if "range" in e:
            return ("range", e["range"][0], e["range"][1])
        if "prefix" in e:
            return ("prefix", e["prefix"]["addr"], e["prefix"]["len"])
        if "concat" in e:
            return ("concat", [_nft_elem(x, sets, table) for x in e["concat"]])
    if isinstance(e, list) and len(e) == 2:  # map element [key, value]
        return ("mapping", _nft_elem(e[0], sets, table), e[1])
    return e


def _elem_key(e):
    return e[1] if isinstance(e, tuple) and e[0] == "mapping" else e


def _port_hit(e, port):
    e = _elem_key(e)
    if isinstance(e, tuple) and e[0] == "range":
        return _portnum(e[1]) <= port <= _portnum(e[2])
    return not isinstance(e, tuple) and _portnum(e) == port


def _addr_items(e):
    e = _elem_key(e)
    if isinstance(e, tuple) and e[0] == "prefix":
        return _nets_or_opaque("%s/%s" % (e[1], e[2]))
    if isinstance(e, tuple) and e[0] == "range":
        return _nets_or_opaque("%s-%s" % (e[1], e[2]))
    return _nets_or_opaque(e)


def _show(elems):
    return ",".join(str(_elem_key(e)) for e in elems)


def _cmp(op, hit):
    """Condition for op applied to 'the value is among the right-hand elements' = hit."""
    return c_bool(hit, op == "!=")


def _nft_cond(left, op, elems, family, port, right=None):
    """Condition of `left op elems` for the packet, family 4 or 6 (right: as written, for TCP flags)."""
    if isinstance(left, dict) and "payload" in left:
        proto, field = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("ip", "ip6") and (proto == "ip") != (family == 4):
            return FALSE
        if proto in ("tcp", "th") and field == "dport":
            if op in ("<", ">", "<=", ">="):
                v = _portnum(_elem_key(elems[0]))
                return c_bool({"<": port < v, ">": port > v, "<=": port <= v, ">=": port >= v}[op])
            return _cmp(op, any(_port_hit(e, port) for e in elems))
        if proto == "tcp" and field == "flags":
            return _flag_cond(op, None, right if right is not None else elems)
        if proto in ("ip", "ip6") and field == "saddr":
            items = [i for e in elems for i in _addr_items(e)]
            return c_src(s_list(items), op == "!=")
        if proto in ("ip", "ip6") and field == "daddr":
            return c_opaque("to " + ",".join(i[0] for e in elems for i in _addr_items(e)), op == "!=")
        if (proto, field) in (("ip", "protocol"), ("ip6", "nexthdr")):
            return _cmp(op, any(_elem_key(e) in ("tcp", 6) for e in elems))
        if proto in ("udp", "udplite", "sctp", "dccp", "icmp", "icmpv6", "esp", "ah", "comp", "igmp", "arp",
                     "vlan", "gre"):
            return FALSE
        return SOMETIMES
    if isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        vals = [_elem_key(e) for e in elems]
        if key == "l4proto":
            return _cmp(op, any(v in ("tcp", 6) for v in vals))
        if key == "nfproto":
            return _cmp(op, ("ipv4" if family == 4 else "ipv6") in vals)
        if key == "protocol":
            return _cmp(op, ("ip" if family == 4 else "ip6") in vals)
        if key in ("iifname", "iif", "iifgroup"):
            others = [v for v in vals if v != "lo"]
            if not others:
                return c_bool(False, op == "!=")
            return c_opaque("iif " + ",".join(str(v) for v in others), op == "!=")
        if key == "iiftype":
            return SOMETIMES if "loopback" not in vals else c_bool(False, op == "!=")
        if key == "pkttype":
            return _cmp(op, any(v in ("host", "unicast") for v in vals))
        if key in ("oifname", "oif", "oiftype", "skuid", "skgid"):
            return c_bool(False, op == "!=")
        if key in ("mark", "secmark", "ipsec", "iifkind", "sdif", "sdifname", "cgroup"):
            return c_opaque("meta %s %s" % (key, _show(elems)), op == "!=")
        return SOMETIMES
    if isinstance(left, dict) and "ct" in left:
        key = left["ct"].get("key")
        vals = [_elem_key(e) for e in elems]
        if key == "state":
            return _cmp(op, "new" in vals)
        if key == "direction":
            return _cmp(op, "original" in vals)
        if key in ("status", "helper"):
            return c_bool(False, op == "!=")  # a new connection to the host: not NATed, no helper
        if key in ("mark", "label", "zone"):
            return c_opaque("ct %s %s" % (key, _show(elems)), op == "!=")
        if key in ("saddr", "ip saddr", "ip6 saddr") and left["ct"].get("dir", "original") == "original":
            return c_src(s_list([i for e in elems for i in _addr_items(e)]), op == "!=")
        return SOMETIMES
    if isinstance(left, dict) and "fib" in left:
        fib = left["fib"]
        if fib.get("result") == "type" and "daddr" in fib.get("flags", []):
            return _cmp(op, any(v in ("local", "unicast") for v in (_elem_key(e) for e in elems)))
        return SOMETIMES
    if isinstance(left, dict) and "&" in left:
        inner, mask = left["&"]
        if isinstance(inner, dict) and inner.get("payload", {}).get("field") == "flags":
            return _flag_cond(op, _flags(mask), right if right is not None else elems)
        if isinstance(inner, dict) and inner.get("payload", {}).get("field") == "frag-off":
            # `ip frag-off & 0x1fff != 0`: a later fragment, which a SYN is not
            return c_bool(all(_elem_key(e) in (0, "0") for e in elems), op == "!=")
        return SOMETIMES
    if isinstance(left, dict) and "exthdr" in left:
        return c_bool(not any(_elem_key(e) is True for e in elems), op == "!=")
    if isinstance(left, dict) and "concat" in left:
        parts = left["concat"]
        alts = []
        for e in elems:
            e = _elem_key(e)
            if not (isinstance(e, tuple) and e[0] == "concat" and len(e[1]) == len(parts)):
                alts.append(SOMETIMES)
                continue
            c = TRUE
            for p, v in zip(parts, e[1]):
                c = c_and(c, _nft_cond(p, "==", [v], family, port))
            alts.append(c)
        hit = [a for c in alts for a in c]
        return c_not(hit) if op == "!=" else hit
    # something this reader does not know: an explicit subset of sources
    return c_opaque("%s %s" % (json.dumps(left, sort_keys=True), _show(elems)), op == "!=")


def _flag_cond(op, mask, right):
    """Does the SYN's flag byte (under mask) satisfy `op right`?

    In nft's JSON a list is one value, its flags OR-ed (`fin|syn`); a set
    ({"set": [...]}) is a choice among values. `in` and `!` without a value
    of their own test bits (`tcp flags syn`: the syn bit is set).
    """
    value = SYN if mask is None else SYN & mask
    if isinstance(right, dict) and "set" in right:
        hit = value in [_flags(v) for v in right["set"]]
        return c_bool(hit, op == "!=")
    want = _flags(right)
    if op == "!":
        return c_bool(value & want == 0)
    if op == "in":
        return c_bool(value & want != 0)
    return c_bool(value == want, op == "!=")


_NFT_VERDICTS = {"accept": "accept", "drop": "drop", "reject": "drop", "return": "return", "queue": "queue",
                 "continue": None, "jump": "jump", "goto": "goto"}


def _nft_verdict(v):
    """(action, chain) of a verdict expression or map value."""
    if isinstance(v, dict):
        for k in v:
            if k in _NFT_VERDICTS:
                sub = v[k]
                return _NFT_VERDICTS[k], (sub or {}).get("target") if isinstance(sub, dict) else None
    if isinstance(v, str) and v in _NFT_VERDICTS:
        return _NFT_VERDICTS[v], None
    return None, None


def _nft_rule(rule, family, parsed, port):
    """[(condition, action, chain)] of one rule: one entry, or one per element of a verdict map."""
    table = (rule["family"], rule["table"])
    cond, out = TRUE, []
    for e in rule.get("expr", []):
        if not cond:
            return []
        if "match" in e:
            m = e["match"]
            elems = _nft_elems(m.get("right"), parsed["sets"], table)
            cond = c_and(cond, _nft_cond(m.get("left"), m.get("op", "=="), elems, family, port, m.get("right")))
        elif "limit" in e or "quota" in e:
            cond = c_and(cond, SOMETIMES)
        elif "xt" in e:
            # nft before 1.0 prints an iptables-nft extension it cannot show
            # as {"xt": null}: an opaque match, never a verdict.
            xt = e["xt"] or {}
            if xt.get("type") == "target":
                out.append((cond, _IPT_VERDICTS.get(xt.get("name")), None))
                return out
            cond = c_and(cond, c_opaque("xt " + str(xt.get("name"))))
        elif "vmap" in e:
            key = e["vmap"]["key"]
            for el in _nft_elems(e["vmap"]["data"], parsed["sets"], table):
                if not (isinstance(el, tuple) and el[0] == "mapping"):
                    continue
                action, chain = _nft_verdict(el[2])
                out.append((c_and(cond, _nft_cond(key, "==", [el[1]], family, port)), action, chain))
            return out
        else:
            action, chain = _nft_verdict(e)
            if action or any(k in e for k in ("continue",)):
                out.append((cond, action, chain))
                return out
    return out


def _nft_show(x):
    """nft-like text of an expression of `nft -j` (for messages)."""
    if isinstance(x, dict):
        if "payload" in x:
            return "%s %s" % (x["payload"].get("protocol"), x["payload"].get("field"))
        for k in ("meta", "ct"):
            if k in x:
                return "%s %s" % (k, x[k].get("key"))
        if "prefix" in x:
            return "%s/%s" % (x["prefix"]["addr"], x["prefix"]["len"])
        if "range" in x:
            return "%s-%s" % tuple(_nft_show(v) for v in x["range"])
        if "set" in x:
            return "{ %s }" % ", ".join(_nft_show(v) for v in x["set"])
        if "concat" in x:
            return " . ".join(_nft_show(v) for v in x["concat"])
        if "elem" in x:
            return _nft_show(x["elem"]["val"])
        if "&" in x:
            return "%s & %s" % tuple(_nft_show(v) for v in x["&"])
        if "fib" in x:
            return "fib %s %s" % (" . ".join(x["fib"].get("flags", [])), x["fib"].get("result"))
        if "match" in x:
            m = x["match"]
            op = m.get("op", "==")
            return "%s%s %s" % (_nft_show(m.get("left")), "" if op in ("==", "in") else " " + op,
                                _nft_show(m.get("right")))
        if "vmap" in x:
            return "%s vmap %s" % (_nft_show(x["vmap"]["key"]), _nft_show(x["vmap"]["data"]))
        if "limit" in x:
            return "limit rate %s%s/%s" % ("over " if x["limit"].get("inv") else "", x["limit"].get("rate"),
                                           x["limit"].get("per"))
        for k in ("jump", "goto"):
            if k in x:
                return "%s %s" % (k, x[k]["target"])
        for k in ("accept", "drop", "reject", "return", "queue", "continue"):
            if k in x:
                return k
        if "xt" in x:
            return "xt %s %s" % ((x["xt"] or {}).get("type"), (x["xt"] or {}).get("name"))
        return ""
    if isinstance(x, list):
        if len(x) == 2 and isinstance(x[1], dict):  # map element
            return "%s : %s" % (_nft_show(x[0]), _nft_show(x[1]))
        return ",".join(_nft_show(v) for v in x)
    return str(x)


def _nft_text(rule):
    words = [w for w in (_nft_show(e) for e in rule.get("expr", [])) if w]
    return "nft %s %s %s: %s%s" % (rule["family"], rule["table"], rule["chain"], " ".join(words),
                                   " # %s" % rule["comment"] if rule.get("comment") else "")


# evaluation -----------------------------------------------------------------------

class _Walk(object):
    """May-accept walk of one base chain for one port and family."""

    def __init__(self, rules_of):
        self.rules_of = rules_of  # chain -> [(condition, action, chain, text)]
        self.reasons = []         # (kind, source set, text) of the rules that decided something

    def chain(self, name, reach, via=()):
        """(accepted, returned) source sets for packets entering chain `name` from `reach`.

        via: the rules that jumped here, named in the reasons."""
        accepted, returned = S_NONE, S_NONE
        if len(via) > 32:
            return accepted, reach
        for cond, action, sub, rule in self.rules_of(name):
            text = " -> ".join(via + (rule,))
            if s_empty(reach):
                break
            for src, other in cond:
                m = s_and(reach, src)
                if s_empty(m) or action is None:
                    continue
                definite = other == ALL
                if action in ("accept", "queue"):
                    accepted = s_or(accepted, m)
                    self.reasons.append(("accept", m, text))
                elif action == "drop":
                    if definite:
                        self.reasons.append(("drop", m, text))
                elif action == "return":
                    returned = s_or(returned, m)
                elif action in ("jump", "goto"):
                    a, r = self.chain(sub, m, via + (rule,))
                    accepted = s_or(accepted, a)
                    if action == "goto":
                        returned = s_or(returned, r)
                    if definite:
                        reach = s_minus(reach, src)
                        if action == "jump":
                            reach = s_or(reach, r)
                    continue
                if definite:
                    reach = s_minus(reach, src)
        return accepted, s_or(returned, reach)

    def run(self, start, policy):
        accepted, fell = self.chain(start, S_ALL)
        if str(policy).lower() == "accept":
            if not s_empty(fell):
                self.reasons.append(("accept", fell, "policy ACCEPT"))
            accepted = s_or(accepted, fell)
        elif not s_empty(fell):
            self.reasons.append(("drop", fell, "policy %s" % str(policy).upper()))
        return accepted


def _merge(rules):
    """Fold runs of rules that differ only in their source list (fail2ban's one rule per ban) into one.

    Exact for terminal actions: a packet matches the folded rule when it
    matches one of them, and the first it would match ends its walk anyway.
    """
    out, run = [], None
    for r in rules:
        cond, action, sub, text = r
        key = None
        if action in ("accept", "drop", "return", "queue") and len(cond) == 1 and cond[0][0][0] == "list":
            key = (action, cond[0][1])
        if key is not None and run is not None and run[0] == key:
            run[1].extend(cond[0][0][1])
            run[2] += 1
            continue
        if run is not None:
            out.append(_folded(run))
            run = None
        if key is not None:
            run = [key, list(cond[0][0][1]), 1, text]
        else:
            out.append(r)
    if run is not None:
        out.append(_folded(run))
    return out


def _folded(run):
    (action, other), items, count, text = run
    if count > 1:
        text = "%s (and %d more rules like it)" % (text, count - 1)
    return ([(s_list(items), other)], action, None, text)


def _ipt_access(parsed, port, family):
    if not parsed["present"]:
        return S_ALL, [("accept", S_ALL, "no INPUT rules")]
    cache = {}

    def rules_of(chain):
        if chain not in cache:
            out = []
            for r in parsed["rules"].get(chain, []):
                cond, target, goto = _ipt_rule(r, port)
                if target in _IPT_VERDICTS:
                    action, sub = _IPT_VERDICTS[target], None
                elif target in parsed["rules"] or target in parsed["policies"]:
                    action, sub = ("goto" if goto else "jump"), target
                else:
                    action, sub = None, None  # LOG, MARK, CT...: the packet goes on
                out.append((cond, action, sub, r))
            cache[chain] = _merge(out)
        return cache[chain]
    w = _Walk(rules_of)
    return w.run("INPUT", parsed["policies"].get("INPUT", "ACCEPT")), w.reasons


def _nft_rules_of(parsed, port, family, fam, table):
    """The rules_of of one base chain's walk: chains of its table, with a cache of their own."""
    cache = {}

    def rules_of(chain):
        if chain not in cache:
            c = parsed["chains"].get((fam, table, chain), {"rules": []})
            cache[chain] = _merge([(cond, action, sub, _nft_text(r)) for r in c["rules"]
                                   for cond, action, sub in _nft_rule(r, family, parsed, port)])
        return cache[chain]
    return rules_of


def _nft_access(parsed, port, family):
    fams = ("ip", "inet") if family == 4 else ("ip6", "inet")
    out = []
    for key in parsed["base"]:
        if key[0] not in fams:
            continue
        w = _Walk(_nft_rules_of(parsed, port, family, key[0], key[1]))  # a new cache per base chain
        out.append((w.run(key[2], parsed["chains"][key]["policy"]), w.reasons))
    return out


def port_access(port, family, iptables_text="", nft_text=""):
    """Who can open a TCP connection to port over family (4 or 6).

    {"allow": "all"|"some"|"none", "sources": [...] (allow-list, for some),
     "except": [...] (blocklist, for all), "why": the deciding rule, "notes": [...]}.
    Every base chain (iptables' INPUT, nft input and prerouting filter chains)
    must accept: the result is their intersection.
    """
    ipt = parse_iptables_save(iptables_text)
    skip = {("ip" if family == 4 else "ip6", "filter")} if _same_table(ipt, nft_text) else set()
    nft = parse_nft_json(nft_text, skip)
    results = [_ipt_access(ipt, int(port), family)] + _nft_access(nft, int(port), family)
    allowed = S_ALL
    for s, _reasons in results:
        allowed = s_and(allowed, s)
    # Packets from the internet never carry a loopback source.
    allowed = _final(s_minus(allowed, s_list([_item(LOOPBACK[family])])))
    reasons = [r for _access, rs in results for r in rs]
    if allowed[0] == "all":
        kind = ALL
        why = _first(reasons, "accept", lambda s: s[0] == "all") or _first(reasons, "accept")
    elif allowed[1]:
        kind = SOME
        why = _first(reasons, "accept", lambda s: s[0] == "list" and s[1])
    else:
        kind = NONE
        # the rule that dropped everyone left, not a blocklist met on the way
        why = _first(reasons, "drop", lambda s: s[0] == "all") or _first(reasons, "drop") or "no rule accepts it"
    shown = [i[0] for i in allowed[1] if not _covered(i, [_item(LOOPBACK[4]), _item(LOOPBACK[6])])]
    return {"allow": kind, "sources": shown if kind == SOME else [], "except": shown if kind == ALL else [],
            "why": why or "", "notes": list(ipt["notes"])}


def _first(reasons, kind, test=lambda s: True):
    for k, s, text in reasons:
        if k == kind and test(s):
            return text
    return None


def port_verdict(port, family, iptables_text="", nft_text=""):
    """(open|restricted|closed, deciding rule) for a new TCP connection from anywhere to port over family."""
    a = port_access(port, family, iptables_text, nft_text)
    return VERDICT[a["allow"]], a["why"]


def wider(v4, v6):
    """Is IPv6 access v6 more open than IPv4 access v4 (each all|some|none)?"""
    return {NONE: v6 != NONE, SOME: v6 == ALL, ALL: False}[v4]


def ipv6_exposed_ports(gunicorn_plans, nginx_plan=None, haproxy_plan=None):
    """{port: service} for every non-loopback IPv6 socket the migration adds
    (gunicorn's binds, nginx's listens, a balancer HAProxy's added binds)."""
    out = {}
    for item in gunicorn_plans or []:
        for l in item["plan"]["listeners"]:
            ip = ipaddress.ip_address(l["address"])
            if ip.version == 6 and not ip.is_loopback:
                out.setdefault(int(l["port"]), item["service"]["unit"])
    for l in (nginx_plan or {}).get("listens", []):
        ip = ipaddress.ip_address(l["address"])
        if ip.version == 6 and not ip.is_loopback:
            out.setdefault(int(l["port"]), "nginx.service")
    for l in (haproxy_plan or {}).get("listens", []):
        ip = ipaddress.ip_address(l["address"])
        if l.get("added") and ip.version == 6 and not ip.is_loopback:
            out.setdefault(int(l["port"]), "haproxy.service")
    return out


def _describe(a):
    if a["allow"] == ALL:
        return "open to anyone" + (" except %s" % ", ".join(a["except"][:4]) if a["except"] else "")
    if a["allow"] == SOME:
        return "restricted to %s" % ", ".join(a["sources"][:4])
    return "closed"


def exposure_problems(ports, iptables4="", iptables6="", nft="", accept=None, ctx=None):
    """One message per port that IPv6 would answer more openly than IPv4 does.

    ports: a list of ports, or {port: service} (ipv6_exposed_ports).
    accept: a list of ports the operator accepts this for, or true for all.
    """
    ctx = ctx or {}
    if accept is True:
        return []
    accepted = set(int(p) for p in (accept or []))
    services = dict((int(k), v) for k, v in ports.items()) if isinstance(ports, dict) else {}
    problems = []
    for port in sorted(set(int(p) for p in ports or [])):
        if port in accepted:
            continue
        try:
            v4 = port_access(port, 4, iptables4, nft)
            v6 = port_access(port, 6, iptables6, nft)
        except Exception as e:  # a rule set this reader cannot follow stops the host, it never passes it
            problems.append("host %s: port %d%s: the input filtering could not be read (%s: %s); check it by "
                            "hand, or accept it with dsr_exposure_accept: [%d] for this host"
                            % (ctx.get("host", "?"), port, " (%s)" % services[port] if port in services else "",
                               type(e).__name__, e, port))
            continue
        if wider(v4["allow"], v6["allow"]):
            problems.append(
                "host %s: port %d%s would answer on IPv6 %s (%s: %s) while IPv4 is %s by '%s'; add the same rule "
                "for IPv6 (ip6tables/nftables), or accept it with dsr_exposure_accept: [%d] for this host"
                % (ctx.get("host", "?"), port, " (%s)" % services[port] if port in services else "",
                   "to anyone" if v6["allow"] == ALL else "to some sources",
                   _describe(v6), v6["why"], _describe(v4), v4["why"], port))
    return problems


# A service on a private IPv4 address gaining a global IPv6 address --------------

PRIVATE_V4 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")]
NOT_GLOBAL_V6 = [ipaddress.ip_network(n) for n in ("fc00::/7", "fe80::/10", "fec0::/10", "::/128", "::1/128",
                                                   "ff00::/8", "::ffff:0:0/96")]


def private_v4(address):
    """10/8, 172.16/12, 192.168/16 (RFC 1918) or 100.64/10 (shared, RFC 6598): not routed on the internet."""
    try:
        ip = ipaddress.ip_address(str(address))
    except ValueError:
        return False
    return ip.version == 4 and any(ip in n for n in PRIVATE_V4)


def global_v6(address):
    """An IPv6 address the internet can route to: not ULA (fc00::/7), link-local, loopback or multicast."""
    try:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return False
    return ip.version == 6 and not any(ip in n for n in NOT_GLOBAL_V6)


def _bind_address(text):
    """(address, port) of a gunicorn bind string, or None (unix socket, fd, host name)."""
    t = str(text).strip()
    if t.startswith("tcp://"):
        t = t[len("tcp://"):]
    host, _colon, port = t.rpartition(":")
    host = host.strip("[]")
    try:
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        return None


def _gunicorn_pairs(item):
    """(ipv4 listener, new specific ipv6 listener) pairs of one gunicorn plan.

    bind_plan puts the IPv6 addresses a specific IPv4 bind gains right after
    that IPv4 listener; IPv6 binds the service already had are not new.
    """
    plan = item.get("plan") or {}
    before = set(b for b in (_bind_address(x) for x in plan.get("binds_before") or []) if b)
    last4 = None
    for l in plan.get("listeners") or []:
        if int(l.get("family", 0)) == 4 or ipaddress.ip_address(l["address"]).version == 4:
            last4 = l
            continue
        addr = str(ipaddress.ip_address(l["address"]))
        if (addr, int(l["port"])) in before or ipaddress.ip_address(addr).is_unspecified:
            continue
        if last4 is not None and int(last4["port"]) == int(l["port"]):
            yield last4["address"], addr, int(l["port"])


def _nginx_pairs(nginx_plan, interfaces):
    """(ipv4 listen or None, ipv6 listen) for each specific IPv6 listen the nginx plan adds.

    The origin is the plan's `from` (the IPv4 listen a line mirrors) when it
    has one, else every IPv4 address of the interface that carries the IPv6
    address (ctx interfaces, {ipv4: [ipv6 of its interface]}); None when
    neither tells.
    """
    files = (nginx_plan or {}).get("files") or {}
    for l in (nginx_plan or {}).get("listens") or []:
        if l.get("added") is False or l.get("new") is False:
            continue
        try:
            addr = str(ipaddress.ip_address(l["address"]))
        except ValueError:
            continue
        added = (files.get(l.get("file")) or {}).get("added")
        if isinstance(added, list) and not any("[%s]:%d" % (addr, int(l["port"])) in str(a) for a in added):
            continue  # a listen the configuration already had
        if ipaddress.ip_address(addr).version != 6 or ipaddress.ip_address(addr).is_unspecified:
            continue
        origin = l.get("from") or l.get("ipv4")
        if origin:
            yield str(origin).split(":", 1)[0] if str(origin).count(":") == 1 else str(origin), addr, int(l["port"])
            continue
        owners = [v4 for v4, v6s in (interfaces or {}).items()
                  if any(str(ipaddress.ip_address(str(a).split("/", 1)[0])) == addr for a in v6s)]
        if not owners:
            yield None, addr, int(l["port"])
        for v4 in owners:
            yield v4, addr, int(l["port"])


def private_bind_widening(gunicorn_plans, nginx_plan=None, accept=None, ctx=None):
    """One message per service bound to a private IPv4 address that the plan gives a global IPv6 address.

    A private IPv4 address (10/8, 172.16/12, 192.168/16, 100.64/10) is
    reachable from its own network only; the global IPv6 address of the same
    interface is reachable from the internet, whatever the firewall says about
    the port. A ULA (fc00::/7) or link-local address is no wider. Loopback and
    wildcard binds are left to the firewall comparison (exposure_problems).

    gunicorn_plans: [{service, plan}] (dsr_gunicorn_plans); nginx_plan:
    nginx_dualstack's plan ({listens: [{address, port, from?}]}).
    accept: dsr_exposure_accept, a list of ports or true.
    ctx: {host, interfaces ({ipv4: [ipv6, ...]}, dsr_interface_map), used for
    nginx listens whose IPv4 origin the plan does not name}.
    """
    ctx = ctx or {}
    if accept is True:
        return []
    accepted = set(int(p) for p in (accept or []))
    host = ctx.get("host", "?")
    problems = []

    def report(who, v4, v6, port):
        if port in accepted or not global_v6(v6):
            return
        if v4 is None:
            why = "the plan does not say which IPv4 listen it mirrors, so it may be a private one"
        elif private_v4(v4):
            why = "%s is a private IPv4 address, reachable from its own network only" % _fmt_addr(v4, port)
        else:
            return
        msg = ("host %s: %s would listen on %s, a global IPv6 address reachable from the internet, while %s; "
               "leave the service IPv4-only, give that interface a ULA (fc00::/7) rather than a global address, or "
               "accept it with dsr_exposure_accept: [%d] for this host" % (host, who, _fmt_addr(v6, port), why, port))
        if msg not in problems:
            problems.append(msg)

    for item in gunicorn_plans or []:
        unit = (item.get("service") or {}).get("unit", "gunicorn")
        for v4, v6, port in _gunicorn_pairs(item):
            report(unit, v4, v6, port)
    for v4, v6, port in _nginx_pairs(nginx_plan, ctx.get("interfaces")):
        report("nginx.service", v4, v6, port)
    return problems


def _fmt_addr(address, port):
    return "[%s]:%d" % (address, port) if ":" in str(address) else "%s:%d" % (address, port)


class FilterModule(object):
    def filters(self):
        return {"dsr_exposure_problems": exposure_problems, "dsr_ipv6_exposed_ports": ipv6_exposed_ports,
                "dsr_private_bind_widening": private_bind_widening}
