#!/usr/bin/env python3
"""Fleet-size benchmark: rollout.yml on sandbox fleets of 6, 12, 24 and 48
app hosts (plus a balancer), with stock Ansible settings and with the
project's tuned settings, in the same run.

For each size it starts the fleet (sandbox/fleet-up.yml with a generated
inventory) and times `rollout.yml` three ways, rolling back in between:
  stock    Ansible's own defaults: forks 5, no pipelining
  tuned    the project's ansible.cfg: pipelining, forks sized to the fleet
  mitogen  tuned + ANSIBLE_STRATEGY=mitogen_linear (the opt-in)
then removes the fleet. It prints per size and setting: wall time,
controller CPU seconds (user+sys of ansible-playbook and its children), the
per-wave floor (the slowest host's drain, gunicorn restart and readiness in
each wave, from the journal) and wall / floor.

Every host is a container on this machine, so the hosts' own work (Python
for each module, systemd, restarts) runs on the controller's CPUs. The CPU
is therefore accounted too: the hosts' CPU seconds (their containers'
cgroups), the rest of the machine's busy time (mostly the container
runtime: dockerd, containerd and runc for every `docker exec`), and the CPU
floor, busy CPU seconds / cores: the least wall time this machine allows
for that much work, however well it is scheduled. Where the CPU floor is
close to the wall time, the run is CPU-bound on this machine, and a fleet
of separate hosts would not pay the hosts' and the runtime's share on the
controller.

Same waves for every size ([1, "50%", "100%"]: three waves), so the cost
should grow with the waves, not the hosts. Bounded: BENCH_SIZES (default
"6 12 24 48") and BENCH_MAX_MINUTES (default 75; sizes that would start
after it are skipped and said so), BENCH_STOCK_MAX (default 24: stock is not
run on larger fleets, it only makes the run longer) and BENCH_SETS (default
"stock tuned mitogen"). Not a test: `make test` does not run it.

    .venv/bin/python bench/fleet_scale.py
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
IMAGES = ["dualstack-rollout/debian:11", "dualstack-rollout/debian:12", "dualstack-rollout/debian:13"]
WAVES = [1, "50%", "100%"]
# The drain waits for the requests in flight (none here) plus one read of
# the balancer's workers: counted as 1 s per wave in the floor.
DRAIN = 1
CORES = os.cpu_count()
SETTINGS = {
    "stock": lambda n: {"ANSIBLE_FORKS": "5", "ANSIBLE_PIPELINING": "False"},
    "tuned": lambda n: {"ANSIBLE_FORKS": str(n + 2)},
    "mitogen": lambda n: {"ANSIBLE_FORKS": str(n + 2), "ANSIBLE_STRATEGY": "mitogen_linear"},
}


def inventory(n, d):
    apps = {"dsr-scale-app%d" % i: {"sandbox_image": IMAGES[i % 3]} for i in range(1, n + 1)}
    inv = {"all": {
        "vars": {"sandbox_network": "dsr-scale", "sandbox_subnet4": "172.30.90.0/24",
                 "sandbox_subnet6": "fd42:d5a:90::/64", "dsr_waves": WAVES, "dsr_max_fail_percentage": 0,
                 "dsr_audit_ignore_addresses": ["127.0.0.11"]},
        "children": {
            "sandbox": {"children": {"lb": {}, "app_hosts": {}},
                        "vars": {"ansible_connection": "docker", "ansible_become": False,
                                 "ansible_python_interpreter": "/usr/bin/python3"}},
            "lb": {"hosts": {"dsr-scale-lb": {"sandbox_image": IMAGES[1]}}},
            "app_hosts": {"hosts": apps, "vars": {"listener_verify__peer": "dsr-scale-lb",
                                                  "listener_verify__expect_json": {"scheme": "https"}}},
        }}}
    path = os.path.join(d, "hosts.yml")
    with open(path, "w") as f:
        json.dump(inv, f)  # JSON is YAML
    return path


def machine_busy():
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def container_cgroups(names):
    """cpu.stat of each named container, for cgroup v2 (systemd or cgroupfs
    driver) and the v1 hybrid layout; missing ones are left out."""
    r = subprocess.run(["docker", "inspect", "-f", "{{.Id}}"] + list(names), capture_output=True, text=True)
    paths = []
    for cid in r.stdout.split():
        for pat in ("/sys/fs/cgroup/system.slice/docker-%s.scope/cpu.stat", "/sys/fs/cgroup/docker/%s/cpu.stat",
                    "/sys/fs/cgroup/unified/docker/%s/cpu.stat"):
            if os.path.exists(pat % cid):
                paths.append(pat % cid)
                break
    return paths


def cgroup_cpu(paths):
    total = 0.0
    for p in paths:
        with open(p) as f:
            for line in f:
                if line.startswith("usage_usec"):
                    total += int(line.split()[1]) / 1e6
    return total


def play(inv, playbook, extra_env=None, extra_args=(), timeout=3600):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOME=os.path.join(ROOT, ".ansible"), PATH=BIN + ":" + os.environ["PATH"])
    env.update(extra_env or {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inv, os.path.join(ROOT, playbook)]
                       + list(extra_args), capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return r, wall, cpu


def failure(r):
    """The failed tasks of a run (each with a few lines of context), then the recap."""
    lines = r.stdout.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith(("fatal:", "failed:")) or "FAILED!" in line:
            out.extend(lines[max(0, i - 2):i + 12] + ["..."])
    return "\n".join(out[-120:] + lines[-30:]) + "\n" + r.stderr[-2000:]


def floor_seconds(journal_dir):
    """Sum over waves of the slowest host's drain + gunicorn restart and readiness."""
    runs = sorted(os.listdir(journal_dir))
    entries = [json.load(open(os.path.join(journal_dir, runs[-1], f)))
               for f in os.listdir(os.path.join(journal_dir, runs[-1])) if f.endswith(".json")]
    per_wave = {}
    for e in entries:
        t = e.get("times") or {}
        if "kernel_done" in t and "gunicorn_done" in t:
            s = (datetime.fromisoformat(t["gunicorn_done"]) - datetime.fromisoformat(t["kernel_done"])).total_seconds()
            per_wave[e["wave"]] = max(per_wave.get(e["wave"], 0.0), s + DRAIN)
    return sum(per_wave.values()), len(per_wave)


def inotify_room(n):
    """Every container's systemd holds a handful of inotify instances, all
    counted against root's fs.inotify.max_user_instances (128 by default):
    past about 20 containers systemd fails to start ("Failed to connect to
    bus"). Raise the limit for the run when root, else say what to do."""
    path = "/proc/sys/fs/inotify/max_user_instances"
    need = 16 * (n + 1) + 128
    have = int(open(path).read())
    if have >= need:
        return
    try:
        with open(path, "w") as f:
            f.write(str(need))
        print("   fs.inotify.max_user_instances raised from %d to %d for %d containers" % (have, need, n + 1),
              flush=True)
    except OSError:
        raise SystemExit("fs.inotify.max_user_instances is %d; %d containers need about %d: "
                         "sysctl -w fs.inotify.max_user_instances=%d" % (have, n + 1, need, need))


def main():
    sizes = [int(x) for x in os.environ.get("BENCH_SIZES", "6 12 24 48").split()]
    sets = os.environ.get("BENCH_SETS", "stock tuned mitogen").split()
    stock_max = int(os.environ.get("BENCH_STOCK_MAX", "24"))
    print("machine: %d CPUs, load average %s" % (os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())),
          flush=True)
    deadline = time.monotonic() + 60 * float(os.environ.get("BENCH_MAX_MINUTES", "75"))
    rows = []
    for n in sizes:
        if time.monotonic() > deadline:
            print("skipped %d hosts: BENCH_MAX_MINUTES reached" % n, flush=True)
            continue
        d = tempfile.mkdtemp(prefix="dsr-scale-")
        inv = inventory(n, d)
        try:
            print("== %d app hosts: starting the fleet" % n, flush=True)
            inotify_room(n)
            play(inv, "sandbox/fleet-down.yml")
            r, wall, _ = play(inv, "sandbox/fleet-up.yml", {"ANSIBLE_FORKS": str(n + 2)})
            if r.returncode != 0:
                print(failure(r))
                raise SystemExit("fleet of %d did not start" % n)
            print("   fleet up in %.0f s" % wall, flush=True)
            cgroups = container_cgroups(json.load(open(inv))["all"]["children"]["app_hosts"]["hosts"].keys()
                                        | {"dsr-scale-lb"})
            if len(cgroups) != n + 1:
                print("   (the cgroups of %d of %d containers were not found: hosts' CPU is partial)"
                      % (n + 1 - len(cgroups), n + 1), flush=True)
            todo = [s for s in sets if not (s == "stock" and n > stock_max)]
            for k, name in enumerate(todo):
                if k:
                    r, rb_wall, _ = play(inv, "rollback.yml", SETTINGS["tuned"](n))
                    if r.returncode != 0:
                        print(failure(r))
                        raise SystemExit("rollback on %d hosts failed" % n)
                    print("   (rolled back in %.0f s)" % rb_wall, flush=True)
                journal = os.path.join(d, "journal-" + name)
                busy0, hosts0 = machine_busy(), cgroup_cpu(cgroups)
                r, wall, cpu = play(inv, "rollout.yml", SETTINGS[name](n), ["-e", "dsr_journal_dir=" + journal])
                busy, hosts = machine_busy() - busy0, cgroup_cpu(cgroups) - hosts0
                ok = r.returncode == 0
                fl, waves = floor_seconds(journal) if ok else (float("nan"), 0)
                rows.append((n, name, wall, cpu, fl, waves, ok, hosts, busy - cpu - hosts, busy / CORES))
                print("   %-6s rollout %s in %.1f s (cpu %.1f s controller, %.1f s hosts, %.1f s other; "
                      "floor %.1f s over %d waves, CPU floor %.1f s)"
                      % (name, "ok" if ok else "FAILED", wall, cpu, hosts, busy - cpu - hosts, fl, waves, busy / CORES),
                      flush=True)
                if not ok:
                    print(failure(r))
        finally:
            play(inv, "sandbox/fleet-down.yml")
    print()
    print("%5s  %-7s %8s %8s %8s %8s %8s %10s %10s %s" % (
        "hosts", "set", "wall_s", "cpu_s", "hosts_s", "other_s", "floor_s", "wall/floor", "cpufloor_s", "ok"))
    for n, name, wall, cpu, fl, waves, ok, hosts, other, cpufloor in rows:
        print("%5d  %-7s %8.1f %8.1f %8.1f %8.1f %8.1f %10.2f %10.1f %s" % (
            n, name, wall, cpu, hosts, other, fl, wall / fl if fl else 0, cpufloor, ok))
    print("cpu_s: controller (ansible-playbook and children); hosts_s: the containers' cgroups; other_s: the rest of")
    print("the machine's busy time (container runtime); cpufloor_s: (cpu+hosts+other) / %d cores." % CORES)
    by = {(n, s): w for n, s, w, _, _, _, ok, _, _, _ in rows if ok}
    cpufl = {(n, s): c for n, s, _, _, _, _, ok, _, _, c in rows if ok}
    for n in sizes:
        for fast in ("tuned", "mitogen"):
            if (n, "stock") in by and (n, fast) in by:
                print("%d hosts: %s is %.2fx faster than stock" % (n, fast, by[(n, "stock")] / by[(n, fast)]))
    for s in ("tuned", "mitogen"):
        if (48, s) in by and (12, s) in by:
            print("48 vs 12 hosts (%s, same waves): %.2fx the wall time; the CPU floor grew %.2fx"
                  % (s, by[(48, s)] / by[(12, s)], cpufl[(48, s)] / cpufl[(12, s)]))
    print("machine after: load average %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main()
