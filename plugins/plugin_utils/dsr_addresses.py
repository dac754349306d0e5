"""A host's interface addresses, from either form of `ip addr show` (filter plugin).

`ip -j addr show` (JSON) is missing from the fleet's oldest iproute2
releases (CentOS 7: 3.10 and 4.11, Debian 9: 4.9). `ip -o addr show` prints
one line per address on every release:

    2: eth0    inet 172.18.0.2/16 brd 172.18.255.255 scope global eth0\\       valid_lft forever preferred_lft forever
    2: eth0    inet6 2001:db8::2/64 scope global dynamic mngtmpaddr \\       valid_lft 86398sec preferred_lft 14398sec

`ip_addresses` reads both and returns one structure, so every filter here
takes the raw stdout of either command (or JSON already parsed):

    [{"ifindex": 2, "ifname": "eth0",
      "addr_info": [{"family": "inet", "local": "172.18.0.2", "prefixlen": 16,
                     "scope": "global", "label": "eth0", "broadcast": "172.18.255.255"},
                    {"family": "inet6", "local": "2001:db8::2", "prefixlen": 64,
                     "scope": "global", "dynamic": True}]}]

Only interfaces with at least one address appear (`ip -o` prints nothing
else). An address carries family, local, prefixlen, scope, label (IPv4),
broadcast and peer when set, and these flags when they are true:
secondary (IPv4) or temporary (IPv6; the same kernel bit), tentative,
optimistic, dadfailed, deprecated, dynamic (not permanent). Flags that only
steer routing or address generation (noprefixroute, mngtmpaddr, nodad,
home, autojoin, stable-privacy) are left out: old iproute2 cannot show them
and no decision here depends on them. Lifetimes are left out too (they
count down between two reads).

An address is usable for a listener or a probe when it is neither tentative
(duplicate address detection still running), dadfailed, deprecated
(preferred lifetime over, about to go) nor, for IPv6, temporary (privacy
addresses rotate).
"""
from __future__ import annotations

import ipaddress
import json
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - unit tests import without Ansible
    class AnsibleFilterError(Exception):
        pass


class AddressParseError(AnsibleFilterError):
    pass


FLAGS = ("secondary", "temporary", "tentative", "optimistic", "dadfailed", "deprecated", "dynamic")
# ifa_flags bits (linux/if_addr.h), for the `flags NN` that iproute2 prints
# for bits it has no name for (3.10 has none for optimistic).
_BITS = ((0x01, None), (0x04, "optimistic"), (0x08, "dadfailed"), (0x20, "deprecated"), (0x40, "tentative"))
_PERMANENT = 0x80
_UNUSABLE = ("tentative", "dadfailed", "deprecated")
# Words of `ip -o addr` followed by a value.
_VALUED = ("peer", "brd", "any", "scope", "metric", "proto", "flags")

_ADDR_LINE = re.compile(r"^(\d+):\s+([^\s@]+)(?:@\S*)?\s+(inet6?)\s+(.*)$")
_LINK_LINE = re.compile(r"^\d+:\s+\S+:\s+<")


def _ip(text):
    return str(ipaddress.ip_address(text))


def _first_flag(family):
    return "temporary" if family == "inet6" else "secondary"


def _address(family, local, prefixlen, scope, label=None, broadcast=None, peer=None, flags=()):
    a = {"family": family, "local": _ip(local), "prefixlen": int(prefixlen), "scope": str(scope)}
    if label and family == "inet":
        a["label"] = label
    if broadcast:
        a["broadcast"] = _ip(broadcast)
    if peer:
        a["peer"] = _ip(peer)
    for f in FLAGS:
        if f in flags and (f not in ("secondary", "temporary") or f == _first_flag(family)):
            a[f] = True
    return a


def _from_json(links):
    out = []
    for link in links:
        if not isinstance(link, dict):
            raise AddressParseError("ip addresses: expected a list of interfaces, got an item %r" % (link,))
        infos = []
        for info in link.get("addr_info") or []:
            if not info.get("local") or info.get("family") not in ("inet", "inet6"):
                continue  # `ip -j addr show scope global` leaves {} for filtered addresses
            infos.append(_address(info["family"], info["local"],
                                  info.get("prefixlen", 32 if info["family"] == "inet" else 128),
                                  info.get("scope", "global"), info.get("label"), info.get("broadcast"),
                                  info.get("peer", info.get("address")),
                                  [f for f in FLAGS if info.get(f)]))
        if infos:
            out.append({"ifindex": int(link.get("ifindex", 0)), "ifname": str(link.get("ifname", "")).split("@", 1)[0],
                        "addr_info": infos})
    return out


def _parse_line(family, rest, line):
    fields = rest.split("\\", 1)[0].split()
    if not fields:
        raise AddressParseError("ip -o addr: no address in %r" % line)
    local, _slash, prefixlen = fields.pop(0).partition("/")
    label = None
    if family == "inet" and len(fields) >= 2 and fields[-2] not in _VALUED:
        label = fields.pop()  # IPv4 always carries its label last
    values = {}
    flags = set()
    i = 0
    while i < len(fields):
        word = fields[i]
        if word in _VALUED and i + 1 < len(fields):
            values[word] = fields[i + 1]
            i += 2
            continue
        if word == "temporary" or word == "secondary":
            flags.add(_first_flag(family))
        else:
            flags.add(word)
        i += 1
    if "peer" in values:
        peer, _slash, prefixlen = values["peer"].partition("/")
    else:
        peer = None
    if "flags" in values:
        bits = int(values["flags"], 16)
        for bit, name in _BITS:
            if bits & bit:
                flags.add(name or _first_flag(family))
    if not prefixlen:
        prefixlen = 32 if family == "inet" else 128
    try:
        return _address(family, local, prefixlen, values.get("scope", "global"), label, values.get("brd"), peer,
                        flags)
    except ValueError:
        raise AddressParseError("ip -o addr: cannot read the address in %r" % line)


def _from_oneline(text):
    links = {}
    order = []
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _ADDR_LINE.match(line)
        if not m:
            if _LINK_LINE.match(line):
                continue
            raise AddressParseError("not a line of `ip -o addr show` nor `ip -j addr show` output: %r" % line)
        index, name, family, rest = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        if index not in links:
            links[index] = {"ifindex": index, "ifname": name, "addr_info": []}
            order.append(index)
        links[index]["addr_info"].append(_parse_line(family, rest, line))
    return [links[i] for i in order]


def ip_addresses(data):
    """The normalised interfaces and addresses from `ip -o addr show` text,
    `ip -j addr show` JSON text, or that JSON already parsed."""
    if data is None:
        return []
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        text = data.strip()
        if not text:
            return []
        if text[0] in "[{":
            try:
                data = json.loads(text)
            except ValueError as e:
                raise AddressParseError("`ip -j addr show` printed invalid JSON (%s): read `ip -o addr show` "
                                        "instead, which every iproute2 release prints" % e)
            if isinstance(data, dict):
                data = [data]
        else:
            return _from_oneline(text)
    if isinstance(data, (list, tuple)):
        return _from_json(data)
    raise AddressParseError("ip addresses: expected the output of `ip -o addr show` or `ip -j addr show`, got %s"
                            % type(data).__name__)


def usable(info):
    """True for an address a listener or a probe can rely on."""
    if any(info.get(f) for f in _UNUSABLE):
        return False
    return not (info.get("family") == "inet6" and info.get("temporary"))


def interface_map(addresses):
    """{ipv4: [usable global IPv6 of the same interface]} for every IPv4 address."""
    result = {}
    for link in ip_addresses(addresses):
        v4 = [a["local"] for a in link["addr_info"] if a["family"] == "inet"]
        v6 = [a["local"] for a in link["addr_info"]
              if a["family"] == "inet6" and a["scope"] == "global" and usable(a)]
        for a in v4:
            result[a] = list(v6)
    return result


def global_addresses(addresses):
    """{"ipv4": [...], "ipv6": [...]}: the host's usable global addresses."""
    out = {"ipv4": [], "ipv6": []}
    for link in ip_addresses(addresses):
        for a in link["addr_info"]:
            if a["scope"] == "global" and usable(a):
                out["ipv4" if a["family"] == "inet" else "ipv6"].append(a["local"])
    return out


def ipv4_interfaces(addresses):
    """Names of the interfaces (not lo) that have a global IPv4 address."""
    return [link["ifname"] for link in ip_addresses(addresses)
            if link["ifname"] != "lo"
            and any(a["family"] == "inet" and a["scope"] == "global" for a in link["addr_info"])]
