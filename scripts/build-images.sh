#!/usr/bin/env bash
# Build the systemd-capable Debian test host images from Debian's mirror with
# debootstrap (no container registry is needed). An image is rebuilt only when
# its recipe (images/packages.txt, images/customize.sh, suite, mirror) changes: the recipe
# hash is stored as an image label and compared on every run.
#
# Usage: scripts/build-images.sh [SUITE ...]   (default: bullseye bookworm trixie legacy py36)
#        `legacy` is Debian 11 with Python 2.7 and the fleet's pinned wheels
#        (gunicorn 19.9.0, gevent 1.3.5, Flask 1.1.1): images/packages-legacy.txt,
#        images/wheels-legacy.txt, sshd and sudo (images/packages-ssh.txt).
#        `py36` is Debian 12 made to look like a CentOS 7 host: the CPython
#        3.6 build of this machine's pyenv ($(pyenv root)/versions/3.6.*)
#        with the same stack from cp36m wheels (images/wheels-py36.txt),
#        and shims for the old tools (images/shims: `ip` without -j,
#        `systemd-analyze` without cat-config, ss in iproute2 4.9's format).
#        Without a pyenv 3.6 build the image is skipped with a message, never
#        an error: the legacy scenario then runs without its Python 3.6 host.
# Env:   DSR_MIRROR   Debian mirror (default: the first Debian archive of this
#                     machine's apt configuration; the repository names none)
#        DSR_IMAGE    image repository (default dualstack-rollout/debian)
#        DSR_CA_BUNDLE  extra CA bundle to install in the image (for TLS-
#                       intercepting proxies); default: none
set -Eeuo pipefail
# set -e ends the script quietly; say which command ended it.
trap 'echo "build-images.sh: line $LINENO: \`$BASH_COMMAND\` failed (exit $?)" >&2' ERR

here=$(cd "$(dirname "$0")/.." && pwd)
# The machine's own Debian archive: deb822 .sources stanzas (Debian 12 and
# later) or one-line `deb URI SUITE ...` entries, security suites left out.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS=""; FS="\n" }
         { uris=""; suites=""; types=""
           for (i = 1; i <= NF; i++) {
             if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
             if ($i ~ /^Suites:/) suites = $i
             if ($i ~ /^Types:/) types = $i }
           if (types ~ /(^|[ \t])deb([ \t]|$)/ && suites !~ /-security/ && uris != "") { split(uris, u, /[ \t]+/); print u[1]; exit } }' "$f"
  done
  # A machine without /etc/apt/sources.list is the Debian 12 default: cat's
  # error is expected there and must not end the script (set -e, pipefail).
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } \
    | awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                         if ($(i + 1) !~ /-security/) { print $i; exit } }'
}
mirror=${DSR_MIRROR:-$(apt_mirror | head -1 || true)}
mirror=${mirror%/}
if [ -z "$mirror" ]; then
  echo "no Debian archive found in this machine's apt configuration (/etc/apt/sources.list*): set DSR_MIRROR" >&2
  exit 1
fi
repo=${DSR_IMAGE:-dualstack-rollout/debian}
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bullseye bookworm trixie legacy py36)

root=""
trap '[ -z "$root" ] || rm -rf "$root" "$root.log"' EXIT

declare -A version=([bullseye]=11 [bookworm]=12 [trixie]=13 [legacy]=11-py27 [py36]=12-py36)
declare -A dist=([legacy]=bullseye [py36]=bookworm)

pkgfiles() {
  case $1 in
    legacy) echo "$here/images/packages-legacy.txt $here/images/packages-ssh.txt" ;;
    py36) echo "$here/images/packages.txt $here/images/packages-ssh.txt" ;;
    bookworm) echo "$here/images/packages.txt $here/images/packages-lb.txt" ;;
    *) echo "$here/images/packages.txt" ;;
  esac
}

# The newest CPython 3.6 build of this machine's pyenv, or nothing.
py36_build() {
  local r
  r=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  find "$r/versions" -maxdepth 1 -name '3.6.*' -type d 2>/dev/null | sort -V | tail -1
}

recipe_hash() {
  # shellcheck disable=SC2046
  { cat $(pkgfiles "$1") "$here/images/customize.sh"
    if [ "$1" = legacy ] || [ "$1" = py36 ]; then cat "$here/images/customize-ssh.sh"; fi
    if [ "$1" = legacy ]; then cat "$here/images/wheels-legacy.txt"; fi
    if [ "$1" = py36 ]; then cat "$here/images/wheels-py36.txt" "$here"/images/shims/*; py36_build; fi
    echo "$1 $mirror"
    if [ -n "${DSR_CA_BUNDLE:-}" ]; then sha256sum <"$DSR_CA_BUNDLE"; fi
  } | sha256sum | cut -c1-16
}

# The wheels of LIST for CPython VERSION (ABI), fetched on this machine
# (pip download) into ROOT/tmp/wheels with their req.txt: the hosts need no
# network. Usage: fetch_wheels ROOT LIST VERSION ABI
fetch_wheels() {
  local root=$1 list=$2 wheels
  wheels=$(mktemp -d /var/tmp/dsr-wheels.XXXXXX)
  grep -vE '^\s*(#|$)' "$list" >"$wheels/req.txt"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux1_x86_64 --python-version "$3" --implementation cp --abi "$4" \
    -d "$wheels" -r "$wheels/req.txt" 2>&1 | grep -v '^Location' || true
  mkdir -p "$root/tmp/wheels" && cp "$wheels"/*.whl "$wheels/req.txt" "$root/tmp/wheels/"
  rm -rf "$wheels"
}

# Python 2.7 wheels installed in the chroot with pip 20.3.4 run from its own
# wheel: no pip package for Python 2 exists in Debian 11.
install_wheels() {
  local root=$1
  fetch_wheels "$root" "$here/images/wheels-legacy.txt" 27 cp27mu
  chroot "$root" sh -c 'python2.7 /tmp/wheels/pip-20.3.4-py2.py3-none-any.whl/pip install --quiet \
    --no-index --find-links /tmp/wheels --disable-pip-version-check --no-warn-script-location -r /tmp/wheels/req.txt'
  rm -rf "$root/tmp/wheels"
  chroot "$root" python2.7 -c 'import gunicorn, gevent, flask, werkzeug; print("python2.7: gunicorn %s, gevent %s, Flask %s, Werkzeug %s" % (gunicorn.__version__, gevent.__version__, flask.__version__, werkzeug.__version__))'
}

# The CPython 3.6 build copied to /opt/python3.6 (its RUNPATH names the
# pyenv directory, so ld.so.conf.d points at the new one), the stack from
# cp36m wheels installed with that build's own pip, /usr/local/bin/python3.6
# and /usr/local/bin/gunicorn linked to them, and the old-tools shims.
install_py36() {
  local root=$1 src=$2
  mkdir -p "$root/opt/python3.6"
  tar -C "$src" --exclude='./lib/python3.6/test' --exclude='*/__pycache__' -c . | tar -C "$root/opt/python3.6" -x
  echo /opt/python3.6/lib >"$root/etc/ld.so.conf.d/python3.6.conf"
  chroot "$root" ldconfig
  fetch_wheels "$root" "$here/images/wheels-py36.txt" 36 cp36m
  chroot "$root" /opt/python3.6/bin/python3.6 -m pip install --quiet --no-index --find-links /tmp/wheels \
    --disable-pip-version-check --no-warn-script-location -r /tmp/wheels/req.txt
  rm -rf "$root/tmp/wheels"
  ln -sf /opt/python3.6/bin/python3.6 "$root/usr/local/bin/python3.6"
  ln -sf /opt/python3.6/bin/gunicorn "$root/usr/local/bin/gunicorn"
  chroot "$root" /usr/local/bin/python3.6 -c 'import ssl, gunicorn, gevent, flask, werkzeug; print("python%s: %s, gunicorn %s, gevent %s, Flask %s, Werkzeug %s" % (__import__("platform").python_version(), ssl.OPENSSL_VERSION, gunicorn.__version__, gevent.__version__, flask.__version__, werkzeug.__version__))'
  install -m 0755 "$here/images/shims/ip" "$here/images/shims/ss" "$here/images/shims/systemd-analyze" "$root/usr/local/sbin/"
  chroot "$root" sh -c 'ip -j addr >/dev/null 2>&1 && exit 1; systemd-analyze cat-config sysctl.d >/dev/null 2>&1 && exit 1; ss -V' \
    || { echo "the old-tools shims do not behave as old tools in the image" >&2; return 1; }
}

build_one() {
  local suite=$1 tag=${version[$1]:?unknown suite $1} hash current
  hash=$(recipe_hash "$suite")
  current=$(docker image inspect -f '{{ index .Config.Labels "org.dualstack-rollout.recipe" }}' "$repo:$tag" 2>/dev/null || true)
  if [ "$current" = "$hash" ]; then
    echo "image $repo:$tag is current (recipe $hash)"
    return 0
  fi
  echo "building $repo:$tag from $suite (recipe $hash)..."
  root=$(mktemp -d "/var/tmp/dsr-rootfs-$suite.XXXXXX")
  local packages
  # shellcheck disable=SC2046
  packages=$(cat $(pkgfiles "$suite") | grep -vE '^\s*(#|$)' | paste -sd, -)
  debootstrap --variant=minbase --include="$packages" "${dist[$suite]:-$suite}" "$root" "$mirror" \
    >"$root.log" 2>&1 || { tail -30 "$root.log"; echo "debootstrap $suite failed" >&2; return 1; }
  rm -f "$root.log"
  cp "$here/images/customize.sh" "$root/tmp/customize.sh"
  chroot "$root" /bin/sh /tmp/customize.sh
  rm -f "$root/tmp/customize.sh"
  if [ "$suite" = legacy ] || [ "$suite" = py36 ]; then
    cp "$here/images/customize-ssh.sh" "$root/tmp/customize-ssh.sh"
    chroot "$root" /bin/sh /tmp/customize-ssh.sh
    rm -f "$root/tmp/customize-ssh.sh"
  fi
  # HAProxy is there for the haproxy scenario's balancer, off until it starts it.
  if [ "$suite" = bookworm ]; then chroot "$root" systemctl disable haproxy.service >/dev/null 2>&1; fi
  if [ "$suite" = legacy ]; then install_wheels "$root"; fi
  if [ "$suite" = py36 ]; then install_py36 "$root" "$(py36_build)"; fi
  if [ -n "${DSR_CA_BUNDLE:-}" ]; then
    cp "$DSR_CA_BUNDLE" "$root/usr/local/share/ca-certificates/dsr-extra.crt"
    chroot "$root" update-ca-certificates >/dev/null
  fi
  tar -C "$root" -c . | docker import \
    -c 'CMD ["/sbin/init"]' \
    -c "LABEL org.dualstack-rollout.recipe=$hash" \
    -c "LABEL org.dualstack-rollout.suite=$suite" \
    - "$repo:$tag" >/dev/null
  rm -rf "$root" "$root.log"; root=""
  echo "built $repo:$tag ($(docker image inspect -f '{{.Size}}' "$repo:$tag" | numfmt --to=iec))"
}

# Suites build in parallel: debootstrap spends most of its time waiting on
# the mirror. Each build runs in its own subshell with its own clean-up.
pids=()
for s in "${suites[@]}"; do
  if [ "$s" = py36 ] && [ -z "$(py36_build)" ]; then
    echo "SKIPPED image $repo:${version[py36]}: no CPython 3.6 build under \$(pyenv root)/versions on this machine;" \
         "the legacy scenario runs without its Python 3.6 host (dsr-legacy-py36)"
    continue
  fi
  ( trap '[ -z "$root" ] || rm -rf "$root" "$root.log"' EXIT; build_one "$s" ) &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
