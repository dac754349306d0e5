#!/usr/bin/env bash
# Benchmark: the fleet rollout while a bounded load generator sends requests
# through the load balancer over IPv4 and IPv6, against a naive baseline in
# the same run (migrate every host in place at once, no drain). Prints, for
# each: requests sent, failed, p50/p99 latency and wall time; and the slow
# requests (the sandbox app's /slow, BENCH_SLOW_SECONDS each, one always in
# flight per family; the app hosts' gunicorn has two sync workers): sent and
# failed.
#
# Usage: bench/rollout-under-load.sh [fleet|haproxy]
# Uses the Molecule `fleet` scenario's hosts (nginx as the balancer), or the
# `haproxy` scenario's (HAProxy 2.6), created here and destroyed at the
# end. The load runs inside the balancer container against its own global
# addresses, so every request crosses client -> LB -> app over the real
# network namespaces. Bounded: at most BENCH_RATE req/s per family and
# BENCH_MAX_SECONDS per phase.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_HOME="$PWD/.ansible"
RATE=${BENCH_RATE:-20}
MAXS=${BENCH_MAX_SECONDS:-900}
SLOW=${BENCH_SLOW_SECONDS:-6}
SCENARIO=${1:-fleet}
case $SCENARIO in
  fleet) LB=dsr-lb FAULTY=dsr-app3 ;;
  haproxy) LB=dsr-h-lb FAULTY=dsr-h-app3 ;;
  *) echo "usage: $0 [fleet|haproxy]" >&2; exit 2 ;;
esac

cleanup() { molecule destroy -s "$SCENARIO" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== creating the sandbox fleet (molecule $SCENARIO scenario, no fault)"
molecule destroy -s "$SCENARIO" >/dev/null 2>&1 || true
molecule create -s "$SCENARIO" >/dev/null
molecule converge -s "$SCENARIO" >/dev/null
# the scenario puts a squatter on one host for its fault test; not here
docker exec $FAULTY sh -c 'systemctl disable --now sandbox-squatter.service 2>/dev/null || true'
inv=$(ls -d .ansible/tmp/molecule.*."$SCENARIO"/inventory | head -1)
docker cp bench/loadgen.py $LB:/usr/local/bin/loadgen.py >/dev/null
v4=$(docker exec $LB ip -j -4 addr show dev eth0 scope global | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["addr_info"][0]["local"])')
v6=$(docker exec $LB ip -j -6 addr show dev eth0 scope global | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["addr_info"][0]["local"])')

phase() {  # name, command...
  local name=$1; shift
  docker exec $LB rm -f /tmp/loadgen.stop /tmp/loadgen.json
  # A short request may wait behind a slow one for a gunicorn worker (two
  # sync workers per app host): its time-out is past the slow requests' so
  # that only a dropped request counts as failed, never a queued one.
  docker exec -d $LB python3 /usr/local/bin/loadgen.py --rate "$RATE" --max-seconds "$MAXS" --timeout $((SLOW + 4)) \
    --slow "http://$v4/slow?s=$SLOW" --slow "http://[$v6]/slow?s=$SLOW" --slow-timeout $((SLOW + 10)) --slow-concurrency 1 \
    "http://$v4/" "http://[$v6]/"
  sleep 2
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  "$@" >"/tmp/bench-$name.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  sleep 2
  docker exec $LB touch /tmp/loadgen.stop
  for _ in $(seq 1 $((SLOW + 30))); do docker exec $LB test -s /tmp/loadgen.json && break; sleep 1; done
  printf '%s\t%s\t%.1f\t%s\n' "$name" "$(docker exec $LB cat /tmp/loadgen.json)" "$(python3 -c "print($t1 - $t0)")" "$rc" >>/tmp/bench-results.tsv
}

: >/tmp/bench-results.tsv
echo "== tool: rollout.yml (canary + waves, drain through the balancer)"
phase tool ansible-playbook -i "$inv" rollout.yml -e dsr_journal_dir=/tmp/bench-journal
echo "== back to IPv4: rollback.yml"
ansible-playbook -i "$inv" rollback.yml --limit app_hosts >/tmp/bench-rollback.log 2>&1  # LB stays dual-stack
echo "== naive baseline: every host migrated in place at once, no drain"
phase naive ansible-playbook -i "$inv" playbooks/migrate-host.yml -e dsr_journal_dir=/tmp/bench-journal

echo
# (head inside the container: under pipefail a closed pipe would end the script)
if [ "$SCENARIO" = haproxy ]; then prog=$(docker exec $LB sh -c 'haproxy -v | head -1'); else prog=$(docker exec $LB nginx -v 2>&1); fi
echo "balancer: $prog ($SCENARIO scenario)"
echo "failed: requests that got no 200 after their URL had first answered (dropped by a working service);"
echo "not_up: refusals before the balancer first answered on that family (IPv6 before rollout.yml"
echo "        makes the balancer listen on IPv6)."
echo "slow: requests of $SLOW s to /slow, one in flight per family all the time; failed as above."
printf '%-7s %9s %7s %7s %8s %8s %9s %9s %11s %s\n' run sent failed not_up p50_ms p99_ms slow_sent slow_failed wall_s rc
while IFS=$'\t' read -r name json wall rc; do
  python3 - "$name" "$json" "$wall" "$rc" <<'PY'
import json, sys
name, j, wall, rc = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
print("%-7s %9d %7d %7d %8s %8s %9d %9d %11s %s" % (name, j["sent"], j["failed"], j["not_up"], j["p50_ms"], j["p99_ms"],
                                                  j.get("slow_sent", 0), j.get("slow_failed", 0), wall, rc))
for u, v in sorted(list(j["per_url"].items()) + list(j.get("slow_per_url", {}).items())):
    print("          %-40s sent %6d  failed %5d  not_up %5d" % (u, v["sent"], v["failed"], v["not_up"]))
PY
done </tmp/bench-results.tsv
