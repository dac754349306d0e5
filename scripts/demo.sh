#!/usr/bin/env bash
# make demo: a sandbox fleet in containers (a balancer and four legacy app
# hosts on Debian 11/12/13), the audit before, rollout.yml, the audit after.
# Every step's full output goes to demo-logs/; the screen shows progress.
set -euo pipefail
umask 077  # logs and reports stay owner-only
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_HOME="$PWD/.ansible"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
logs=demo-logs
mkdir -p "$logs" reports && chmod 700 "$logs" reports
t_all=$(date +%s)

step() {  # step N TITLE LOG -- command...
  local n=$1 title=$2 log=$3; shift 4
  local t0 rc=0
  t0=$(date +%s)
  echo
  echo "== [$n/5] $title"
  # progress: one line per play and task, the full output in the log
  set +e
  "$@" 2>&1 | tee "$logs/$log" | grep --line-buffered -E '^(PLAY|TASK) \[' \
    | sed -u -E 's/ \*+$//; s/^PLAY \[/  play: /; s/^TASK \[/    task: /; s/\]$//'
  rc=${PIPESTATUS[0]}
  set -e
  echo "   ... $(( $(date +%s) - t0 )) s (log: $logs/$log)"
  return "$rc"
}

recap() { sed -n '/^PLAY RECAP/,$p' "$logs/$1" | grep -v '^$' | sed 's/^/   /'; }

step 1 "start the sandbox fleet (fresh containers, legacy IPv4-only stack)" fleet-up.log -- \
  bash -c 'ansible-playbook sandbox/fleet-down.yml >/dev/null && ansible-playbook sandbox/fleet-up.yml'

step 2 "audit before: read-only, what the fleet listens on" audit-before.log -- \
  ansible-playbook audit.yml -e dsr_report_stamp=before
cat reports/audit-before.txt | sed 's/^/   /'

rc=0
step 3 "rollout.yml: preflight, balancer, canary, then the rest (no -i: inventory/sandbox)" rollout.log -- \
  ansible-playbook rollout.yml || rc=$?
recap rollout.log

step 4 "audit after" audit-after.log -- ansible-playbook audit.yml -e dsr_report_stamp=after
cat reports/audit-after.txt | sed 's/^/   /'

echo
echo "== [5/5] done in $(( $(date +%s) - t_all )) s; rollout.yml exit code $rc"
cat <<MSG
   reports:   reports/audit-before.{md,html,json}  reports/audit-after.{md,html,json}
   journal:   journal/<run>/<host>.json (per host: wave, listeners before/after, step timings)
   try:       ansible-playbook rollout.yml          # again: changes nothing
              ansible-playbook rollout.yml --check --diff
   roll back: ansible-playbook rollback.yml         # every file back byte for byte
   tear down: make demo-clean
MSG
exit "$rc"
