# -*- coding: utf-8 -*-
"""Requests for the dsr_http_probe module, built from addresses and ports.

    {{ ['127.0.0.1', '::1'] | dualstack.rollout.dsr_probe_requests([80], path='/', json={'scheme': 'https'}) }}
    -> [{'url': 'http://127.0.0.1:80/', 'expect': 'answer', 'json': {...}},
        {'url': 'http://[::1]:80/', ...}]
"""
from __future__ import annotations

import ipaddress
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass


def url_host(address):
    """An address as it goes in a URL: IPv6 literals in brackets."""
    address = str(address).strip("[]")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise AnsibleFilterError("dsr_probe_requests: %r is not an IP address" % address)
    return "[%s]" % ip if ip.version == 6 else str(ip)


def probe_requests(addresses, ports, path="/", expect="answer", json=None, repeat=1):
    """One request per port and address (ports outer, addresses inner), `repeat` times each."""
    if expect not in ("answer", "no_answer", "any"):
        raise AnsibleFilterError("dsr_probe_requests: expect must be answer, any or no_answer, not %r" % expect)
    if not str(path).startswith("/"):
        raise AnsibleFilterError("dsr_probe_requests: path %r must start with /" % path)
    out = []
    for port in ports or []:
        port = int(port)
        if not 0 < port < 65536:
            raise AnsibleFilterError("dsr_probe_requests: %r is not a TCP port" % port)
        for address in addresses or []:
            req = {"url": "http://%s:%d%s" % (url_host(address), port, path), "expect": expect}
            if json:
                req["json"] = dict(json)
            out.extend(dict(req) for _copy in range(int(repeat)))
    return out


def _family(url):
    return 6 if "://[" in url else 4


def probe_clients(results, key, addresses, ctx=None):
    """Problems with the client address the app reports, one per answer.

    results    dsr_http_probe's results (url, status, json) of requests sent
               from one host through the balancer
    key        the key of the app's JSON answer that holds the client address
               the app resolved (from X-Real-IP, X-Forwarded-For, realip ...)
    addresses  that sending host's own addresses ({ipv4: [..], ipv6: [..]},
               dsr_global_addresses)

    The app must name the sending host (in the family the request used), not
    the balancer: a rule that still trusts only the balancer's IPv4 address
    makes the app see the balancer once the hop is IPv6 (docs/trust.md)."""
    own = {4: set(), 6: set()}
    for a in (addresses or {}).get("ipv4", []) + (addresses or {}).get("ipv6", []):
        ip = ipaddress.ip_address(str(a).split("/", 1)[0])
        own[ip.version].add(ip)
    where = "%s: " % ctx["where"] if ctx and ctx.get("where") else ""
    problems = []
    for r in results or []:
        if r.get("status") != 200:
            continue  # dsr_http_probe's own problems name it
        seen = (r.get("json") or {}).get(key) if isinstance(r.get("json"), dict) else None
        family = _family(r["url"])
        try:
            ip = ipaddress.ip_address(str(seen)) if seen is not None else None
            # an app behind a dual-stack socket may report an IPv4 client in
            # its IPv4-mapped form (::ffff:a.b.c.d): the same client
            if ip is not None and ip.version == 6 and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            ok = ip is not None and ip in own[ip.version] and ip.version == family
        except ValueError:
            ok = False
        if not ok:
            problems.append("%s%s: the app saw the client as %s, not as the client's own IPv%d address (%s)"
                            % (where, r["url"], seen if seen is not None else "nothing (no %r in its answer)" % key,
                               family, ", ".join(sorted(str(a) for a in own[family])) or "none"))
    return problems


def same_answers(results):
    """Problems where the same request over IPv6 got another HTTP status than
    over IPv4 (dsr_http_probe's results; the same port and path, one
    address of each family): a new IPv6 listener must behave as the IPv4 one."""
    by_target = {}
    for r in results or []:
        m = re.match(r"^http://(\[[^\]]*\]|[^/:]+):(\d+)(/.*)?$", r.get("url", ""))
        if m:
            by_target.setdefault((m.group(2), m.group(3) or "/"), {}).setdefault(_family(r["url"]), r)
    problems = []
    for _target, fams in sorted(by_target.items()):
        if 4 in fams and 6 in fams and fams[4].get("status") != fams[6].get("status"):
            problems.append("%s answered %s, but %s answered %s" % (
                fams[6]["url"], fams[6].get("status"), fams[4]["url"], fams[4].get("status")))
    return problems


class FilterModule(object):
    def filters(self):
        return {"dsr_probe_requests": probe_requests, "dsr_probe_clients": probe_clients,
                "dsr_same_answers": same_answers}
