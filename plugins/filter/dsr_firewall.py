"""Does a dual-stack migration open a port to IPv6 that IPv4 keeps closed? (filter plugin)

Reads the host's input filtering for each family, from `iptables-save` /
`ip6tables-save` (legacy or nft backend) and `nft -j list ruleset` (native
nftables: ip, ip6 and inet tables), and decides, for a new TCP connection
from an arbitrary address on the internet to port P:

  open        accepted from anywhere
  restricted  accepted from some sources only (or some sources dropped)
  closed      dropped or rejected from anywhere

A rule whose match cannot be decided for "any source" (a source address, an
interface other than lo, a module this reader does not know) counts as
matching some sources only, which can make the verdict `restricted`, never
`open`. exposure_problems() fails a port whose IPv6 verdict is more open than
its IPv4 one.
"""
from __future__ import annotations

import json
import shlex

RANK = {"closed": 0, "restricted": 1, "open": 2}
ALL, SOME, NONE = "all", "some", "none"


def _port_in(spec, port):
    for part in str(spec).split(","):
        if ":" in part or "-" in part:
            a, b = part.replace("-", ":").split(":", 1)
            if int(a or 0) <= port <= int(b or 65535):
                return True
        elif part and int(part) == port:
            return True
    return False


def _combine(a, b):
    if NONE in (a, b):
        return NONE
    return SOME if SOME in (a, b) else ALL


# iptables-save ------------------------------------------------------------

def parse_iptables_save(text):
    """{'policies': {chain: policy}, 'rules': {chain: [rule text, ...]}} of the filter table."""
    policies, rules, table = {}, {}, None
    for line in (text or "").splitlines():
        line = line.strip()
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
    return {"policies": policies, "rules": rules, "present": table is not None or bool(rules)}


def _ipt_rule(rule, port):
    """(match, target) of one `-A CHAIN ...` line for a new TCP packet to port."""
    toks = shlex.split(rule)[2:]
    m, target, neg, i = ALL, None, False, 0
    while i < len(toks):
        t = toks[i]
        val = toks[i + 1] if i + 1 < len(toks) else ""
        if t == "!":
            neg = True
            i += 1
            continue
        if t in ("-j", "--jump", "-g", "--goto"):
            target = val
            break  # what follows are the target's own options (--reject-with ...)
        elif t in ("-p", "--protocol"):
            ok = val.lower() in ("tcp", "6", "all", "0")
            m = _combine(m, SOME if neg else (ALL if ok else NONE))
            i += 2
        elif t in ("-i", "--in-interface"):
            if val == "lo":
                m = _combine(m, ALL if neg else NONE)
            else:
                m = _combine(m, SOME)
            i += 2
        elif t in ("-s", "--source", "-d", "--destination"):
            m = _combine(m, ALL if (val in ("0.0.0.0/0", "::/0") and not neg) else SOME)
            i += 2
        elif t in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            hit = _port_in(val, port)
            m = _combine(m, ALL if hit != neg else NONE)
            i += 2
        elif t in ("--ctstate", "--state"):
            hit = "NEW" in val.upper().split(",")
            m = _combine(m, ALL if hit != neg else NONE)
            i += 2
        elif t in ("-m", "--match", "--comment", "-c"):
            i += 2
        elif t in ("--syn", "-f"):
            i += 1
        elif t.startswith("-"):
            # an option this reader does not know: holds for some packets only
            m = _combine(m, SOME)
            i += 2 if (val and not val.startswith("-")) else 1
        else:
            i += 1
        neg = False
    return m, target


# nftables -----------------------------------------------------------------

def parse_nft_json(text, skip_tables=()):
    """Base input chains and all chains of `nft -j list ruleset`, by (family, table)."""
    if not text or not text.strip():
        return {"chains": {}, "base": [], "present": False}
    data = json.loads(text).get("nftables", [])
    chains, base = {}, []
    for item in data:
        if "chain" in item:
            c = item["chain"]
            key = (c["family"], c["table"], c["name"])
            if (c["family"], c["table"]) in skip_tables:
                continue
            chains[key] = {"policy": c.get("policy", "accept"), "rules": []}
            if c.get("hook") == "input" and c.get("type", "filter") == "filter":
                base.append((c.get("prio", 0), key))
        elif "rule" in item:
            r = item["rule"]
            key = (r["family"], r["table"], r["chain"])
            if key in chains:
                chains[key]["rules"].append(r)
    return {"chains": chains, "base": [k for _, k in sorted(base)], "present": bool(base)}


def _nft_value_has(right, port):
    if isinstance(right, dict):
        if "set" in right:
            return any(_nft_value_has(v, port) for v in right["set"])
        if "range" in right:
            a, b = right["range"]
            return int(a) <= port <= int(b)
        return False
    if isinstance(right, list):
        return any(_nft_value_has(v, port) for v in right)
    try:
        return int(right) == port
    except (TypeError, ValueError):
        return False


def _nft_rule(rule, port, family):
    m, target = ALL, None
    for e in rule.get("expr", []):
        if "match" in e:
            mt = e["match"]
            left, right, neg = mt.get("left", {}), mt.get("right"), mt.get("op") == "!="
            if "payload" in left:
                proto, field = left["payload"].get("protocol"), left["payload"].get("field")
                if proto == "tcp" and field == "dport":
                    m = _combine(m, ALL if _nft_value_has(right, port) != neg else NONE)
                elif proto in ("udp", "icmp", "icmpv6", "sctp"):
                    m = _combine(m, NONE)
                elif proto in ("ip", "ip6") and (proto == "ip") != (family == 4):
                    m = _combine(m, NONE)
                else:
                    m = _combine(m, SOME)
            elif "meta" in left:
                key = left["meta"].get("key")
                vals = right if isinstance(right, list) else (right.get("set") if isinstance(right, dict) else [right])
                if key == "l4proto":
                    m = _combine(m, ALL if ("tcp" in vals or 6 in vals) != neg else NONE)
                elif key == "nfproto":
                    want = "ipv4" if family == 4 else "ipv6"
                    m = _combine(m, ALL if (want in vals) != neg else NONE)
                elif key in ("iifname", "iif"):
                    m = _combine(m, (ALL if neg else NONE) if "lo" in vals else SOME)
                else:
                    m = _combine(m, SOME)
            elif "ct" in left and left["ct"].get("key") == "state":
                vals = right if isinstance(right, list) else (right.get("set") if isinstance(right, dict) else [right])
                m = _combine(m, ALL if ("new" in vals) != neg else NONE)
            else:
                m = _combine(m, SOME)
        elif "xt" in e:
            m = _combine(m, SOME)
        elif "accept" in e:
            target = "ACCEPT"
        elif "drop" in e:
            target = "DROP"
        elif "reject" in e:
            target = "REJECT"
        elif "return" in e:
            target = "RETURN"
        elif "jump" in e or "goto" in e:
            target = ("jump", (e.get("jump") or e.get("goto"))["target"])
    return m, target


# evaluation -----------------------------------------------------------------

class _Walk(object):
    def __init__(self):
        self.partial_accept = None
        self.partial_drop = None

    def run(self, rules_of, start, policy, describe):
        """rules_of(chain) -> [(match, target, text)]; returns (verdict, deciding rule text)."""
        verdict, why = self._chain(rules_of, start, describe, ALL, 0)
        if verdict is None:
            verdict, why = ("accept" if policy.upper() == "ACCEPT" else "drop"), "policy %s" % policy.upper()
        if verdict == "accept":
            return ("restricted", self.partial_drop) if self.partial_drop else ("open", why)
        return ("restricted", self.partial_accept) if self.partial_accept else ("closed", why)

    def _chain(self, rules_of, chain, describe, ctx, depth):
        if depth > 16:
            return None, None
        for m, target, text in rules_of(chain):
            m = _combine(m, ctx)
            if m == NONE or target is None:
                continue
            if target == "RETURN":
                if m == ALL:
                    return None, None
                continue
            if isinstance(target, tuple) or target not in ("ACCEPT", "DROP", "REJECT"):
                sub = target[1] if isinstance(target, tuple) else target
                v, why = self._chain(rules_of, sub, describe, m, depth + 1)
                if v is not None and m == ALL:
                    return v, why
                continue
            if m == SOME:
                if target == "ACCEPT":
                    self.partial_accept = self.partial_accept or text
                else:
                    self.partial_drop = self.partial_drop or text
                continue
            return ("accept" if target == "ACCEPT" else "drop"), text
        return None, None


def _ipt_verdict(parsed, port):
    if not parsed["present"] or "INPUT" not in parsed["policies"]:
        return "open", "no INPUT rules"

    def rules_of(chain):
        return [_ipt_rule(r, port) + (r,) for r in parsed["rules"].get(chain, [])]
    return _Walk().run(rules_of, "INPUT", parsed["policies"].get("INPUT", "ACCEPT"), str)


def _nft_verdicts(parsed, port, family):
    fams = ("ip", "inet") if family == 4 else ("ip6", "inet")
    out = []
    for key in parsed["base"]:
        if key[0] not in fams:
            continue

        def rules_of(chain, _fam=key[0], _table=key[1]):
            c = parsed["chains"].get((_fam, _table, chain if isinstance(chain, str) else chain), {"rules": []})
            return [_nft_rule(r, port, family) + ("nft %s %s %s: %s" % (_fam, _table, chain, _nft_text(r)),)
                    for r in c["rules"]]
        out.append(_Walk().run(rules_of, key[2], parsed["chains"][key]["policy"], str))
    return out


def _nft_text(rule):
    return rule.get("comment") or "rule handle %s" % rule.get("handle")


def port_verdict(port, family, iptables_text="", nft_text=""):
    """(verdict, reason) for a new TCP connection from anywhere to port over family."""
    ipt = parse_iptables_save(iptables_text)
    skip = {("ip" if family == 4 else "ip6", "filter")} if ipt["present"] else set()
    nft = parse_nft_json(nft_text, skip)
    verdicts = [_ipt_verdict(ipt, port)] + _nft_verdicts(nft, port, family)
    return min(verdicts, key=lambda v: RANK[v[0]])


def ipv6_exposed_ports(gunicorn_plans, nginx_plan=None):
    """{port: service} for every non-loopback IPv6 socket the migration adds."""
    import ipaddress
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
    return out


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
        v4, why4 = port_verdict(port, 4, iptables4, nft)
        v6, why6 = port_verdict(port, 6, iptables6, nft)
        if RANK[v6] > RANK[v4]:
            problems.append(
                "host %s: port %d%s would answer on IPv6 %s (%s) while IPv4 is %s by '%s'; add the same rule "
                "for IPv6 (ip6tables/nftables), or accept it with dsr_exposure_accept: [%d] for this host"
                % (ctx.get("host", "?"), port, " (%s)" % services[port] if port in services else "",
                   "to anyone" if v6 == "open" else "to more sources",
                   why6, v4, why4, port))
    return problems


class FilterModule(object):
    def filters(self):
        return {"dsr_exposure_problems": exposure_problems, "dsr_port_verdict": port_verdict,
                "dsr_ipv6_exposed_ports": ipv6_exposed_ports}
