#!/usr/bin/env bash
# Build the systemd-capable Debian test host images from Debian's mirror with
# debootstrap (no container registry is needed). An image is rebuilt only when
# its recipe (images/packages.txt, images/customize.sh, suite, mirror) changes: the recipe
# hash is stored as an image label and compared on every run.
#
# Usage: scripts/build-images.sh [SUITE ...]   (default: bullseye bookworm trixie)
# Env:   DSR_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#        DSR_IMAGE    image repository (default dualstack-rollout/debian)
#        DSR_CA_BUNDLE  extra CA bundle to install in the image (for TLS-
#                       intercepting proxies); default: none
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
mirror=${DSR_MIRROR:-http://deb.debian.org/debian}
repo=${DSR_IMAGE:-dualstack-rollout/debian}
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bullseye bookworm trixie)

root=""
trap '[ -z "$root" ] || rm -rf "$root" "$root.log"' EXIT

declare -A version=([bullseye]=11 [bookworm]=12 [trixie]=13)

packages=$(grep -vE '^\s*(#|$)' "$here/images/packages.txt" | paste -sd, -)

recipe_hash() {
  { cat "$here/images/packages.txt" "$here/images/customize.sh"
    echo "$1 $mirror"
    if [ -n "${DSR_CA_BUNDLE:-}" ]; then sha256sum <"$DSR_CA_BUNDLE"; fi
  } | sha256sum | cut -c1-16
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
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" \
    >"$root.log" 2>&1 || { tail -30 "$root.log"; echo "debootstrap $suite failed" >&2; return 1; }
  rm -f "$root.log"
  cp "$here/images/customize.sh" "$root/tmp/customize.sh"
  chroot "$root" /bin/sh /tmp/customize.sh
  rm -f "$root/tmp/customize.sh"
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
  ( trap '[ -z "$root" ] || rm -rf "$root" "$root.log"' EXIT; build_one "$s" ) &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
