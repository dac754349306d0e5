"""HAProxy's configuration for the dual-stack rollout (filter plugin): its
`bind` lines, its `server` lines, and the IPv6 twin of every IPv4 bind.

The text is read with HAProxy's own rules (configuration manual, 2.1-2.4):
a statement is one line (no continuation), words are split on unprotected
spaces and tabs, an unprotected `#` starts a comment even inside a word,
`\\` escapes, '...' quotes strongly, "..." weakly and expands `$VAR` /
`${VAR}` there only, a section starts at its keyword wherever it is indented,
and `.if`/`.elif`/`.else`/`.endif` make conditional blocks. Lines end at LF;
a CR before it belongs to the line end and is kept.

`binds(text)` (read by dsr_haproxy_dualstack_plan): every `bind` (and log-forward `dgram-bind`) with
its section, line, addresses (each with its family prefix, host, port and
family: ipv4, ipv6, unix, abns, fd, sockpair, name or env) and options; an
address on a `frontend`/`listen` line itself (HAProxy 1.x) is listed too,
marked `header`.

`dsr_haproxy_dualstack_plan(text, interfaces, ctx)`: for every IPv4 TCP bind
of a frontend or listen section that has no IPv6 twin on the same port in
the same section (and conditional block), the line to insert right after it,
same indentation and line end, every other byte kept:

  bind :80 / *:80 / 0.0.0.0:80 / ipv4@:80  -> bind :::80 v6only OPTIONS
  bind 127.0.0.1:8404                      -> bind [::1]:8404 OPTIONS
  bind 10.0.0.5:443 ssl crt x.pem          -> bind [<IPv6 of its interface>]:443 ssl crt x.pem
                                              (interfaces {ipv4: [ipv6, ...]}), or a problem

`v6only` keeps the twin off IPv4: without it a `:::80` socket is dual-stack
wherever net.ipv6.bindv6only is 0 (Linux's default), and HAProxy binds it
beside the IPv4 socket all the same (SO_REUSEPORT), so two sockets would
claim IPv4 port 80 (measured on Linux 6.x: `ss` lists `0.0.0.0:80` and
`*:80`, and the IPv4 socket gets the IPv4 connections). With `v6only` each
family has its own socket, `[::]:80` beside `0.0.0.0:80`, as the listener
check after the change expects. OPTIONS are the IPv4
line's own words, less `v4v6`/`v6only` and less `id N` (an id must be unique
in its frontend; `haproxy -c` refuses a copy). An IPv6 bind of the same port
(`:::80`, `[::]:80`, `ipv6@:80`, with or without `v4v6`) counts as the twin
of a wildcard; `::1` or `::` of a loopback; the interface's address or `::`
of a specific address. A second plan of the result adds nothing.

Problems (the balancer must stop, each naming the file and line): a host
name or an environment variable where the address is, a specific IPv4
address without a known IPv6 address, an address on the section line
(HAProxy 2.x refuses it: `please use the 'bind' keyword`), a bind without a
port, a family prefix that disagrees with its address, an unterminated
quote, a file whose last line has no line feed (HAProxy 2.x refuses it).
Left alone, as notes: UNIX, abstract, fd@ and sockpair@ sockets, UDP/QUIC
listeners, and the binds of peers and log-forward sections.

`dsr_haproxy_source_problems(text, names, ctx)`: the app hosts' servers
that would reach their host's IPv6 address from an IPv4 `source` (their own,
a `default-server` above them, their section's, or the last `defaults`
section's): HAProxy binds the connection to the source first, so such a
server would go DOWN once moved. Preflight stops on each, naming file, line
and lb_haproxy__ipv6_upstreams.

`dsr_haproxy_servers(text)`: every `server NAME ADDR[:PORT] OPTIONS` (and
`server-template`) of the backend and listen sections, so that app hosts can
be mapped to HAProxy server names by address
(`dsr_haproxy_server_names(servers, hosts, hostvars)`).

`dsr_haproxy_server_edit(text, changes, ctx)`: the text with the servers
named in `changes` ({"BACKEND/SERVER": "ADDRESS"}, a bare IPv4 or IPv6
address) pointed at their new address, so that a reload keeps what the
runtime API set. Only the address inside the address word changes; its
port, the options, comments, indentation and line ends, and every other
line keep each byte:

  server web1 192.0.2.11:80 check      -> server web1 [2001:db8::11]:80 check
  server web1 ipv4@192.0.2.11:80       -> server web1 ipv6@[2001:db8::11]:80
  server web1 [2001:db8::11]           -> server web1 192.0.2.11   (no port stays no port)

An IPv6 address is always written in brackets (HAProxy 2.6 `haproxy -c`
accepts `[A]:PORT`, `ipv6@[A]:PORT` and `[A]`; without brackets it takes
the number after the last colon for the port, so `2001:db8::11` with no
port would be read as `2001:db8:` port 11), in its compressed form. A
family prefix that names one family (`ipv4@`/`ipv6@`, `tcp4@`/`tcp6@`)
gets the new address's (HAProxy refuses `ipv4@[2001:db8::11]:80`); `ip@`,
`tcp@` and `stream+` stay. A server that already has the address (compared
as addresses: `0:0::1` is `::1`) is left as it is, so a second edit
changes nothing. Refused (an error naming the file, the line and the host
of `ctx`; nothing is edited): a server that does not exist or whose
BACKEND/SERVER appears twice, a `server-template`, an address word that is
not an IP literal (host name, environment variable, UNIX or other socket,
wildcard `0.0.0.0`: the client's own destination), a port range or offset
(`+N`/`-N`), a prefix that disagrees with the address, an address word
with quotes or escapes inside, and a new address that is not a plain IP
address (a port, brackets, a scope `%eth0`, `0.0.0.0`/`::`). Servers in
`.if` blocks are edited like the others.
"""
from __future__ import annotations

import ipaddress
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass

# Section keywords (HAProxy 2.6, and the newer ones so that their lines are
# not taken for another section's).
SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist", "mailers",
            "program", "http-errors", "ring", "log-forward", "cache", "fcgi-app", "namespace_list", "traces",
            "crt-store", "acme")
TWINNED = ("frontend", "listen")
SERVERS = ("backend", "listen")
# Bind options that take a value (configuration manual, 5.1), so that a
# value is never taken for an option.
ARG_OPTIONS = frozenset((
    "accept-netscaler-cip", "alpn", "backlog", "ca-file", "ca-ignore-err", "ca-sign-file", "ca-sign-pass",
    "ca-verify-file", "ciphers", "ciphersuites", "client-sigalgs", "crl-file", "crt", "crt-ignore-err",
    "crt-list", "curves", "ecdhe", "expose-fd", "gid", "group", "guid", "id", "idle-ping", "interface", "label",
    "level", "maxconn", "mode", "mss", "name", "namespace", "nice", "npn", "ocsp-update", "process", "proto",
    "quic-cc-algo", "severity-output", "shards", "sigalgs", "ssl-max-ver", "ssl-min-ver", "tcp-md5sig",
    "tcp-ut", "thread", "tls-ticket-keys", "uid", "user", "verify"))
# Family prefixes (configuration manual, 11.1-11.3): name -> (family, transport).
PREFIXES = {
    "ip": (None, "stream"), "ipv4": ("ipv4", "stream"), "ipv6": ("ipv6", "stream"),
    "tcp": (None, "stream"), "tcp4": ("ipv4", "stream"), "tcp6": ("ipv6", "stream"),
    "udp": (None, "dgram"), "udp4": ("ipv4", "dgram"), "udp6": ("ipv6", "dgram"),
    "quic4": ("ipv4", "quic"), "quic6": ("ipv6", "quic"),
    "unix": ("unix", "stream"), "uxst": ("unix", "stream"), "uxdg": ("unix", "dgram"),
    "abns": ("abns", "stream"), "fd": ("fd", "stream"), "sockpair": ("sockpair", "stream"),
}
_PREFIX = re.compile(r"^(?:(stream|dgram)\+)?([a-z0-9]+)@")
_PORT = re.compile(r"^[0-9]+(?:-[0-9]+)?$")
_SERVER_PORT = re.compile(r"^[+-]?[0-9]+$")
_ENV = re.compile(r"\$(?:\{|[A-Za-z_.])")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


# --- reading ----------------------------------------------------------------------------------------

def _lines(text):
    """[(number, body, end)]: split at LF as HAProxy reads; a CR before the LF
    belongs to `end` so that an inserted line can use the same ending."""
    parts = (text or "").split("\n")
    out = []
    for i, part in enumerate(parts):
        end = "\n" if i < len(parts) - 1 else ""
        if i == len(parts) - 1 and part == "":
            break
        if part.endswith("\r"):
            part, end = part[:-1], "\r" + end
        out.append((i + 1, part, end))
    return out


def tokenize(line):
    """The words of one line as HAProxy cuts them: ([{value, raw, env}], error).

    `raw` is the word as written (quotes and escapes kept), `value` what
    HAProxy makes of it (environment variables left unexpanded), `env` whether
    it holds a variable HAProxy would expand (only inside double quotes).
    """
    words, i, n = [], 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n or line[i] == "#":
            return words, None
        start, value, env = i, [], False
        while i < n and line[i] not in " \t#":
            c = line[i]
            if c == "\\":
                i, ch = _escape(line, i)
                value.append(ch)
            elif c == "'":
                j = line.find("'", i + 1)
                if j < 0:
                    return words, "unterminated single quote"
                value.append(line[i + 1:j])
                i = j + 1
            elif c == '"':
                i += 1
                while i < n and line[i] != '"':
                    if line[i] == "\\":
                        i, ch = _escape(line, i)
                        value.append(ch)
                        continue
                    if _ENV.match(line, i):
                        env = True
                    value.append(line[i])
                    i += 1
                if i >= n:
                    return words, "unterminated double quote"
                i += 1
            else:
                value.append(c)
                i += 1
        words.append({"value": "".join(value), "raw": line[start:i], "env": env})


def _escape(line, i):
    """(next index, character) for the backslash at line[i]."""
    if i + 1 >= len(line):
        return i + 1, "\\"
    c = line[i + 1]
    if c == "x" and re.match(r"[0-9a-fA-F]{2}", line[i + 2:i + 4]):
        return i + 4, chr(int(line[i + 2:i + 4], 16))
    return i + 2, _ESCAPES.get(c, c)


def parse_address(word, env=False, server=False):
    """One address of a bind or server line (one element of a comma list)."""
    a = {"address": word, "prefix": None, "host": None, "port": None, "family": None, "transport": "stream",
         "wildcard": False, "loopback": False, "error": None}
    rest, hint = word, None
    m = _PREFIX.match(word)
    if m:
        a["prefix"] = word[:m.end() - 1]
        if m.group(2) not in PREFIXES:
            a.update(family="unknown", error="unknown address prefix %s@" % m.group(2))
            return a
        hint, a["transport"] = PREFIXES[m.group(2)]
        if m.group(1):
            a["transport"] = m.group(1)
        rest = word[m.end():]
    if hint in ("unix", "abns", "fd", "sockpair") or (hint is None and rest.startswith("/") and not a["prefix"]):
        a.update(family=hint or "unix", host=rest)
        return a
    if env:
        a.update(family="env")
        return a
    if rest.startswith("["):
        host, _bracket, tail = rest[1:].partition("]")
        if tail and not tail.startswith(":"):
            a.update(family="unknown", error="cannot read the address %s" % word)
            return a
        port = tail[1:] if tail else None
    elif ":" in rest:
        host, port = rest.rsplit(":", 1)
    else:
        host, port = rest, None
    a["port"] = port if port not in (None, "") else None
    if host in ("", "*"):
        family = hint or "ipv4"
        a.update(host="::" if family == "ipv6" else "0.0.0.0", family=family, wildcard=True)
    else:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            a.update(host=host, family="name")
            if ":" in host:
                a["error"] = ("%s: HAProxy takes the number after the last colon as the port, which leaves %s, "
                              "no address (write [IPv6]:port)" % (word, host))
        else:
            family = "ipv%d" % ip.version
            a.update(host=str(ip), family=family, wildcard=ip.is_unspecified, loopback=ip.is_loopback)
            if hint and hint != family:
                a["error"] = "the prefix %s@ says %s, the address is %s" % (a["prefix"], hint, family)
    if a["port"] is not None and not (_SERVER_PORT if server else _PORT).match(a["port"]):
        a["error"] = a["error"] or "cannot read the port of %s" % word
    return a


def _bind_options(words):
    """[(option word, [value words])] of a bind line's options."""
    out, i = [], 0
    while i < len(words):
        w = words[i]
        if w["value"] in ARG_OPTIONS and i + 1 < len(words):
            out.append((w, [words[i + 1]]))
            i += 2
        else:
            out.append((w, []))
            i += 1
    return out


def _statements(text):
    """Yield (number, body, end, words, error, section, block) for each statement line."""
    section = None
    stack, counter = [], [0]

    def branch():
        counter[0] += 1
        return counter[0]

    for number, body, end in _lines(text):
        words, error = tokenize(body)
        if not words and not error:
            continue
        key = words[0]["value"] if words else ""
        if key == ".if":
            stack.append(branch())
            continue
        if key in (".elif", ".else"):
            if stack:
                stack[-1] = branch()
            continue
        if key == ".endif":
            if stack:
                stack.pop()
            continue
        if key in SECTIONS:
            name = words[1]["value"] if len(words) > 1 else ""
            section = {"type": key, "name": name, "line": number, "id": number,
                       "label": ("%s %s" % (key, name)).strip()}
        yield number, body, end, words, error, section, tuple(stack)


def _where(ctx, number=None):
    ctx = ctx or {}
    host = "host %s: " % ctx["host"] if ctx.get("host") else ""
    line = " line %d" % number if number else ""
    return "%s%s%s" % (host, ctx.get("path") or "haproxy.cfg", line)


def bind_lines(text):
    """Every bind of the configuration, see the module's docstring."""
    out = []
    for number, body, end, words, error, section, block in _statements(text):
        key = words[0]["value"] if words else ""
        header = (key in ("frontend", "listen") and len(words) > 2 and words[2]["value"] != "from")
        if not (key in ("bind", "dgram-bind") or header or error):
            continue
        if error and key not in ("bind", "dgram-bind"):
            continue
        entry = {"line": number, "text": body.strip(), "keyword": "bind" if header else key, "header": header,
                 "section": section["label"] if section else "", "section_type": section["type"] if section else "",
                 "section_name": section["name"] if section else "", "conditional": bool(block),
                 "addresses": [], "options": [], "v4v6": False, "v6only": False, "error": error,
                 "_section_id": section["id"] if section else 0, "_block": block, "_words": words, "_body": body,
                 "_end": end}
        if not error:
            addr_word = words[2] if header else (words[1] if len(words) > 1 else None)
            if addr_word is None:
                entry["error"] = "bind without an address"
            else:
                entry["addresses"] = [parse_address(e, addr_word["env"]) for e in addr_word["value"].split(",")]
                if key == "dgram-bind":
                    for a in entry["addresses"]:
                        a["transport"] = "dgram"
                opts = words[3:] if header else words[2:]
                entry["options"] = [w["value"] for w in opts]
                entry["v4v6"] = "v4v6" in entry["options"]
                entry["v6only"] = "v6only" in entry["options"]
                for a in entry["addresses"]:
                    a["covers_ipv4"] = _covers_ipv4(a, entry)
                entry["_options"] = opts
        out.append(entry)
    return out


def _covers_ipv4(a, entry):
    if a["family"] == "ipv4":
        return True
    if a["family"] == "ipv6" and a["wildcard"] and a["transport"] == "stream":
        if entry["v6only"]:
            return False
        return True if entry["v4v6"] else None  # None: as net.ipv6.bindv6only says
    return False


def _public(entries):
    return [dict((k, v) for k, v in e.items() if not k.startswith("_")) for e in entries]


def binds(text):
    """Every bind line with section, line, addresses, families and options."""
    return _public(bind_lines(text))


# --- the plan ---------------------------------------------------------------------------------------

def _twin_hosts(a, interfaces):
    """(IPv6 hosts any of which is a twin of address `a`, the host to add) or (None, why)."""
    if a["wildcard"]:
        return ["::"], "::"
    if a["loopback"]:
        return ["::1", "::"], "::1"
    mapped = [str(ipaddress.ip_address(x)) for x in (interfaces or {}).get(a["host"]) or []]
    if mapped:
        return mapped + ["::"], mapped[0]
    return None, ("%s is a specific IPv4 address and the IPv6 address of its interface is not known"
                  % a["host"])


def _fmt_twin(host, port):
    return ":::%s" % port if host == "::" else "[%s]:%s" % (host, port)


def _int_port(port):
    """A listen's port as the number ss reports (a range stays text)."""
    return int(port) if str(port).isdigit() else port


def dualstack_plan(text, interfaces=None, ctx=None):
    """dsr_haproxy_dualstack_plan: the IPv6 twin of every IPv4 bind, see the module's docstring."""
    text = text or ""
    entries = bind_lines(text)
    result = {"text": text, "changed": False, "added": [], "edits": [], "listens": [], "problems": [], "notes": []}
    # IPv6 TCP sockets each (section, block) already has: (section id, block, host, port).
    have = []
    for e in entries:
        for a in e["addresses"]:
            if a["family"] == "ipv6" and a["transport"] == "stream" and a["port"] and not a["error"]:
                have.append((e["_section_id"], e["_block"], a["host"], a["port"]))

    def covered(e, hosts, port):
        return any(sid == e["_section_id"] and e["_block"][:len(block)] == block and host in hosts and p == port
                   for sid, block, host, p in have)

    if text and not text.endswith("\n"):
        result["problems"].append(
            "%s: the file does not end with a line feed; HAProxy 2.x refuses it (\"Missing LF on last line, "
            "file might have been truncated\")" % _where(ctx, len(_lines(text))))
    inserts = {}
    for e in entries:
        where = _where(ctx, e["line"])
        if e["error"]:
            result["problems"].append("%s: %s: %s" % (where, e["error"], e["text"]))
            continue
        if e["header"]:
            result["problems"].append(
                "%s: the address is on the %s line (HAProxy 1.x form; HAProxy 2.x refuses it: \"please use "
                "the 'bind' keyword for listening addresses\"): move it to a bind line first: %s"
                % (where, e["section_type"], e["text"]))
            continue
        if e["section_type"] not in TWINNED:
            if any(a["family"] in ("ipv4", "name", "env") for a in e["addresses"]):
                result["notes"].append("%s: left alone: a bind of a %s section: %s"
                                       % (where, e["section_type"] or "global", e["text"]))
            continue
        twins, problems = [], []
        for a in e["addresses"]:
            if a["error"]:
                problems.append(a["error"])
            elif a["family"] in ("unix", "abns", "fd", "sockpair"):
                result["notes"].append("%s: left alone: %s is not an IP socket" % (where, a["address"]))
            elif a["transport"] != "stream":
                result["notes"].append("%s: left alone: %s is %s, not TCP" % (where, a["address"],
                                                                              a["transport"].upper()))
            elif a["family"] == "name":
                problems.append("%s is a host name: which addresses it binds is only known at start" % a["host"])
            elif a["family"] == "env":
                problems.append("%s takes its address from the environment" % a["address"])
            elif a["port"] is None:
                problems.append("%s has no port" % a["address"])
            elif a["family"] == "ipv6":
                result["listens"].append({"address": a["host"], "port": _int_port(a["port"]), "section": e["section"],
                                          "line": e["line"], "added": False})
            elif a["family"] == "ipv4":
                hosts, add = _twin_hosts(a, interfaces)
                if hosts is None:
                    problems.append(add)
                elif not covered(e, hosts, a["port"]):
                    twins.append((add, a["port"]))
        if problems:
            result["problems"].append("%s: cannot give it an IPv6 twin safely (%s): %s"
                                      % (where, "; ".join(sorted(set(problems), key=problems.index)), e["text"]))
            continue
        if not twins:
            continue
        options = []
        for w, vals in _bind_options(e["_options"]):
            if w["value"] in ("v4v6", "v6only", "id"):
                continue
            options.append(" ".join([w["raw"]] + [v["raw"] for v in vals]))
        words = ["bind", ",".join(_fmt_twin(h, p) for h, p in twins)]
        if any(h == "::" for h, _port in twins):
            words.append("v6only")
        line = " ".join(words + options)
        indent = re.match(r"^[ \t]*", e["_body"]).group(0)
        end = e["_end"] or _line_end(text)
        inserts[e["line"]] = (indent + line, end, e["_end"] == "")
        for h, p in twins:
            have.append((e["_section_id"], e["_block"], h, p))
            result["listens"].append({"address": h, "port": _int_port(p), "section": e["section"], "line": e["line"],
                                      "added": True})
        result["added"].append({"after": e["line"], "section": e["section"], "line": line})
        result["edits"].append({"after": e["line"], "insert": indent + line + (end if e["_end"] else "")})
    if inserts:
        out = []
        for number, body, end in _lines(text):
            out.append(body + end)
            if number in inserts:
                new, new_end, last = inserts[number]
                out.append((new_end + new) if last else (new + new_end))
        result["text"] = "".join(out)
        result["changed"] = True
    return result


def _line_end(text):
    return "\r\n" if "\r\n" in text else "\n"


# --- servers ----------------------------------------------------------------------------------------

def servers(text):
    """dsr_haproxy_servers: every server (and server-template) of the backend and listen sections."""
    out = []
    for number, body, end, words, error, section, block in _statements(text):
        if error or not words or not section or section["type"] not in SERVERS:
            continue
        key = words[0]["value"]
        if key not in ("server", "server-template"):
            continue
        template = key == "server-template"
        at = 3 if template else 2
        if len(words) <= at:
            continue
        a = parse_address(words[at]["value"], words[at]["env"], server=True)
        entry = {"backend": section["name"], "section_type": section["type"], "server": words[1]["value"],
                 "line": number, "raw": words[at]["value"], "address": a["host"], "port": a["port"],
                 "family": a["family"],
                 "prefix": a["prefix"], "error": a["error"], "options": [w["value"] for w in words[at + 1:]],
                 "template": template,
                 "conditional": bool(block), "text": body.strip()}
        if template:
            entry["count"] = words[2]["value"]
        out.append(entry)
    return out


def _same(a, b):
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def server_names(config, hosts, hostvars):
    """dsr_haproxy_server_names: {host: ["BACKEND/SERVER", ...]} for the app
    hosts, matched by dsr_lb_address (IPv4) or dsr_lb_address6 (IPv6, once
    moved). `config` is the configuration text or dsr_haproxy_servers' list.
    A host with no server fails, naming it: draining a host HAProxy does not
    know would drain nothing."""
    entries = servers(config) if isinstance(config, str) else list(config or [])
    out, missing = {}, []
    for h in hosts:
        hv = hostvars[h]
        mine = [x for x in (hv.get("dsr_lb_address"), hv.get("dsr_lb_address6")) if x]
        names = ["%s/%s" % (s["backend"], s["server"]) for s in entries
                 if not s.get("template") and not s.get("error") and s.get("address")
                 and any(_same(s["address"], m) for m in mine)]
        if not names:
            missing.append("%s (%s)" % (h, ", ".join(mine) or "no address"))
        out[h] = names
    if missing:
        raise AnsibleFilterError("HAProxy's configuration has no server line for %s" % "; ".join(missing))
    return out


def _word_starts(body, words):
    """The offset in `body` of each word of tokenize(body) (words are
    separated by spaces and tabs only), or None if they cannot be found."""
    out, i = [], 0
    for w in words:
        while i < len(body) and body[i] in " \t":
            i += 1
        if not body.startswith(w["raw"], i):
            return None
        out.append(i)
        i += len(w["raw"])
    return out


def _new_address(value):
    """(ipaddress object, None) for a change's address, or (None, why)."""
    try:
        ip = ipaddress.ip_address(str(value).strip() if value is not None else "")
    except ValueError:
        return None, ("%r is not a bare IPv4 or IPv6 address (no port, no brackets, no name)" % (value,))
    if getattr(ip, "scope_id", None):
        return None, "%s has a scope: HAProxy 2.6 cannot resolve [%s]" % (value, value)
    if ip.is_unspecified:
        return None, "%s is the unspecified address: a server there connects to each client's own destination" % (
            value,)
    return ip, None


def _edit_server_word(body, ip):
    """(the line `body` with the address of its server's address word set to
    `ip`, None) or (None, why it is refused)."""
    words, error = tokenize(body)
    if error or len(words) < 3 or words[0]["value"] != "server":
        return None, error or "not a server line"
    word, starts = words[2], _word_starts(body, words)
    if starts is None:
        return None, "cannot find the address word"
    raw, value = word["raw"], word["value"]
    if word["env"]:
        return None, "the address %s comes from an environment variable" % raw
    if raw == value:
        inner = 0
    elif len(raw) >= 2 and raw[0] in "'\"" and raw[-1] == raw[0] and raw[1:-1] == value:
        inner = 1
    else:
        return None, "the address word %s has quotes or escapes inside" % raw
    a = parse_address(value, server=True)
    if a["error"]:
        return None, a["error"]
    if a["family"] in ("unix", "abns", "fd", "sockpair"):
        return None, "%s is not an IP socket" % value
    if a["family"] == "name":
        return None, "%s is a host name, not an IP address" % a["host"]
    if a["family"] not in ("ipv4", "ipv6") or a["transport"] != "stream":
        return None, "%s is not a TCP address" % value
    if a["wildcard"]:
        return None, "%s is the unspecified address: the server connects to each client's own destination" % value
    if a["port"] is not None and a["port"][0] in "+-":
        return None, "the port %s is an offset from the client's port" % a["port"]
    if _same(a["host"], str(ip)):
        return body, None
    # The host part of the value: after the prefix, in brackets or up to the last colon.
    m = _PREFIX.match(value)
    rest_at = m.end() if m else 0
    rest = value[rest_at:]
    if rest.startswith("["):
        host_end = rest_at + rest.index("]") + 1
    else:
        host_end = rest_at + (rest.rfind(":") if ":" in rest else len(rest))
    family = "ipv%d" % ip.version
    new = value[:rest_at] + ("[%s]" % ip if ip.version == 6 else str(ip)) + value[host_end:]
    if m and PREFIXES[m.group(2)][0] not in (None, family):
        name = m.group(2)
        new = new[:m.start(2)] + name[:-1] + family[-1] + new[m.end(2):]
    at = starts[2] + inner
    return body[:at] + new + body[at + len(value):], None


def server_edit(text, changes, ctx=None):
    """dsr_haproxy_server_edit: the text with the named servers' addresses
    changed, every other byte kept, see the module's docstring."""
    text = text or ""
    if not isinstance(changes, dict):
        raise AnsibleFilterError("dsr_haproxy_server_edit: the changes must be a dict {\"BACKEND/SERVER\": "
                                 "\"ADDRESS\"}, not %s" % type(changes).__name__)
    entries = servers(text)
    lines = _lines(text)
    bodies = dict((number, body) for number, body, end in lines)
    problems, edits = [], {}
    for key, value in changes.items():
        backend, slash, name = str(key).partition("/")
        if not slash or not backend or not name or "/" in name:
            problems.append("%s: %r is not BACKEND/SERVER" % (_where(ctx), key))
            continue
        ip, why = _new_address(value)
        if ip is None:
            problems.append("%s: %s: %s" % (_where(ctx), key, why))
            continue
        found = [s for s in entries if s["backend"] == backend and s["server"] == name]
        if not found:
            made = [s for s in entries if s["backend"] == backend and s["template"]
                    and re.match(r"^%s[0-9]+$" % re.escape(s["server"]), name)]
            if made:
                problems.append("%s: %s is made by a server-template, whose addresses are not edited: %s"
                                % (_where(ctx, made[0]["line"]), key, made[0]["text"]))
            else:
                problems.append("%s: there is no server %s in a backend or listen section" % (_where(ctx), key))
            continue
        if len(found) > 1:
            problems.append("%s: the server %s appears %d times (lines %s): which one to edit is not known"
                            % (_where(ctx, found[0]["line"]), key, len(found),
                               ", ".join(str(s["line"]) for s in found)))
            continue
        s = found[0]
        if s["template"]:
            problems.append("%s: %s is a server-template, whose addresses are not edited: %s"
                            % (_where(ctx, s["line"]), key, s["text"]))
            continue
        new, why = _edit_server_word(bodies[s["line"]], ip)
        if new is None:
            problems.append("%s: cannot point %s at %s (%s): %s" % (_where(ctx, s["line"]), key, ip, why, s["text"]))
        elif new != bodies[s["line"]]:
            edits[s["line"]] = new
    if problems:
        raise AnsibleFilterError("HAProxy's server lines were not edited: %s" % "; ".join(problems))
    if not edits:
        return text
    return "".join(edits.get(number, body) + end for number, body, end in lines)


# --- sources: the address HAProxy connects from ------------------------------------------------------

def _source_of(words, start):
    """The address of a `source ADDR[:PORT] ...` found in words[start:], or None."""
    for i in range(start, len(words) - 1):
        if words[i]["value"] == "source":
            return words[i + 1]["value"]
    return None


def source_problems(text, names, ctx=None):
    """dsr_haproxy_source_problems: the app hosts' servers (`names`:
    dsr_haproxy_server_names) that would reach their host's IPv6 address from
    an IPv4 `source`. HAProxy opens the connection in the server's family and
    binds it to the source address first; an IPv4 source on an IPv6 server
    fails, and the server goes DOWN. The source that applies (configuration
    manual, "source" and "default-server"): the server line's own `source`;
    else a `default-server ... source` above it in its section (it applies
    to the servers declared after it); else its section's `source`
    statement (wherever it is in the section); else the last `defaults`
    section's. A default-server source (a server setting) wins over a
    section's `source` (a proxy setting): the order is the server's own,
    its section's default-server, the defaults' default-server, its
    section's source, the defaults' source (measured with HAProxy 2.6: a
    defaults `default-server source` beats a backend `source`)."""
    text = text or ""
    wanted = dict((n, h) for h, ns in (names or {}).items() for n in ns)
    stmts = [x for x in _statements(text) if not x[4] and x[3] and x[5]]
    proxy_src = {}
    for number, body, end, words, error, section, block in stmts:
        if words[0]["value"] == "source" and len(words) > 1:
            proxy_src[section["id"]] = (words[1]["value"], number)
    # The last `defaults` section's default-server source and source; a new
    # `defaults` section replaces the previous one for the proxies after it.
    d_server = d_proxy = None
    server_default, problems = {}, []
    for number, body, end, words, error, section, block in stmts:
        key = words[0]["value"]
        if key in SECTIONS:
            if key == "defaults":
                d_server = d_proxy = None
            continue
        if section["type"] == "defaults":
            if key == "default-server" and _source_of(words, 1) is not None:
                d_server = (_source_of(words, 1), number)
            elif key == "source" and len(words) > 1:
                d_proxy = (words[1]["value"], number)
            continue
        if key == "default-server" and _source_of(words, 1) is not None:
            server_default[section["id"]] = (_source_of(words, 1), number)
            continue
        if key != "server" or section["type"] not in SERVERS or len(words) < 3:
            continue
        name = "%s/%s" % (section["name"], words[1]["value"])
        if name not in wanted:
            continue
        own = _source_of(words, 3)
        # A server setting (the line's own, a default-server's) wins over a
        # proxy setting (`source`), and its section's over the defaults'.
        src = ((own, number) if own is not None else server_default.get(section["id"])
               or d_server or proxy_src.get(section["id"]) or d_proxy)
        if src is None:
            continue
        if parse_address(src[0])["family"] == "ipv4":
            problems.append(
                "%s: server %s (host %s) connects from the IPv4 source %s (line %d); HAProxy cannot reach the "
                "host's IPv6 address from it (the server would go DOWN): give it an IPv6 source, or set "
                "lb_haproxy__ipv6_upstreams: false to keep the balancer-to-app hop on IPv4"
                % (_where(ctx, number), name, wanted[name], src[0], src[1]))
    return problems


def server_edit_problems(text, names, ctx=None):
    """dsr_haproxy_server_edit_problems: why the app hosts' server lines
    (`names`: {host: [B/S, ...]}) could not be moved, found in preflight by
    a dry run of dsr_haproxy_server_edit to a documentation address, so that
    a line the edit refuses (a name twice, a host name, a port range) stops
    the run before any host is drained, not after it migrated."""
    changes = dict((n, "2001:db8::1") for ns in (names or {}).values() for n in ns)
    if not changes:
        return []
    try:
        server_edit(text, changes, ctx)
    except AnsibleFilterError as e:
        return [str(e)]
    return []


class FilterModule(object):
    def filters(self):
        return {
            "dsr_haproxy_dualstack_plan": dualstack_plan,
            "dsr_haproxy_servers": servers,
            "dsr_haproxy_server_names": server_names,
            "dsr_haproxy_source_problems": source_problems,
            "dsr_haproxy_server_edit_problems": server_edit_problems,
            "dsr_haproxy_server_edit": server_edit,
        }
