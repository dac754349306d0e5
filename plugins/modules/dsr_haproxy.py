#!/usr/bin/python
# -*- coding: utf-8 -*-
# Runs on the load balancer host: Python 2.7 and 3.6+, standard library only.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: dsr_haproxy
short_description: Read, drain, put back and re-address servers through HAProxy's runtime API
description:
  - Talks to HAProxy's runtime API on its admin UNIX socket (C(stats socket ... level admin) in
    the C(global) section; Debian's default is C(/run/haproxy/admin.sock)) with Python's socket
    module, one command per connection, so socat is not needed.
  - The state is read with C(show stat) (CSV, columns found by their header name) and
    C(show servers state) (the address, the port and the administrative flags).
  - C(state=drain) is C(set server B/S state drain) - the server gets no new load-balanced
    traffic but keeps its sessions, and still takes new persistent (cookie, stick-table) ones;
    C(state=maint) is C(set server B/S state maint) (no traffic, no checks; the same as
    C(disable server)); C(state=ready) is C(set server B/S state ready) (the same as
    C(enable server)). Each is sent only when the server's forced administrative state differs,
    so a second run reports no change. A server that inherits maintenance or drain from a server
    it tracks keeps it whatever this module sets; it is shown in I(admin).
  - I(address)/I(port) move one server with C(set server B/S addr A port P), only when its
    address or port differs. With C(state=ready) the address is set first and the server put back
    after; with C(drain) or C(maint) the state is set first.
  - I(wait_idle) polls C(show stat) after a drain (or maint) until every named server has no
    session (C(scur)) and no queued request (C(qcur)); after I(timeout) seconds the module fails
    naming each busy server with its C(scur).
  - Every change is read back; a server whose state or address did not become what was asked
    fails the module. An answer of the runtime API that is an error (C(No such server.),
    C(Permission denied) on an C(operator) or C(user) level socket, C(Unknown command) on an old
    HAProxy, C(Invalid addr ...)) fails the module with HAProxy's own text.
  - A name that HAProxy does not know fails before anything is changed, naming it and listing the
    servers its backend has.
  - Supports check mode; it reads, reports the commands it would send, sends none of them and
    does not wait.
options:
  socket:
    description: Path of HAProxy's runtime API UNIX socket (C(stats socket) at level admin for changes).
    type: path
    default: /run/haproxy/admin.sock
  servers:
    description:
      - Servers as C(BACKEND/SERVER) (the backend or listen section and the server's name).
      - For C(state=read) an empty list reads every server.
    type: list
    elements: str
    default: []
  state:
    description: read (change nothing), drain, ready or maint.
    type: str
    choices: [read, drain, ready, maint]
    default: read
  address:
    description: The IPv4 or IPv6 address to move the server to (one server only).
    type: str
  port:
    description: The port to move the server to; the current address is kept when I(address) is not given.
    type: int
  wait_idle:
    description: After C(state=drain) or C(maint), wait until the servers have no session left.
    type: bool
    default: false
  timeout:
    description: Seconds I(wait_idle) waits before it fails.
    type: float
    default: 60
  interval:
    description: Seconds between two reads while I(wait_idle) waits.
    type: float
    default: 1
author: dualstack-rollout contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Drain the host and wait for its requests in flight
  dsr_haproxy:
    servers: [app/web1]
    state: drain
    wait_idle: true
    timeout: 120
  delegate_to: "{{ groups['lb'][0] }}"

- name: Put it back on its IPv6 address
  dsr_haproxy:
    servers: [app/web1]
    state: ready
    address: "2001:db8::11"
  delegate_to: "{{ groups['lb'][0] }}"
"""

RETURN = r"""
servers:
  description: >-
    Per server, in the order asked (every server for a read of none), after the call:
    backend, server, status (C(show stat), e.g. UP, DRAIN, MAINT, DOWN, "no check"), scur, qcur,
    weight (the effective weight C(show stat) reports), uweight and iweight (user and initial
    weight), admin (ready, drain or maint: the state that takes effect), forced (the state
    C(set server ... state) set), admin_flags (C(srv_admin_state)) and admin_names, op_state,
    address, port and addr (C(ADDRESS:PORT), IPv6 in brackets), check_status.
  returned: always
  type: list
before:
  description: The same as I(servers), before any change.
  returned: always
  type: list
commands:
  description: The runtime API commands sent (in check mode, those that would be sent).
  returned: always
  type: list
waited:
  description: Seconds I(wait_idle) waited.
  returned: always
  type: float
version:
  description: HAProxy's version (C(show info)).
  returned: always
  type: str
"""

import errno
import re
import socket
import time

SOCKET_TIMEOUT = 10
# srv_admin_state bits (HAProxy's management guide, "show servers state").
ADMIN_FLAGS = (
    (0x01, "FMAINT"),   # forced into maintenance (set server ... state maint, disable server)
    (0x02, "IMAINT"),   # inherited from a tracked server
    (0x04, "CMAINT"),   # `disabled` in the configuration (kept as a mark once put back)
    (0x08, "FDRAIN"),   # forced into drain (set server ... state drain)
    (0x10, "IDRAIN"),   # inherited from a tracked server
    (0x20, "RMAINT"),   # address resolution failed
    (0x40, "HMAINT"),   # FQDN set from the runtime API
)
MAINT_MASK = 0x23       # HAProxy's SRV_ADMF_MAINT: the flags that really take the server out
DRAIN_MASK = 0x18       # SRV_ADMF_DRAIN
# `severity-output number|string` on the stats socket prefixes feedback messages.
_SEVERITY = re.compile(r"^\[(\d|emerg|alert|crit|err|warning|notice|info|debug)\]: ")
_SEVERITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_ADDR_OK = re.compile(r"^(IP changed from |no need to change the addr)")


class RuntimeApiError(Exception):
    """An error answer of HAProxy's runtime API, or no answer at all."""


class Busy(RuntimeApiError):
    """wait_idle ran out of time; `views` is the last read."""
    def __init__(self, msg, views):
        RuntimeApiError.__init__(self, msg)
        self.views = views


class ModuleFailure(Exception):
    def __init__(self, msg, **result):
        Exception.__init__(self, msg)
        self.msg = msg
        self.result = result


# --- the socket protocol ---------------------------------------------------------------------------

def send(path, command, timeout=SOCKET_TIMEOUT):
    """Send one command on a new connection and return HAProxy's whole answer as text.

    Without `prompt`, HAProxy answers one line of commands and closes the
    connection, so the answer ends where the stream ends.
    """
    if "\n" in command or "\r" in command or ";" in command:
        raise ValueError("one runtime API command at a time, without ';' or a line break: %r" % command)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except socket.timeout:
            raise RuntimeApiError("HAProxy's runtime API socket %s did not accept a connection within %s s"
                                  % (path, timeout))
        except socket.error as e:
            raise RuntimeApiError(connect_error(path, e))
        chunks = []
        try:
            sock.sendall((command + "\n").encode("utf-8"))
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout:
            raise RuntimeApiError("HAProxy's runtime API on %s did not finish its answer to `%s` within %s s"
                                  % (path, command, timeout))
        except socket.error as e:
            raise RuntimeApiError("HAProxy's runtime API on %s: `%s` failed: %s" % (path, command, e))
    finally:
        sock.close()
    return b"".join(chunks).decode("utf-8", "replace")


def connect_error(path, err):
    code = getattr(err, "errno", None)
    if code == errno.ENOENT:
        return ("there is no socket %s: HAProxy is not running, or its global section has no "
                "`stats socket %s level admin`" % (path, path))
    if code == errno.ECONNREFUSED:
        return "nothing answers on %s: HAProxy is not running (the socket file is left over)" % path
    if code in (errno.EACCES, errno.EPERM):
        return ("permission denied on %s: run as root (become) or as a member of the socket's group "
                "(`stats socket ... mode 660 group haproxy`)" % path)
    if code == errno.ENOTSOCK:
        return "%s is not a socket" % path
    return "cannot connect to HAProxy's runtime API on %s: %s" % (path, err)


def strip_severity(text):
    """(severity as 0-7 or None, text without the `[N]: ` prefix `severity-output` adds)."""
    m = _SEVERITY.match(text)
    if not m:
        return None, text
    word = m.group(1)
    level = int(word) if word.isdigit() else _SEVERITY_NAMES.index(word)
    return level, text[m.end():]


def answer_error(kind, text):
    """None when `text` is a success answer to a command of `kind`, else HAProxy's message.

    `kind`: "show stat", "show servers state", "show info", "state" (a
    `set server ... state`, silent on success) or "addr" (`set server ...
    addr`, which says what it changed or that it had nothing to change).
    """
    level, body = strip_severity(text or "")
    body = body.strip()
    if kind == "show stat":
        ok = body.startswith("# pxname,")
    elif kind == "show servers state":
        ok = re.match(r"^\d+\n# be_id ", body) is not None
    elif kind == "show info":
        ok = body.startswith("Name:")
    elif kind == "state":
        ok = body == ""
    elif kind == "addr":
        ok = _ADDR_OK.match(body) is not None and (level is None or level > 3)
    else:
        raise ValueError("unknown answer kind %r" % kind)
    if ok:
        return None
    return body or "(an empty answer)"


def command(path, cmd, kind, timeout=SOCKET_TIMEOUT):
    """Send `cmd` and return its answer; an error answer raises RuntimeApiError with HAProxy's text."""
    text = send(path, cmd, timeout)
    err = answer_error(kind, text)
    if err is not None:
        raise RuntimeApiError("HAProxy refused `%s` on %s: %s" % (cmd, path, err))
    return text


# --- the answers ------------------------------------------------------------------------------------

def split_csv(text):
    """Rows of HAProxy's CSV: comma separated, a field in double quotes may
    hold commas, doubled quotes and line breaks (HAProxy quotes free text such
    as check descriptions)."""
    rows, row, field, quoted, i, n = [], [], [], False, 0, len(text)
    while i < n:
        c = text[i]
        if quoted:
            if c == '"':
                if i + 1 < n and text[i + 1] == '"':
                    field.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                field.append(c)
        elif c == '"':
            quoted = True
        elif c == ",":
            row.append("".join(field))
            field = []
        elif c == "\n":
            row.append("".join(field))
            rows.append(row)
            row, field = [], []
        elif c != "\r":
            field.append(c)
        i += 1
    if field or row:
        row.append("".join(field))
        rows.append(row)
    return rows


def parse_stat(text):
    """`show stat` -> [{column name: value}], columns found by the header's
    names (`# pxname,svname,...`), never by position."""
    _severity, body = strip_severity(text or "")
    body = body.lstrip("\n")
    if not body.startswith("# "):
        raise RuntimeApiError("`show stat` gave no CSV header: %s" % (body.strip()[:200] or "(an empty answer)"))
    rows = split_csv(body[2:])
    header = rows[0]
    out = []
    for r in rows[1:]:
        if not r or r == [""] or r[0].startswith("#"):
            continue
        out.append(dict(zip(header, r)))
    return out


def parse_servers_state(text):
    """`show servers state` -> [{column name: value}] (format version 1: a
    version line, then `# be_id be_name ...`, then space separated rows)."""
    _severity, body = strip_severity(text or "")
    lines = body.strip("\n").split("\n")
    if len(lines) < 2 or not lines[0].strip().isdigit() or not lines[1].startswith("# "):
        raise RuntimeApiError("`show servers state` gave no header: %s"
                              % (body.strip()[:200] or "(an empty answer)"))
    if lines[0].strip() != "1":
        raise RuntimeApiError("`show servers state` answers in format %s; this module reads format 1"
                              % lines[0].strip())
    header = lines[1][2:].split()
    out = []
    for line in lines[2:]:
        if not line.strip() or line.startswith("#"):
            continue
        out.append(dict(zip(header, line.split())))
    return out


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def admin_names(flags):
    return [name for bit, name in ADMIN_FLAGS if flags & bit]


def admin_state(flags):
    """The administrative state that takes effect: maint, drain or ready."""
    if flags & MAINT_MASK:
        return "maint"
    if flags & DRAIN_MASK:
        return "drain"
    return "ready"


def forced_state(flags):
    """The state `set server ... state` controls (FMAINT, FDRAIN)."""
    if flags & 0x01:
        return "maint"
    if flags & 0x08:
        return "drain"
    return "ready"


def _state_from_status(status):
    s = (status or "").upper()
    if s.startswith("MAINT"):
        return "maint"
    if s.startswith("DRAIN"):
        return "drain"
    return "ready"


def split_addr(addr):
    """`show stat`'s addr column (`1.2.3.4:80`, `[::1]:80`) -> (address, port)."""
    if not addr:
        return None, None
    if addr.startswith("["):
        host, _bracket, rest = addr[1:].partition("]")
        return host, _int(rest.lstrip(":"))
    if addr.count(":") == 1:
        host, _colon, port = addr.partition(":")
        return host, _int(port)
    return addr, None


def fmt_addr(address, port):
    if address is None:
        return None
    host = "[%s]" % address if ":" in address else address
    return "%s:%s" % (host, port) if port is not None else host


def normal_ip(address):
    """The canonical text of an IPv4 or IPv6 address; None if it is not one."""
    if address is None:
        return None
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, address))
        except (socket.error, ValueError, OSError):
            continue
    return None


def server_views(stat_rows, state_rows=None):
    """[view] of every server (`show stat` type 2), joined with `show servers
    state` where it was read (HAProxy 1.6+)."""
    states = {}
    for r in state_rows or []:
        states[(r.get("be_name"), r.get("srv_name"))] = r
    out = []
    for r in stat_rows:
        if "type" in r:
            if r["type"] != "2":
                continue
        elif r.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        st = states.get((r.get("pxname"), r.get("svname")))
        address, port = split_addr(r.get("addr"))
        view = {"backend": r.get("pxname"), "server": r.get("svname"), "status": r.get("status"),
                "scur": _int(r.get("scur"), 0), "qcur": _int(r.get("qcur"), 0),
                "weight": _int(r.get("weight")), "uweight": _int(r.get("uweight")), "iweight": None,
                "check_status": r.get("check_status") or None, "op_state": None,
                "admin_flags": None, "admin_names": None}
        if st is not None:
            flags = _int(st.get("srv_admin_state"), 0)
            address = st.get("srv_addr") or address
            port = _int(st.get("srv_port"), port)
            view.update({"admin_flags": flags, "admin_names": admin_names(flags),
                         "admin": admin_state(flags), "forced": forced_state(flags),
                         "op_state": _int(st.get("srv_op_state")),
                         "uweight": _int(st.get("srv_uweight"), view["uweight"]),
                         "iweight": _int(st.get("srv_iweight"))})
        else:
            view["admin"] = view["forced"] = _state_from_status(view["status"])
        view.update({"address": address, "port": port, "addr": fmt_addr(address, port)})
        out.append(view)
    return out


def read(path, timeout=SOCKET_TIMEOUT):
    """{"BACKEND/SERVER": view} of every server, in HAProxy's order (a list of names too)."""
    stat = parse_stat(command(path, "show stat", "show stat", timeout))
    try:
        state = parse_servers_state(command(path, "show servers state", "show servers state", timeout))
    except RuntimeApiError as e:
        if "Unknown command" not in str(e):
            raise
        state = None  # HAProxy 1.5: no `show servers state`; the state comes from show stat's status
    views = server_views(stat, state)
    return dict(("%s/%s" % (v["backend"], v["server"]), v) for v in views), [
        "%s/%s" % (v["backend"], v["server"]) for v in views]


def version(path, timeout=SOCKET_TIMEOUT):
    for line in command(path, "show info", "show info", timeout).split("\n"):
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return ""


# --- what to do -------------------------------------------------------------------------------------

def check_names(names, views, order):
    """Fail before any change on a name HAProxy does not know, listing what it has."""
    problems = []
    backends = {}
    for key in order:
        b, s = key.split("/", 1)
        backends.setdefault(b, []).append(s)
    for name in names:
        if name.count("/") != 1 or not all(name.split("/")):
            problems.append("%r is not BACKEND/SERVER" % name)
            continue
        if name in views:
            continue
        b, s = name.split("/")
        if b in backends:
            problems.append("backend %s has no server %s; its servers: %s" % (b, s, ", ".join(backends[b])))
        else:
            problems.append("HAProxy has no backend %s (for server %s); backends with servers: %s"
                            % (b, s, ", ".join(sorted(backends)) or "none"))
    return problems


def plan(views, names, state, address=None, port=None):
    """The runtime API commands that bring `names` to `state` and `address`/`port`, in order."""
    commands = []
    for name in names:
        v = views[name]
        state_cmd = None
        if state in ("drain", "ready", "maint") and v["forced"] != state:
            state_cmd = "set server %s state %s" % (name, state)
        addr_cmd = None
        if address is not None or port is not None:
            target = normal_ip(address) if address is not None else v["address"]
            current = normal_ip(v["address"]) or v["address"]
            if target != current or (port is not None and port != v["port"]):
                addr_cmd = "set server %s addr %s" % (name, target)
                if port is not None:
                    addr_cmd += " port %d" % port
        steps = [addr_cmd, state_cmd] if state == "ready" else [state_cmd, addr_cmd]
        commands.extend(c for c in steps if c)
    return commands


def mismatches(views, names, state, address=None, port=None):
    """What is not as asked after the change (read back, not assumed)."""
    out = []
    for name in names:
        v = views[name]
        if state in ("drain", "ready", "maint") and v["forced"] != state:
            out.append("%s is %s (status %s), not %s" % (name, v["forced"], v["status"], state))
        if address is not None and normal_ip(v["address"]) != normal_ip(address):
            out.append("%s is on %s, not %s" % (name, v["address"], address))
        if port is not None and v["port"] != port:
            out.append("%s is on port %s, not %s" % (name, v["port"], port))
    return out


def wait_idle(reader, names, timeout, interval, clock=time.time, sleep=time.sleep):
    """Poll until every server in `names` has scur 0 and qcur 0.

    Returns (views, seconds waited); after `timeout` seconds raises
    RuntimeApiError naming each busy server and its scur.
    """
    start = clock()
    while True:
        views = reader()
        busy = [n for n in names if views[n]["scur"] or views[n]["qcur"]]
        elapsed = clock() - start
        if not busy:
            return views, round(elapsed, 3)
        if elapsed >= timeout:
            raise Busy(
                "still busy after %s s of drain: %s" % (
                    _num(timeout), ", ".join(
                        "%s scur=%d%s" % (n, views[n]["scur"],
                                          " qcur=%d" % views[n]["qcur"] if views[n]["qcur"] else "")
                        for n in busy)), views)
        sleep(max(0.0, min(interval, timeout - elapsed)))


def _num(x):
    return int(x) if float(x) == int(x) else x


def _ordered(views, names):
    return [views[n] for n in names]


def run(params, check_mode=False):
    """The module without AnsibleModule: params as in the argument spec.
    Returns the result dict; raises ModuleFailure."""
    path = params.get("socket") or "/run/haproxy/admin.sock"
    names = list(params.get("servers") or [])
    state = params.get("state") or "read"
    address, port = params.get("address"), params.get("port")
    timeout = float(params.get("timeout") if params.get("timeout") is not None else 60)
    interval = float(params.get("interval") if params.get("interval") is not None else 1)
    result = {"changed": False, "servers": [], "before": [], "commands": [], "waited": 0.0, "version": ""}

    if address is not None and normal_ip(address) is None:
        raise ModuleFailure("address %r is not an IPv4 or IPv6 address (the runtime API takes no host name)"
                            % address, **result)
    if port is not None and not 0 < port < 65536:
        raise ModuleFailure("port %r is not a TCP port" % port, **result)
    if state == "read" and (address is not None or port is not None):
        raise ModuleFailure("address and port move a server: they need state drain, ready or maint", **result)
    if (address is not None or port is not None) and len(names) != 1:
        raise ModuleFailure("address and port move one server; servers has %d" % len(names), **result)
    if timeout < 0 or interval <= 0:
        raise ModuleFailure("timeout must be 0 or more and interval more than 0 seconds", **result)
    if params.get("wait_idle") and state not in ("drain", "maint"):
        raise ModuleFailure("wait_idle waits after a drain: it needs state drain or maint", **result)
    if state != "read" and not names:
        raise ModuleFailure("state=%s needs the servers to change" % state, **result)

    try:
        result["version"] = version(path)
        views, order = read(path)
        problems = check_names(names, views, order)
        if problems:
            raise ModuleFailure("; ".join(problems), **result)
        if not names:
            names = order
        result["before"] = _ordered(views, names)
        result["servers"] = result["before"]
        commands = plan(views, names, state, address, port)
        result["commands"] = commands
        result["changed"] = bool(commands)
        if check_mode:
            return result
        done = []
        for cmd in commands:
            try:
                command(path, cmd, "addr" if " addr " in cmd else "state")
            except RuntimeApiError as e:
                result["commands"] = done
                result["changed"] = bool(done)
                raise ModuleFailure(str(e) + (" (sent before it: %s)" % "; ".join(done) if done else ""),
                                    **result)
            done.append(cmd)
        if commands:
            views, _order = read(path)
            result["servers"] = _ordered(views, names)
            wrong = mismatches(views, names, state, address, port)
            if wrong:
                raise ModuleFailure("HAProxy did not take the change: %s" % "; ".join(wrong), **result)
        if params.get("wait_idle"):
            def reader():
                return read(path)[0]
            try:
                views, result["waited"] = wait_idle(reader, names, timeout, interval)
            except Busy as e:
                result["servers"] = _ordered(e.views, names)
                result["waited"] = timeout
                raise ModuleFailure(str(e), **result)
            result["servers"] = _ordered(views, names)
        return result
    except RuntimeApiError as e:
        raise ModuleFailure(str(e), **result)


def main():
    from ansible.module_utils.basic import AnsibleModule
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", default="/run/haproxy/admin.sock"),
            servers=dict(type="list", elements="str", default=[]),
            state=dict(type="str", choices=["read", "drain", "ready", "maint"], default="read"),
            address=dict(type="str"),
            port=dict(type="int"),
            wait_idle=dict(type="bool", default=False),
            timeout=dict(type="float", default=60),
            interval=dict(type="float", default=1),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode)
    except ModuleFailure as e:
        module.fail_json(msg=e.msg, **e.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
