"""Which sysctl.d file sets a key last (filter plugin).

`systemd-analyze cat-config sysctl.d` prints every sysctl.d file in the order
systemd-sysctl applies them at boot (basenames merged, /etc/sysctl.conf via
99-sysctl.conf on Debian), each after a `# /path` header. The last assignment
of a key wins, so a file that sorts after ours, or /etc/sysctl.conf, can undo
the setting at the next boot even when the value is right now.

systemd-analyze has no cat-config before systemd 239 (CentOS 7: 219,
Debian 9: 232, Ubuntu 18.04: 237). `sysctl_d_command()` is the one command
(for dsr_commands) that runs cat-config where it exists and otherwise lists
the same files itself, in the same format, so `sysctl_winners` reads both.
The fallback mirrors systemd-sysctl, which applies sysctl.d at every boot on
those releases, as cat-config does (sysctl.d(5)):

* directories /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d,
  /usr/lib/sysctl.d, /lib/sysctl.d (split-/usr builds read it; on merged /usr
  each of its files is hidden by its own copy in /usr/lib);
* files `*.conf`, hidden ones skipped; a file hides every file of the same
  name in a later directory (a link to /dev/null masks it: header only);
* applied in the byte order of their names (LC_ALL=C);
* /etc/sysctl.conf only through the /etc/sysctl.d/99-sysctl.conf link the
  distributions ship: systemd-sysctl does not read it since systemd 207.

procps' `sysctl --system` differs, and is not what boot does on a systemd
host: it reads /run/sysctl.d before /etc/sysctl.d (so /run hides /etc), and
reads /etc/sysctl.conf once more after everything (procps-ng 3.3, sysctl.c
PreloadSystem). The role applies only its own file (`sysctl -p FILE`), so
boot order is the one that can undo it.
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


# A file's header in cat-config output; a path may hold spaces. Debian's
# sysctl.conf starts with "# /etc/sysctl.conf - Configuration file ...",
# which is no header.
_HEADER = re.compile(r"^# (/.*\.conf)\s*$")


def sysctl_winners(text, keys):
    """{key: {"value": v, "file": path}} for each of `keys` set anywhere."""
    current = None
    found = {}
    for line in (text or "").splitlines():
        m = _HEADER.match(line)
        if m:
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


SYSCTL_D_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")

# POSIX sh. $1 is an optional root directory (tests); paths are printed
# with it, as `systemd-analyze cat-config --root` does. An entry is a file
# or a symbolic link (even to /dev/null or nowhere), never a directory.
SYSCTL_D_FALLBACK = r"""LC_ALL=C; export LC_ALL
root=${1:-}
dirs='%s'
entry() { [ -L "$1" ] || { [ -e "$1" ] && [ ! -d "$1" ]; }; }
for d in $dirs; do
  for f in "$root$d"/*.conf; do
    if entry "$f"; then printf '%%s\n' "${f##*/}"; fi
  done
done | sort -u | {
  first=1
  while IFS= read -r name; do
    for d in $dirs; do
      f="$root$d/$name"
      entry "$f" || continue
      if [ -z "$first" ]; then echo; fi
      first=
      printf '# %%s\n' "$f"
      if [ -f "$f" ]; then
        cat "$f" || exit 1
        if [ -n "$(tail -c 1 "$f")" ]; then echo; fi  # end a last line, as cat-config does
      fi
      break
    done
  done
}
""" % " ".join(SYSCTL_D_DIRS)

# Where cat-config exists, it is the judge. The fallback runs only when the
# host says it has no such verb (systemd < 239: "Unknown operation ...";
# later wordings "Unknown command verb ..."), has no systemd-analyze, or
# could not reach the bus (systemd < 239 connects before reading the verb,
# cat-config itself needs no bus); any other failure is reported as it is.
SYSCTL_D_AUTO = r"""LC_ALL=C; export LC_ALL
fallback() {
%s}
if command -v systemd-analyze >/dev/null 2>&1; then
  t=$(mktemp -d) || exit 125
  trap 'rm -rf "$t"' EXIT
  systemd-analyze cat-config sysctl.d ${1:+--root="$1"} >"$t/o" 2>"$t/e"
  rc=$?
  if [ $rc -eq 0 ]; then cat "$t/o"; cat "$t/e" >&2; exit 0; fi
  case $(cat "$t/e") in
    *"Unknown operation"*|*"Unknown command verb"*|*"Unknown verb"*|*"Failed to create bus connection"*) ;;
    *) cat "$t/o"; cat "$t/e" >&2; exit $rc ;;
  esac
  echo "systemd-analyze cannot cat-config here ($(head -n 1 "$t/e")): listing the sysctl.d files in systemd-sysctl's order" >&2
else
  echo "no systemd-analyze: listing the sysctl.d files in systemd-sysctl's order" >&2
fi
fallback "$@"
""" % SYSCTL_D_FALLBACK


def sysctl_d_command(mode="auto"):
    """The argv (for dsr_commands) that prints the sysctl.d files as
    `systemd-analyze cat-config sysctl.d` does: "auto" runs cat-config where
    it exists and lists the files itself elsewhere; "fallback" always lists
    them itself. Its stdout goes to sysctl_winners."""
    if mode == "auto":
        return ["sh", "-c", SYSCTL_D_AUTO]
    if mode == "fallback":
        return ["sh", "-c", SYSCTL_D_FALLBACK]
    raise ValueError("sysctl_d_command: mode must be auto or fallback, not %r" % (mode,))
