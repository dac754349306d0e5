#!/usr/bin/env bash
# Run Molecule scenarios in parallel lanes: each lane runs its scenarios one
# after another, the lanes side by side (every scenario has its own
# containers, network and addresses, so two never meet). Each scenario's
# output goes to LOGDIR/SCENARIO.log; a failed scenario's last lines are
# printed (and, at the very end, its failed tests and why), and the first failure ends the run once the other lanes finish
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
logdir=$(cd "$logdir" && pwd)   # absolute: pytest runs in the scenario's directory
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
    rm -f "$logdir/$s.xml"
    env ${DSR_SCENARIO_ENV:-} PATH="$bin:$PATH" PYTEST_ADDOPTS="--junitxml=$logdir/$s.xml" \
      "$bin/molecule" test -s "$s" >"$logdir/$s.log" 2>&1
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
  # Last, where a CI summary that keeps only the end of the output sees it:
  # which tests failed, and why (Molecule folds the verifier's lines; the
  # JUnit file pytest writes does not).
  while read -r s; do
    echo "== $s: failed tests"
    "$DSR_BIN/python" - "$logdir/$s.xml" "$s" <<'EOF' || true
import sys
import xml.etree.ElementTree as ET
try:
    cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
except (OSError, ET.ParseError) as e:
    sys.exit("[%s] no test results (%s): it failed before its tests ended" % (sys.argv[2], e))
for case in cases:
    for bad in case.findall("failure") + case.findall("error"):
        # the end of pytest's "E" lines: where an assertion's output ends
        # (an error, the play recap), not its first line
        lines = [l for l in (bad.text or bad.get("message") or "").splitlines()
                 if l.startswith("E ") and "+  where" not in l and l.strip() != "E"]
        print("[%s] %s:" % (sys.argv[2], case.get("name")))
        for l in lines[-14:]:
            print("[%s]   %s" % (sys.argv[2], l[:300]))
EOF
  done <"$failed"
  echo "== scenarios FAILED: $(paste -sd' ' "$failed")"
  exit 1
fi
echo "== every scenario passed"
