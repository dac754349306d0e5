# -*- coding: utf-8 -*-
"""Requests for the dsr_http_probe module, built from addresses and ports.

    {{ ['127.0.0.1', '::1'] | dsr_probe_requests([80], path='/', json={'scheme': 'https'}) }}
    -> [{'url': 'http://127.0.0.1:80/', 'expect': 'answer', 'json': {...}},
        {'url': 'http://[::1]:80/', ...}]
"""
from __future__ import annotations

import ipaddress

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
            out.extend(dict(req) for _ in range(int(repeat)))
    return out


class FilterModule(object):
    def filters(self):
        return {"dsr_probe_requests": probe_requests}
