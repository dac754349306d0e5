"""Which sysctl.d file sets a key last (filter plugin).

`systemd-analyze cat-config sysctl.d` prints every sysctl.d file in the order
systemd-sysctl applies them at boot (basenames merged, /etc/sysctl.conf via
99-sysctl.conf on Debian), each after a `# /path` header. The last assignment
of a key wins, so a file that sorts after ours, or /etc/sysctl.conf, can undo
the setting at the next boot even when the value is right now.
"""
from __future__ import annotations

import fnmatch
import re


def _norm(key):
    key = key.strip().lstrip("-")
    # sysctl.d(5): a key with '/' as the first separator uses '/' throughout
    if "/" in key and ("." not in key or key.index("/") < key.index(".")):
        key = key.replace(".", "\0").replace("/", ".").replace("\0", "/")
    return key


def sysctl_winners(text, keys):
    """{key: {"value": v, "file": path}} for each of `keys` set anywhere."""
    current = None
    found = {}
    for line in (text or "").splitlines():
        m = re.match(r"^# (/\S+)\s*$", line)
        if m and (m.group(1).endswith(".conf") or m.group(1).startswith("/etc/sysctl")):
            current = m.group(1)
            continue
        s = line.strip()
        if not s or s[0] in "#;" or "=" not in s:
            continue
        k, v = s.split("=", 1)
        pattern = _norm(k)
        for key in keys:
            if pattern == key or ("*" in pattern and fnmatch.fnmatchcase(key, pattern)):
                found[key] = {"value": v.strip(), "file": current}
    return found


def sysctl_values(text):
    """Parse `sysctl KEY...` output ("key = value" lines) into a dict."""
    out = {}
    for line in (text or "").splitlines():
        if " = " in line:
            k, v = line.split(" = ", 1)
            out[k.strip()] = v.strip()
    return out


def sysctl_overrides(winners, wanted, our_file):
    """Messages for keys whose boot-time winner is not our file with our value."""
    msgs = []
    for key, value in sorted(wanted.items()):
        w = winners.get(key)
        if w is None:
            msgs.append("%s is not set by any sysctl.d file (expected %s in %s)" % (key, value, our_file))
        elif w["file"] != our_file or str(w["value"]) != str(value):
            msgs.append("%s = %s is set by %s, which is applied after %s; remove it there or set %s"
                        % (key, w["value"], w["file"], our_file, value))
    return msgs


def sysctl_wanted(interfaces, bindv6only="keep"):
    """The keys and values the ipv6_kernel role persists."""
    wanted = {}
    for iface in ["all", "default", "lo"] + [i for i in interfaces if i not in ("all", "default", "lo")]:
        wanted["net.ipv6.conf.%s.disable_ipv6" % iface.replace(".", "/")] = "0"
    if str(bindv6only) != "keep":
        if str(bindv6only) not in ("0", "1"):
            raise ValueError("ipv6_kernel__bindv6only must be keep, 0 or 1, not %r" % (bindv6only,))
        wanted["net.ipv6.bindv6only"] = str(bindv6only)
    return wanted


def sysctl_mismatch(wanted, values):
    """Messages for keys whose effective value differs from the wanted one."""
    return ["%s is %s after applying, expected %s" % (k, values.get(k, "unreadable"), v)
            for k, v in sorted(wanted.items()) if str(values.get(k)) != str(v)]


class FilterModule(object):
    def filters(self):
        return {
            "dsr_sysctl_winners": sysctl_winners,
            "dsr_sysctl_values": sysctl_values,
            "dsr_sysctl_overrides": sysctl_overrides,
            "dsr_sysctl_wanted": sysctl_wanted,
            "dsr_sysctl_mismatch": sysctl_mismatch,
        }
