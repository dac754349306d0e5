#!/usr/bin/env python3
"""Fault matrix: the controller killed at each step of a wave, then run again.

For each kill point, rollout.yml runs against the fleet scenario's hosts
and, once the second wave reaches that step, the whole process group of
ansible-playbook is killed (SIGKILL, as a dropped SSH session, a cancelled
AWX job or Ctrl-C twice leave it). Then rollout.yml runs again, and the
bench checks that it exits 0 and that every app host ends dual-stack and
back in the balancer (no `down` line, each on its IPv6 address). The same
for rollback.yml's steps. A bounded load generator requests the balancer
over IPv4 and IPv6 through the whole matrix; its failed requests (no 200
after the address had first answered) are counted per case.

It is a benchmark, not a test (about an hour): `make test` does not run it.

    .venv/bin/python bench/interrupt-matrix.py [--only after_drain,...]

Prints one line per kill point: the step, whether the kill landed there,
the second run's exit code and wall time, hosts migrated / in the balancer,
and the failed requests through the balancer during that case.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, ".venv", "bin")
LB = "dsr-lb"
APPS = ["dsr-app%d" % i for i in range(1, 7)]
WAVE_PLAY = {"rollout.yml": "PLAY [Migrate the app hosts in waves]",
             "rollback.yml": "PLAY [Roll the app hosts back, wave by wave]"}
# (name, playbook, the task whose start means the step before it is done)
POINTS = [
    ("after_drain", "rollout.yml", "TASK [snapshot : Snapshot the files about to change]"),
    ("after_snapshot", "rollout.yml", "TASK [ipv6_kernel : Look for the kernel"),
    ("after_writes", "rollout.yml", "TASK [gunicorn_dualstack : Reload systemd units]"),
    ("after_restarts", "rollout.yml", "TASK [gunicorn_dualstack : Wait until every service listens"),
    ("after_verify", "rollout.yml", "TASK [Mark the host dual-stack]"),
    ("after_enable", "rollout.yml", "TASK [lb_nginx : Read the balancer's addresses]"),
    ("rb_after_drain", "rollback.yml", "TASK [snapshot : Restore the snapshotted files]"),
    ("rb_after_restore", "rollback.yml", "TASK [Put the kernel's IPv6 switches back at run time]"),
    ("rb_after_restarts", "rollback.yml", "TASK [Wait until the host listens exactly as before the rollout]"),
    ("rb_after_enable", "rollback.yml", "TASK [Give back this run's lock]"),
    # Not a kill: a second rollout.yml started while the first is in its
    # second wave must be refused by the run lock, and the first must finish.
    ("concurrent", "rollout.yml", "TASK [snapshot : Snapshot the files about to change]"),
]
ENV = dict(os.environ, PATH=BIN + ":" + os.environ["PATH"], ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
           ANSIBLE_HOME=os.path.join(ROOT, ".ansible"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, env=ENV, cwd=ROOT, **kw)


def inventory():
    base = os.path.join(ROOT, ".ansible", "tmp")
    for d in sorted(os.listdir(base)):
        if d.endswith(".fleet"):
            return os.path.join(base, d, "inventory")
    raise SystemExit("no fleet inventory: molecule create/converge -s fleet failed")


def playbook(name, journal, kill_at=None, timeout=1800, meanwhile=None):
    """Run a playbook; with kill_at, SIGKILL its process group when the
    second wave starts that task; with meanwhile, call it there instead and
    let the playbook go on. Returns (rc, killed, seconds, output)."""
    cmd = [os.path.join(BIN, "ansible-playbook"), "-i", inventory(), name, "-e", "dsr_journal_dir=" + journal]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT,
                         start_new_session=True)
    out, waves, killed = [], 0, False
    for line in p.stdout:
        out.append(line)
        if line.startswith(WAVE_PLAY[name]):
            waves += 1
        if meanwhile and kill_at and waves >= 2 and line.startswith(kill_at):
            meanwhile()
            kill_at = None
            continue
        if kill_at and waves >= 2 and line.startswith(kill_at):
            time.sleep(1.0)  # let the step's first host start it
            os.killpg(p.pid, signal.SIGKILL)
            killed = True
            break
        if time.monotonic() - t0 > timeout:
            os.killpg(p.pid, signal.SIGKILL)
            break
    p.wait()
    return p.returncode, killed, time.monotonic() - t0, "".join(out)


def upstream():
    return sh("docker", "exec", LB, "cat", "/etc/nginx/conf.d/app-upstream.conf").stdout


def in_balancer_on_ipv6():
    lines = [l for l in upstream().splitlines() if re.match(r"\s*server\s", l)]
    return sum(1 for l in lines if " down" not in l and "[" in l), sum(1 for l in lines if " down" in l)


def dual(host):
    ls = sh("docker", "exec", host, "sh", "-c", "ss -ltnH | awk '{print $4}'").stdout.split()
    return "[::]:80" in ls or "*:80" in ls


def load(start, rate):
    if start:
        v4 = json.loads(sh("docker", "exec", LB, "ip", "-j", "-4", "addr", "show", "dev", "eth0", "scope",
                           "global").stdout)[0]["addr_info"][0]["local"]
        v6 = json.loads(sh("docker", "exec", LB, "ip", "-j", "-6", "addr", "show", "dev", "eth0", "scope",
                           "global").stdout)[0]["addr_info"][0]["local"]
        sh("docker", "exec", LB, "rm", "-f", "/tmp/loadgen.stop", "/tmp/loadgen.json")
        sh("docker", "exec", "-d", LB, "python3", "/usr/local/bin/loadgen.py", "--rate", str(rate),
           "--max-seconds", "1800", "http://%s/" % v4, "http://[%s]/" % v6)
        time.sleep(2)
        return None
    sh("docker", "exec", LB, "touch", "/tmp/loadgen.stop")
    for _ in range(30):
        r = sh("docker", "exec", LB, "cat", "/tmp/loadgen.json", check=False)
        if r.returncode == 0 and r.stdout.strip():
            return json.loads(r.stdout)
        time.sleep(1)
    return {"sent": -1, "failed": -1}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated kill points")
    ap.add_argument("--rate", type=float, default=10.0)
    args = ap.parse_args()
    points = [p for p in POINTS if not args.only or p[0] in args.only.split(",")]
    journal = "/tmp/interrupt-journal"
    os.makedirs(journal, mode=0o700, exist_ok=True)
    print("== fleet scenario hosts (molecule create + converge -s fleet)", flush=True)
    sh(os.path.join(BIN, "molecule"), "destroy", "-s", "fleet", check=False)
    sh(os.path.join(BIN, "molecule"), "create", "-s", "fleet")
    sh(os.path.join(BIN, "molecule"), "converge", "-s", "fleet")
    sh("docker", "exec", "dsr-app3", "sh", "-c", "systemctl disable --now sandbox-squatter.service || true")
    sh("docker", "cp", os.path.join(ROOT, "bench", "loadgen.py"), LB + ":/usr/local/bin/loadgen.py")
    rows = []
    try:
        for name, book, marker in points:
            # Start each case from the state its playbook expects: IPv4 for a
            # rollout, migrated for a rollback.
            if book == "rollback.yml":
                rc, _, _, out = playbook("rollout.yml", journal)
                if rc != 0:
                    raise SystemExit("setup rollout failed:\n" + out[-3000:])
            load(True, args.rate)
            if name == "concurrent":
                # The second run's exit code and whether the lock named the
                # first; "killed" reads as "refused by the lock" in this row.
                second = {}

                def run_second():
                    rc, _, _, out = playbook(book, journal)
                    second.update(rc=rc, refused=rc != 0 and "the run lock" in out and "is held by run" in out)
                # In a thread, so the first run's output keeps being read.
                t = threading.Thread(target=run_second)
                rc2, _, secs, out2 = playbook(book, journal, kill_at=marker, meanwhile=t.start)
                t.join()
                killed = second.get("refused", False)
                if not killed:
                    out2 = "second run rc %s, not refused by the lock\n" % second.get("rc") + out2
            else:
                rc1, killed, _, _ = playbook(book, journal, kill_at=marker)
                rc2, _, secs, out2 = playbook(book, journal)
            stats = load(False, args.rate)
            on6, down = in_balancer_on_ipv6()
            migrated = sum(1 for h in APPS if dual(h))
            ok = rc2 == 0 and killed and down == 0 and (migrated == len(APPS) and on6 == len(APPS) if book == "rollout.yml"
                                              else migrated == 0 and on6 == 0)
            # Failed requests per family: a rollback takes the balancer's own
            # IPv6 listener away at its end, by design, so its IPv6 address
            # stops answering for the rest of the case.
            per = stats.get("per_url") or {}
            stats["failed"] = "%s (IPv4 %s, IPv6 %s)" % (
                stats.get("failed"), sum(v["failed"] for u, v in per.items() if "[" not in u),
                sum(v["failed"] for u, v in per.items() if "[" in u))
            rows.append((name, killed, rc2, secs, migrated, len(APPS) - down, stats.get("sent"), stats.get("failed"),
                         ok))
            print("%-18s killed=%s second_run_rc=%s %.0fs dual=%d/6 in_lb=%d/6 sent=%s failed=%s %s"
                  % (name, killed, rc2, secs, migrated, len(APPS) - down, stats.get("sent"), stats.get("failed"),
                     "OK" if ok else "NOT OK\n" + out2[-2000:]), flush=True)
            if book == "rollout.yml":
                playbook("rollback.yml", journal)
    finally:
        sh(os.path.join(BIN, "molecule"), "destroy", "-s", "fleet", check=False)
    print()
    print("| kill point | killed there | second run rc | second run s | dual-stack | in balancer | requests | failed |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %.0f | %d/6 | %d/6 | %s | %s |" % r[:8])
    sys.exit(0 if all(r[8] for r in rows) else 1)


if __name__ == "__main__":
    main()
