"""Give every IPv4 nginx `listen` its IPv6 counterpart (filter plugin).

Input: the text of each nginx config file that holds server blocks, and the
host's {ipv4: [global ipv6 of the same interface]} map. Output per file: the
new text (original bytes untouched except for inserted lines), the lines
added, and problems that must stop the host.

Rules (from measured nginx behaviour, see the project's field notes):
  listen 80 / *:80 / 0.0.0.0:80  -> listen [::]:80     (same parameters)
  listen 127.0.0.1:80            -> listen [::1]:80
  listen 10.0.0.5:80             -> listen [<ipv6 of that interface>]:80,
                                    or a problem when it has none
  IPv6 and unix listens          -> unchanged
  A server block with no listen  -> explicit `listen 80; listen [::]:80;`
  (nginx's implicit default would vanish the moment one listen is added).
`ipv6only=` is never copied: nginx sets IPV6_V6ONLY itself (default on), and
`ipv6only=off` on [::]:P beside an IPv4 listen on P fails at start with
EADDRINUSE although `nginx -t` passes, so that is reported as a problem.
A counterpart that already exists in the same server block is not added
again, which makes the transformation idempotent.
"""
from __future__ import annotations

import ipaddress
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass


def _statements(text):
    """Yield (block_path, name, args, start, end) for each simple directive.

    A small tokenizer: it honours comments, quotes and braces, which is all
    that is needed to find `listen` directives and the server block each one
    belongs to. `end` is the offset just past the terminating ';'.
    """
    i, n = 0, len(text)
    stack = []           # block names
    block_ids = []       # unique id per open block
    counter = [0]
    words, start = [], None
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            if start is None:
                start = i
            words.append(text[i + 1:j])
            i = j + 1
            continue
        if c.isspace():
            i += 1
            continue
        if c == ";":
            if words:
                yield (tuple(block_ids), tuple(stack), words[0], words[1:], start, i + 1)
            words, start = [], None
            i += 1
            continue
        if c == "{":
            counter[0] += 1
            stack.append(words[0] if words else "")
            block_ids.append(counter[0])
            if words and words[0] == "server":
                yield (tuple(block_ids), tuple(stack), "{server", [], start, i + 1)
            words, start = [], None
            i += 1
            continue
        if c == "}":
            if stack:
                stack.pop()
                block_ids.pop()
            words, start = [], None
            i += 1
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] not in ";{}#\"'":
            j += 1
        if start is None:
            start = i
        words.append(text[i:j])
        i = j


def parse_listen(args):
    """-> dict(kind=tcp|unix, family, host, port, params) for listen's args."""
    if not args:
        return None
    addr, params = args[0], list(args[1:])
    if addr.startswith("unix:"):
        return {"kind": "unix", "addr": addr, "params": params}
    if addr.startswith("["):
        m = re.match(r"^\[([^\]]+)\](?::(\d+))?$", addr)
        if not m:
            return {"kind": "bad", "addr": addr, "params": params}
        return {"kind": "tcp", "family": 6, "host": str(ipaddress.IPv6Address(m.group(1))),
                "port": int(m.group(2) or 80), "params": params}
    if addr.isdigit():
        return {"kind": "tcp", "family": 4, "host": "0.0.0.0", "port": int(addr), "params": params}
    host, _, port = addr.partition(":")
    if port and not port.isdigit():
        return {"kind": "bad", "addr": addr, "params": params}
    if host == "*":
        host = "0.0.0.0"
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        return {"kind": "name", "addr": addr, "host": host, "port": int(port or 80), "params": params}
    return {"kind": "tcp", "family": 4, "host": str(ip), "port": int(port or 80), "params": params}


def _fmt(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _counterparts(lst, interfaces):
    ip = ipaddress.IPv4Address(lst["host"])
    if ip.is_unspecified:
        return ["::"]
    if ip.is_loopback:
        return ["::1"]
    return [str(ipaddress.IPv6Address(a)) for a in interfaces.get(lst["host"], [])
            if not ipaddress.IPv6Address(a).is_link_local]


def _line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def nginx_plan(files, interfaces=None, ctx=None):
    """Plan the IPv6 listen lines for a set of nginx files {path: text}."""
    interfaces = interfaces or {}
    where = ""
    if ctx and ctx.get("host"):
        where = "host %s: " % ctx["host"]
    result = {"files": {}, "problems": [], "warnings": [], "changed": False, "listens": []}
    v4_ports = set()
    v6_off = []
    per_file = {}
    for path in sorted(files):
        text = files[path]
        servers = {}
        for ids, stack, name, args, start, end in _statements(text):
            if name == "{server":
                servers.setdefault(ids, {"listens": [], "open_end": end})
                continue
            if name == "proxy_pass" and args and re.match(r"^https?://localhost(:\d+)?(/|$)", args[0]):
                result["warnings"].append(
                    "%s%s line %d: proxy_pass %s resolves to ::1 first; with gunicorn on IPv4 only this logs "
                    "refused connects. Prefer a literal address (127.0.0.1 or [::1])."
                    % (where, path, _line_of(text, start), args[0]))
            if name != "listen" or "server" not in stack:
                continue
            server_ids = ids[:len(stack) - stack[::-1].index("server")]
            lst = parse_listen(args)
            lst.update({"start": start, "end": end, "line": _line_of(text, start)})
            servers.setdefault(server_ids, {"listens": [], "open_end": None})["listens"].append(lst)
        per_file[path] = servers
        for srv in servers.values():
            for lst in srv["listens"]:
                if lst["kind"] == "tcp" and lst["family"] == 4:
                    v4_ports.add(lst["port"])
                if lst["kind"] == "tcp" and lst["family"] == 6 and lst["host"] == "::" \
                        and "ipv6only=off" in lst["params"]:
                    v6_off.append((path, lst))
                if lst["kind"] in ("name", "bad"):
                    result["problems"].append(
                        "%s%s line %d: listen %s is not a literal address; nginx would bind whatever it "
                        "resolves to. Write an IP address." % (where, path, lst["line"], lst["addr"]))
    for path, lst in v6_off:
        if lst["port"] in v4_ports:
            result["problems"].append(
                "%s%s line %d: listen [::]:%d ipv6only=off beside an IPv4 listen on port %d fails at start "
                "with EADDRINUSE (nginx -t does not catch it); remove ipv6only=off"
                % (where, path, lst["line"], lst["port"], lst["port"]))

    for path in sorted(files):
        text = files[path]
        inserts = []  # (offset, text)
        added = []
        for srv in per_file[path].values():
            listens = srv["listens"]
            have_v6 = set((l["host"], l["port"]) for l in listens if l["kind"] == "tcp" and l["family"] == 6)
            if not listens and srv["open_end"] is not None:
                indent = _indent_after(text, srv["open_end"])
                lines = ["listen 80;", "listen [::]:80;"]
                inserts.append((srv["open_end"], "".join("\n" + indent + l for l in lines)))
                added.extend(lines)
                result["listens"].append({"file": path, "address": "::", "port": 80, "v6only": 1})
                continue
            for lst in listens:
                if lst["kind"] != "tcp" or lst["family"] != 4:
                    continue
                targets = _counterparts(lst, interfaces)
                if not targets:
                    result["problems"].append(
                        "%s%s line %d: listen %s: the interface that carries %s has no global IPv6 address"
                        % (where, path, lst["line"], _fmt(lst["host"], lst["port"]), lst["host"]))
                    continue
                params = [p for p in lst["params"] if not p.startswith("ipv6only=")]
                new_lines = []
                for t in targets:
                    result["listens"].append({"file": path, "address": t, "port": lst["port"],
                                              "v6only": 1 if t == "::" else None})
                    if (t, lst["port"]) in have_v6:
                        continue
                    have_v6.add((t, lst["port"]))
                    new_lines.append("listen %s;" % " ".join([_fmt(t, lst["port"])] + params))
                if new_lines:
                    indent = _indent_of(text, lst["start"])
                    inserts.append((lst["end"], "".join("\n" + indent + l for l in new_lines)))
                    added.extend(new_lines)
        new = text
        for offset, piece in sorted(inserts, reverse=True):
            new = new[:offset] + piece + new[offset:]
        result["files"][path] = {"content": new, "added": added, "changed": new != text}
        result["changed"] = result["changed"] or new != text
    return result


def _indent_of(text, offset):
    line_start = text.rfind("\n", 0, offset) + 1
    m = re.match(r"[ \t]*", text[line_start:offset])
    return m.group(0)


def _indent_after(text, offset):
    nxt = text.find("\n", offset)
    if nxt >= 0:
        m = re.match(r"[ \t]+", text[nxt + 1:])
        if m:
            return m.group(0)
    return "    "


class FilterModule(object):
    def filters(self):
        return {"dsr_nginx_plan": nginx_plan}
