#!/bin/sh
# Runs inside the root of the images with sshd (images/packages-ssh.txt),
# after customize.sh. sshd is not started unless a scenario asks for it, and
# no host keys are shared by every container of the image: the scenario's
# prepare makes them. Part of the image recipe.
set -e
systemctl disable ssh.service >/dev/null 2>&1 || true
rm -f /etc/ssh/ssh_host_*
