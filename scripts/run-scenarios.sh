#!/usr/bin/env bash
# Run Molecule scenarios in parallel lanes: each lane runs its scenarios one
# after another, the lanes side by side (every scenario has its own
# containers, network and addresses, so two never meet). Each scenario's
# output goes to LOGDIR/SCENARIO.log; a failed scenario's last lines are
# printed, and the first failure ends the run once the other lanes finish
# their current scenario.
#
# Usage: scripts/run-scenarios.sh LOGDIR "LANE1 SCENARIOS" "LANE2 SCENARIOS" ...
# Env:   DSR_BIN         the controller virtualenv's bin directory
#        DSR_LEGACY_BIN  the same for the scenarios in DSR_LEGACY_SCENARIOS
#        DSR_LEGACY_SCENARIOS  scenarios that run on ansible-core 2.16
#        DSR_SCENARIO_ENV      extra VAR=VALUE words for every scenario
set -uo pipefail
logdir=$1; shift
mkdir -p "$logdir"
failed="$logdir/.failed"
rm -f "$failed"

lane() {
  local s bin start rc
  for s in $1; do
    [ -e "$failed" ] && { echo "== scenario $s not run (another scenario failed)"; continue; }
    bin=$DSR_BIN
    case " ${DSR_LEGACY_SCENARIOS:-} " in *" $s "*) bin=$DSR_LEGACY_BIN ;; esac
    # (`ansible --version | head -1` would print a BrokenPipeError traceback.)
    echo "== scenario $s started (ansible-core $("$bin/python" -c 'from ansible.release import __version__ as v; print(v)')), log $logdir/$s.log"
    start=$(date +%s)
    # shellcheck disable=SC2086
    env ${DSR_SCENARIO_ENV:-} PATH="$bin:$PATH" "$bin/molecule" test -s "$s" >"$logdir/$s.log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
      echo "$s" >>"$failed"
      echo "== scenario $s FAILED after $(( $(date +%s) - start )) s; its last lines:"
      tail -150 "$logdir/$s.log" | sed "s/^/[$s] /"
    else
      echo "== scenario $s passed in $(( $(date +%s) - start )) s"
    fi
  done
}

pids=()
for l in "$@"; do
  lane "$l" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
if [ -e "$failed" ]; then
  echo "== scenarios FAILED: $(paste -sd' ' "$failed")"
  exit 1
fi
echo "== every scenario passed"
