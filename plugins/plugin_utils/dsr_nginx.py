"""Give every IPv4 nginx `listen` its IPv6 counterpart (filter plugin).

Input: the files nginx reads, either as dsr_read_files' `files` list
({path, real_path, content (base64)}, in the order `nginx -T` lists them) or
as a dict {path: text}; the host's {ipv4: [global ipv6 of the same
interface]} map; a context dict (`host` for messages, optionally `hosts`: the
text of the host's /etc/hosts, and `prefix`: nginx's configuration prefix).
Output: per real file the new text (original bytes untouched except for
inserted lines) and the lines added; the IPv6 sockets expected afterwards
(`listens`); the resulting listens of every server block (`servers`);
problems that must stop the host; warnings; notes.

The text is read with nginx's grammar through crossplane's lexer (quotes,
escapes, `#` inside a token, `${var}`, Lua blocks), and includes are resolved
as nginx resolves them: relative to the configuration prefix, globs expanded
in byte order, hidden files not matched by a wildcard, each include read in
the context of the directive that includes it. A `listen` that comes from an
include belongs to the server that includes it.

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
nginx takes `default_server` and the socket options (backlog, rcvbuf, sndbuf,
setfib, fastopen, accept_filter, deferred, bind, ipv6only, reuseport,
so_keepalive) from one listen per address and port across all servers: a
twin drops them when another listen on its address and port carries them.
A counterpart that already exists in the same server block is not added
again, which makes the transformation idempotent.

A listen in a file included by several servers is edited in that file, once,
when every including server lacks the counterpart; when only some have it the
host stops with the file and line named. A server whose own block includes a
file that was not read stops the host too (its listens are unknown).

stream {} servers follow the same rules for TCP: the stream module's listen
has the same address forms and the same once-per-address options. UDP
listens (`udp` in stream, `quic` in http) are left alone and reported as
notes: the verification after the change and the exposure check look at TCP.

`localhost`, and every name the host's /etc/hosts maps to both 127.0.0.1
and ::1 (and `*.localhost`, which systemd's resolvers answer with both), is
reported as a warning with file and line wherever nginx connects to it:
proxy_pass, the other *_pass directives and upstream `server` lines.
"""
from __future__ import annotations

import base64
import fnmatch
import ipaddress
import posixpath
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    class AnsibleFilterError(Exception):
        pass

try:
    import crossplane  # noqa: F401  (importing it registers the Lua block lexer)
    from crossplane.analyzer import enter_block_ctx
    from crossplane.errors import NgxParserBaseException
    from crossplane.lexer import _balance_braces, _lex_file_object
except ImportError:  # pragma: no cover
    crossplane = None

# Options nginx accepts from one listen only per address and port.
ONCE_SET = ("backlog=", "rcvbuf=", "sndbuf=", "setfib=", "fastopen=", "accept_filter=", "deferred", "bind",
            "ipv6only=", "reuseport", "so_keepalive=")
DEFAULT = ("default_server", "default")
PASS_DIRECTIVES = ("proxy_pass", "uwsgi_pass", "fastcgi_pass", "scgi_pass", "grpc_pass", "memcached_pass")


class ParseError(Exception):
    def __init__(self, message, line):
        Exception.__init__(self, message)
        self.line = line


# -- reading ----------------------------------------------------------------

def _tokens(text, path):
    """crossplane's lexer over text: (token, line, quoted, offset) where offset
    is that of the last character the lexer read (the `;`/`{`/`}` itself for
    those tokens, the character that ended the token otherwise).

    crossplane.lex() and crossplane.parse() open paths on the machine that
    runs them and give line numbers only; the plan holds the host's text and
    needs offsets to insert lines byte for byte, so it drives the lexer that
    lex() wraps (pinned version; a corpus test compares the statements with
    crossplane.parse()).
    """
    pos = [-1]

    def chars():
        for i, c in enumerate(text):
            pos[0] = i
            yield c
    for token, line, quoted in _balance_braces(_lex_file_object(chars()), path):
        yield token, line, quoted, pos[0]


def parse_text(text, path="-"):
    """Statements of one file: [{directive, args, line, start, end, block?}].

    `end` is the offset of the `;` or `{` that ends the directive, `start` that
    of its name (None when the name was quoted). Comments are dropped, as
    nginx drops them.
    """
    toks = _tokens(text, path)

    def block(depth):
        out = []
        for token, line, quoted, off in toks:
            if not quoted and token == "}":
                if not depth:
                    raise ParseError('unexpected "}"', line)
                return out
            if not quoted and token.startswith("#"):
                continue
            if not quoted and token in ("{", ";"):
                raise ParseError('unexpected "%s"' % token, line)
            start = off - len(token)
            if quoted or start < 0 or text[start:off] != token:
                start = None
            stmt = {"directive": token, "args": [], "line": line, "start": start}
            for tok, tline, tquoted, toff in toks:
                if not tquoted and tok in ("{", ";", "}"):
                    break
                if not tquoted and tok.startswith("#"):
                    continue
                stmt["args"].append(tok)
            else:
                raise ParseError("unexpected end of file, expecting \";\" or \"}\"", line)
            if tok == "}":
                raise ParseError('unexpected "}"', tline)
            stmt["end"] = toff
            if tok == "{":
                stmt["block"] = block(depth + 1)
            out.append(stmt)
        if depth:
            raise ParseError('unexpected end of file, expecting "}"', None)
        return out

    try:
        return block(0)
    except NgxParserBaseException as e:
        raise ParseError(e.strerror, e.lineno)


def _decode(content):
    return base64.b64decode(content).decode("utf-8", "surrogateescape")


def _inputs(files):
    """-> [(nginx path, real path, text)] in input order."""
    if isinstance(files, dict):
        return [(p, p, t) for p, t in files.items()]
    out = []
    for f in files or []:
        if f.get("exists") is False or f.get("content") is None:
            continue
        out.append((f["path"], f.get("real_path") or f["path"], _decode(f["content"])))
    return out


# -- includes ---------------------------------------------------------------

def _glob_match(pattern, path):
    """glob(3) without flags, as nginx calls it: a wildcard matches neither `/`
    nor a leading dot of a file name."""
    pp, cp = pattern.split("/"), path.split("/")
    if len(pp) != len(cp):
        return False
    for p, c in zip(pp, cp):
        if p == c:
            continue
        if c.startswith(".") and not p.startswith("."):
            return False
        if not fnmatch.fnmatchcase(c, p):
            return False
    return True


def _resolve(arg, prefix, known):
    """Files (nginx paths among `known`) an include reads, in nginx's order;
    None when a plain (non-glob) include names a file that was not read."""
    full = arg if arg.startswith("/") else prefix + arg
    if not re.search(r"[*?\[]", arg):
        for k in (full, posixpath.normpath(full)):
            if k in known:
                return [k]
        return None
    hits = [k for k in known if _glob_match(full, k) or _glob_match(posixpath.normpath(full), k)]
    return sorted(hits, key=lambda s: s.encode("utf-8", "surrogateescape"))


# -- listen -----------------------------------------------------------------

def parse_listen(args):
    """-> dict(kind=tcp|unix|name|bad, family, host, port, params) for listen's args."""
    if not args:
        return None
    addr, params = args[0], list(args[1:])
    if addr.startswith("unix:"):
        return {"kind": "unix", "addr": addr, "params": params}
    if addr.startswith("["):
        m = re.match(r"^\[([^\]]+)\](?::(\d+))?$", addr)
        try:
            host = str(ipaddress.IPv6Address(m.group(1))) if m else None
        except ValueError:
            host = None
        if host is None:
            return {"kind": "bad", "addr": addr, "params": params}
        return {"kind": "tcp", "family": 6, "host": host, "port": int(m.group(2) or 80), "params": params}
    if addr.isdigit():
        return {"kind": "tcp", "family": 4, "host": "0.0.0.0", "port": int(addr), "params": params}
    host, _colon, port = addr.partition(":")
    if port and not port.isdigit():
        return {"kind": "bad", "addr": addr, "params": params}
    if host == "*":
        host = "0.0.0.0"
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        return {"kind": "name", "addr": addr, "host": host, "port": int(port or 80), "params": params}
    return {"kind": "tcp", "family": 4, "host": str(ip), "port": int(port or 80), "params": params}


def _is_udp(lst):
    return any(p in ("udp", "quic") for p in lst["params"])


def _is_default(p):
    return p in DEFAULT


def _is_set(p):
    return any(p == o or (o.endswith("=") and p.startswith(o)) for o in ONCE_SET)


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


# -- localhost ----------------------------------------------------------------

def _dual_loopback_names(hosts_text):
    v4, v6 = set(), set()
    for line in (hosts_text or "").splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            ip = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        if ip.is_loopback:
            (v4 if ip.version == 4 else v6).update(n.lower() for n in fields[1:])
    return (v4 & v6) | {"localhost", "localhost.localdomain"}


def _pass_host(arg):
    """The host name a *_pass / upstream server argument connects to, or None."""
    rest = re.sub(r"^[a-z0-9+.-]+://", "", arg, flags=re.I)
    if rest.startswith(("unix:", "[")) or "$" in rest:
        return None
    host = re.split(r"[:/?]", rest, maxsplit=1)[0].rstrip(".").lower()
    return host or None


# -- the plan -----------------------------------------------------------------

class _Walk(object):
    def __init__(self, inputs, prefix, where):
        self.where = where
        self.prefix = prefix
        self.trees, self.real, self.problems = {}, {}, []
        self.texts = {}
        for path, real, text in inputs:
            self.real[path] = real
            self.texts[real] = text
            try:
                self.trees[path] = parse_text(text, path)
            except ParseError as e:
                self.trees[path] = []
                self.problems.append("%s%s%s: nginx's grammar does not read this file: %s"
                                     % (where, real, " line %s" % e.line if e.line else "", e))
        self.servers, self.passes, self.upstreams = [], [], set()

    def roots(self):
        included = set()

        def visit(stmts, path):
            for s in stmts:
                if s["directive"] == "include" and s["args"]:
                    included.update(x for x in (_resolve(s["args"][0], self.prefix, self.trees) or []) if x != path)
                visit(s.get("block", []), path)
        for path, stmts in self.trees.items():
            visit(stmts, path)
        return [p for p in self.trees if p not in included]

    def run(self):
        for path in self.roots():
            self.walk(path, ("http",) if self._bare(path) else (), None, (path,))

    def _bare(self, path):
        """A file given alone (not nginx.conf): its top-level server blocks are http's."""
        return not any(s["directive"] in ("http", "events", "stream", "mail") for s in self.trees[path])

    def walk(self, path, ctx, server, chain):
        real = self.real[path]
        for s in self.trees[path]:
            self.stmt(s, path, real, ctx, server, chain)

    def stmt(self, s, path, real, ctx, server, chain):
        name, args = s["directive"], s["args"]
        if name == "include" and args:
            targets = _resolve(args[0], self.prefix, self.trees)
            if targets is None:
                if server is not None and ctx[-1] == "server":
                    server["unread"].append((real, s["line"], args[0]))
                return
            for t in targets:
                if t in chain:
                    self.problems.append("%s%s line %d: include %s includes itself" % (self.where, real, s["line"], args[0]))
                    continue
                self.walk(t, ctx, server, chain + (t,))
            return
        if "block" in s:
            inner = enter_block_ctx(s, ctx)
            if name == "server" and ctx and ctx[-1] in ("http", "stream"):
                server = {"index": len(self.servers), "file": real, "line": s["line"], "stmt": s,
                          "kind": ctx[-1], "names": [], "listens": [], "unread": []}
                self.servers.append(server)
            elif name == "upstream" and args:
                self.upstreams.add(args[0].lower())
            for sub in s["block"]:
                self.stmt(sub, path, real, inner, server, chain)
            return
        if server is not None and ctx[-1] == "server":
            if name == "listen":
                server["listens"].append({"file": real, "stmt": s, "listen": parse_listen(args)})
            elif name == "server_name":
                server["names"].extend(args)
        if args and (name in PASS_DIRECTIVES or (name == "server" and ctx and ctx[-1] == "upstream")):
            self.passes.append((real, s["line"], name, args[0]))


def _indent(text, offset):
    line_start = text.rfind("\n", 0, offset) + 1
    return re.match(r"[ \t]*", text[line_start:]).group(0), line_start


def _insertion(text, end, lines, indent):
    """(offset, piece) that puts `lines` right after the `;` or `{` at `end`:
    on the next lines when the rest of that line is blank or a comment,
    otherwise on the same line."""
    eol = text.find("\n", end + 1)
    eol = len(text) if eol < 0 else eol
    rest = text[end + 1:eol]
    if rest.strip() and not rest.lstrip().startswith("#"):
        return end + 1, "".join(" " + l for l in lines)
    nl = "\n"
    if rest.endswith("\r"):
        eol, nl = eol - 1, "\r\n"
    return eol, "".join(nl + indent + l for l in lines)


def _backend_warnings(w, hosts_text, where):
    """localhost, and names that resolve to both loopback addresses, wherever nginx connects to them."""
    dual = _dual_loopback_names(hosts_text)
    out = []
    for real, line, name, arg in w.passes:
        host = _pass_host(arg)
        # a *_pass naming an upstream block goes to that block's servers
        if not host or (name != "server" and host in w.upstreams):
            continue
        if host in dual or host.endswith(".localhost"):
            out.append(
                "%s%s line %d: %s %s: %s resolves to ::1 and 127.0.0.1, and nginx tries ::1 first; with the "
                "backend on IPv4 only this logs refused connects and marks it down. Prefer a literal address "
                "(127.0.0.1 or [::1])." % (where, real, line, "upstream server" if name == "server" else name,
                                           arg, host))
    return out


def _sockets_before(w, where, problems):
    """Each server's IPv6 sockets (srv["v6"]), and the addresses and ports whose
    default_server and socket options some listen already carries."""
    taken_default, taken_set, v4_ports = set(), set(), set()
    for srv in w.servers:
        srv["v6"] = set()
        for item in srv["listens"]:
            lst = item["listen"]
            if lst is None or lst["kind"] != "tcp":
                if lst and lst["kind"] in ("name", "bad"):
                    problems.append(
                        "%s%s line %d: listen %s is not a literal address; nginx would bind whatever it "
                        "resolves to. Write an IP address." % (where, item["file"], item["stmt"]["line"], lst["addr"]))
                continue
            proto = "udp" if _is_udp(lst) else "tcp"
            key = (srv["kind"], lst["host"], lst["port"], proto)
            if any(_is_default(p) for p in lst["params"]):
                taken_default.add(key)
            if any(_is_set(p) for p in lst["params"]):
                taken_set.add(key)
            if lst["family"] == 6:
                srv["v6"].add((lst["host"], lst["port"], proto))
            elif proto == "tcp":
                v4_ports.add(lst["port"])
    for srv in w.servers:
        for item in srv["listens"]:
            lst = item["listen"]
            if lst and lst["kind"] == "tcp" and lst["family"] == 6 and lst["host"] == "::" \
                    and "ipv6only=off" in lst["params"] and lst["port"] in v4_ports and not _is_udp(lst):
                problems.append(
                    "%s%s line %d: listen [::]:%d ipv6only=off beside an IPv4 listen on port %d fails at start "
                    "with EADDRINUSE (nginx -t does not catch it); remove ipv6only=off"
                    % (where, item["file"], item["stmt"]["line"], lst["port"], lst["port"]))
    return taken_default, taken_set


class _Edits(object):
    """Lines to insert, per real file, and the listens each statement gains."""
    def __init__(self, texts):
        self.texts, self.inserts, self.added, self.gained = texts, {}, {}, {}

    def after(self, real, end, lines, indent):
        off, piece = _insertion(self.texts[real], end, lines, indent)
        at = self.inserts.setdefault(real, {})
        at[off] = at.get(off, "") + piece
        self.added.setdefault(real, []).extend((end, l) for l in lines)

    def after_listen(self, real, stmt, lines):
        text = self.texts[real]
        base, line_start = _indent(text, stmt["start"] if stmt["start"] is not None else stmt["end"])
        first = stmt["start"] is not None and not text[line_start:stmt["start"]].strip()
        self.after(real, stmt["end"], lines, base if first else base + "    ")
        self.gained[(real, stmt["end"])] = [l[len("listen "):-1] for l in lines]

    def apply(self, real, text):
        new = text
        for off, piece in sorted(self.inserts.get(real, {}).items(), reverse=True):
            new = new[:off] + piece + new[off:]
        return new, [l for _off, l in sorted(self.added.get(real, []), key=lambda x: x[0])]


def _twin_params(lst, key, sharers, taken_default, taken_set):
    """The twin's parameters: never ipv6only=; default_server and the socket
    options only where no other listen on its address and port has them."""
    params = [p for p in lst["params"] if not p.startswith("ipv6only=")]
    if key in taken_default or len(sharers) > 1:
        params = [p for p in params if not _is_default(p)]
    if key in taken_set or len(sharers) > 1:
        params = [p for p in params if not _is_set(p)]
    if any(_is_default(p) for p in params):
        taken_default.add(key)
    if any(_is_set(p) for p in params):
        taken_set.add(key)
    return params


def _server_without_listen(srv, edits, result):
    text = edits.texts[srv["file"]]
    s = srv["stmt"]
    base, _line_start = _indent(text, s["start"] if s["start"] is not None else s["end"])
    nxt = re.match(r"[^\n]*\n([ \t]*)\S", text[s["end"]:])
    indent = nxt.group(1) if nxt and len(nxt.group(1)) > len(base) else base + "    "
    lines = ["listen 80;", "listen [::]:80;"]
    edits.after(srv["file"], s["end"], lines, indent)
    srv["implicit"] = lines
    result["listens"].append({"file": srv["file"], "line": srv["line"], "server": srv["index"],
                              "address": "::", "port": 80, "v6only": 1})


def _plan_twins(w, interfaces, where, result, edits, taken_default, taken_set):
    # which servers see each listen statement (a snippet may be included by several)
    seen_by = {}
    for srv in w.servers:
        for item in srv["listens"]:
            seen_by.setdefault((item["file"], item["stmt"]["end"]), []).append(srv)
    done = set()
    for srv in w.servers:
        for real, line, arg in srv["unread"]:
            result["problems"].append(
                "%s%s line %d: include %s in the server at %s line %d names a file that was not read; that "
                "server's listens are unknown. Let the plan read every file nginx -T lists."
                % (where, real, line, arg, srv["file"], srv["line"]))
        if srv["unread"]:
            continue
        if not srv["listens"]:
            if srv["kind"] == "http":
                _server_without_listen(srv, edits, result)
            continue
        for item in srv["listens"]:
            lst, s = item["listen"], item["stmt"]
            if lst is None or lst["kind"] != "tcp" or lst["family"] != 4:
                continue
            if _is_udp(lst):
                result["notes"].append(
                    "%s%s line %d: listen %s is UDP (%s): left as it is; add its IPv6 counterpart by hand if "
                    "wanted" % (where, item["file"], s["line"], " ".join(s["args"]),
                                "quic" if "quic" in lst["params"] else "udp"))
                continue
            key_stmt = (item["file"], s["end"])
            targets = _counterparts(lst, interfaces)
            if not targets:
                if key_stmt not in done:
                    result["problems"].append(
                        "%s%s line %d: listen %s: the interface that carries %s has no global IPv6 address"
                        % (where, item["file"], s["line"], _fmt(lst["host"], lst["port"]), lst["host"]))
                    done.add(key_stmt)
                continue
            for t in targets:
                # `tls`: plain HTTP requests to it get a 400; the listener
                # checks still hold, the JSON request through nginx does not.
                result["listens"].append({"file": item["file"], "line": s["line"], "server": srv["index"],
                                          "address": t, "port": lst["port"], "v6only": 1 if t == "::" else None,
                                          "tls": "ssl" in lst["params"]})
            if key_stmt in done:
                continue
            done.add(key_stmt)
            sharers = seen_by[key_stmt]
            lines = []
            for t in targets:
                sock = (t, lst["port"], "tcp")
                have = [x for x in sharers if sock in x["v6"]]
                if len(have) == len(sharers):
                    continue
                if have:
                    result["problems"].append(
                        "%s%s line %d: listen %s is included by %d servers and only some of them already listen "
                        "on %s (%s); adding it in this file would repeat it there. Give each server its own "
                        "IPv6 listen." % (where, item["file"], s["line"], " ".join(s["args"]), len(sharers),
                                          _fmt(t, lst["port"]),
                                          ", ".join("server at %s line %d" % (x["file"], x["line"]) for x in have)))
                    continue
                params = _twin_params(lst, (srv["kind"], t, lst["port"], "tcp"), sharers, taken_default, taken_set)
                for x in sharers:
                    x["v6"].add(sock)
                lines.append("listen %s;" % " ".join([_fmt(t, lst["port"])] + params))
            if lines:
                edits.after_listen(item["file"], s, lines)


def _servers_after(w, edits):
    """Every server block with its resulting listens, in nginx's order."""
    out = []
    for srv in w.servers:
        listens = []
        for item in srv["listens"]:
            s = item["stmt"]
            listens.append({"listen": " ".join(s["args"]), "file": item["file"], "line": s["line"], "added": False})
            for l in edits.gained.get((item["file"], s["end"]), []):
                listens.append({"listen": l, "file": item["file"], "line": s["line"], "added": True})
        for l in srv.get("implicit", []):
            listens.append({"listen": l[len("listen "):-1], "file": srv["file"], "line": srv["line"], "added": True})
        out.append({"file": srv["file"], "line": srv["line"], "kind": srv["kind"], "names": srv["names"],
                    "listens": listens})
    return out


def nginx_plan(files, interfaces=None, ctx=None):
    """Plan the IPv6 listen lines for nginx's files (see the module's doc)."""
    if crossplane is None:  # pragma: no cover
        raise AnsibleFilterError("dsr_nginx_plan needs the Python package crossplane on the controller "
                                 "(pip install -r requirements.txt)")
    interfaces = interfaces or {}
    ctx = ctx or {}
    where = "host %s: " % ctx["host"] if ctx.get("host") else ""
    inputs = _inputs(files)
    prefix = ctx.get("prefix")
    if not prefix:
        mains = [p for p, _real, _text in inputs if posixpath.basename(p) == "nginx.conf"]
        prefix = posixpath.dirname(mains[0]) + "/" if mains and "/" in mains[0] else "/etc/nginx/"
    w = _Walk(inputs, prefix if prefix.endswith("/") else prefix + "/", where)
    w.run()
    result = {"files": {}, "problems": list(w.problems), "warnings": _backend_warnings(w, ctx.get("hosts"), where),
              "notes": [], "changed": False, "listens": [], "servers": []}
    taken_default, taken_set = _sockets_before(w, where, result["problems"])
    edits = _Edits(w.texts)
    _plan_twins(w, interfaces, where, result, edits, taken_default, taken_set)
    result["servers"] = _servers_after(w, edits)
    for path, real, text in inputs:
        if real in result["files"]:
            continue
        new, lines = edits.apply(real, text)
        if new != text and re.search("[\udc80-\udcff]", text):
            result["problems"].append("%s%s: not UTF-8 text; add its IPv6 listen lines by hand (%s)"
                                      % (where, real, "; ".join(lines)))
            new, lines = text, []
        result["files"][real] = {"content": new, "added": lines, "changed": new != text}
        result["changed"] = result["changed"] or new != text
    return result
