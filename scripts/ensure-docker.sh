#!/usr/bin/env bash
# Make sure a Docker engine answers, installing and starting one if needed.
# - Installs Debian's docker.io (the engine) and debootstrap (image builds)
#   when they are missing. Needs root and Debian's package mirror.
# - Starts dockerd in the background when `docker info` fails and no init
#   system runs it, and records its pid in .cache/dockerd.pid so that
#   `scripts/ensure-docker.sh --stop` stops only the daemon this script started.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
pidfile="$here/.cache/dockerd.pid"
mkdir -p "$here/.cache"

if [ "${1:-}" = "--stop" ]; then
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "stopping the dockerd this project started (pid $(cat "$pidfile"))"
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 30); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$pidfile"
  exit 0
fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v docker >/dev/null 2>&1 || need+=(docker.io)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  echo "installing ${need[*]} from Debian's packages..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
  systemctl start docker
else
  echo "starting dockerd (log: /var/log/dockerd.log)..."
  nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
  echo $! >"$pidfile"
fi
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && { echo "Docker engine is up"; exit 0; }
  sleep 1
done
echo "Docker engine did not answer within 60 s; see /var/log/dockerd.log" >&2
tail -20 /var/log/dockerd.log >&2 || true
exit 1
