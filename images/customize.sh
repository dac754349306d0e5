#!/bin/sh
# Runs inside the freshly bootstrapped root (chroot) to make it a container
# host: no consoles or hardware units, no periodic apt jobs, and an empty
# machine-id so every container gets its own. Part of the image recipe.
set -e
systemctl mask getty@tty1.service serial-getty@console.service \
  systemd-udevd.service systemd-udevd-kernel.socket systemd-udevd-control.socket \
  systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
  systemd-remount-fs.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_reap.service >/dev/null 2>&1 || true
: >/etc/machine-id
rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/*
