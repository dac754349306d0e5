#!/usr/bin/env bash
# Tools the unit tests hand their output to, so that the real program judges
# it: nginx (with the stream module) for `nginx -t` on every nginx corpus
# result. Installed from Debian's packages when missing; the service is
# never started on this machine (a policy-rc.d forbids it during the
# install). Needs root and Debian's package mirror; without them the tests
# that need nginx skip with a message.
set -euo pipefail

if command -v nginx >/dev/null 2>&1 && [ -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "nginx is missing and cannot be installed here: the nginx -t checks will skip" >&2
  exit 0
fi
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  made_policy=1
fi
trap 'if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
echo "installing nginx libnginx-mod-stream from Debian's packages (for nginx -t in the unit tests; not started)"
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx libnginx-mod-stream >/dev/null
