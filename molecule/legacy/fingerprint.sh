#!/bin/sh
# sha256, mode and owner of every file under the directories a migration may
# touch (the tests compare this before the rollout and after rollback.yml).
for d in /etc/nginx /etc/systemd/system /etc/sysctl.d /etc/sandbox-app /etc/default /etc/supervisor; do
  [ -d "$d" ] && find "$d" \( -type f -o -type l \) -print
done | sort | while read -r f; do
  printf '%s %s\n' "$(stat -c '%a %U:%G %F' "$f")" "$(sha256sum < "$f" 2>/dev/null | cut -c1-64)  $f"
done
