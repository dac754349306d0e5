#!/usr/bin/env bash
# Tools the unit tests hand their output to, so that the real program judges
# it: nginx (with the stream module) for `nginx -t` on every nginx corpus
# result, and HAProxy for `haproxy -c` on every haproxy.cfg the dual-stack
# plan writes and for the runtime API the dsr_haproxy module talks to (the
# tests start their own haproxy, unprivileged, on high ports in a temporary
# directory). Installed from Debian's packages when missing; the services are
# never started on this machine (a policy-rc.d forbids it during the
# install). Needs root and Debian's package mirror; without them the tests
# that need nginx or haproxy skip with a message.
set -euo pipefail

missing=()
if ! command -v nginx >/dev/null 2>&1 || [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  missing+=(nginx libnginx-mod-stream)
fi
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  missing+=(haproxy)
fi
if [ ${#missing[@]} = 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "${missing[*]} missing and cannot be installed here: the nginx -t and haproxy checks that need them will skip" >&2
  exit 0
fi
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  made_policy=1
fi
trap 'if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
echo "installing ${missing[*]} from Debian's packages (for nginx -t and haproxy -c in the unit tests; not started)"
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
