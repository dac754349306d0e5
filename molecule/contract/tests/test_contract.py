"""The safety contract, on real hosts configured in ways the discovery does
not read (see ../converge.yml). The tests run in file order and drive the
real entry points with ansible-playbook:

1. before: fingerprint every file the rollout may touch, record each
   service's run state and the kernel's IPv6 switches at run time;
2. the read-only phases execute nothing: audit.yml, preflight and
   `rollout.yml --check` never run the wrapper script (no marker appears);
3. each host whose discovery is wrong stops in preflight with nothing
   changed, and the message names the unit and what it really listens on;
4. rollout.yml on the others: the host with stopped services is migrated
   and its stopped services stay stopped (nginx, a gunicorn unit); the host
   whose IPv6 was off gets no global IPv6 address and is restored, IPv6 off
   again at run time; the sabotaged host is caught by the before/after
   check and restored; every host serves IPv4 from the peer as before;
5. rollback.yml: every file, run state and kernel value as before.
"""
import os
import re

import pytest

from conftest import addresses, docker_host, fingerprint, http_get, run_playbook, url

PEER = "dsr-c-peer"
WRONG = {
    # host: what the message must name (the unit and its real socket)
    "dsr-c-portenv": ["portapp.service", "0.0.0.0:8010"],
    "dsr-c-wrapper": ["wrapapp.service"],
    "dsr-c-nginxstale": ["8081"],
    # an IPv4 allow-list against an IPv6 blocklist is a widening
    "dsr-c-blocklist": ["port 8000", "dsr_exposure_accept"],
}
RUN = ["dsr-c-stopped", "dsr-c-ipv6off", "dsr-c-sabotage", "dsr-c-forms"]
FORMS = {"appt@8002.service": 8002, "appo.service": 8003, "appc.service": 8004}
ALL = RUN + list(WRONG)
UNITS = ["webapp.service", "idle.service", "nginx.service", "portapp.service", "wrapapp.service",
         "appt@8002.service", "appo.service", "appc.service"]
MARKER = "/var/tmp/gunicorn-start.executed"
KERNEL = ["net.ipv6.bindv6only", "net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6",
          "net.ipv6.conf.lo.disable_ipv6", "net.ipv6.conf.eth0.disable_ipv6"]
STATE = {}


def host(name):
    return docker_host(name)


def run_states(name):
    """{unit: (ActiveState, UnitFileState)} as systemctl shows them."""
    out = host(name).check_output("systemctl show -p Id,ActiveState,UnitFileState %s" % " ".join(UNITS))
    states = {}
    for block in out.split("\n\n"):
        d = dict(l.split("=", 1) for l in block.splitlines() if "=" in l)
        states[d["Id"]] = (d.get("ActiveState"), d.get("UnitFileState"))
    return states


def kernel(name):
    """The IPv6 switches at run time, read with sysctl."""
    return {k: host(name).check_output("sysctl -n %s" % k) for k in KERNEL}


def snapshot(name):
    return {"files": fingerprint(name), "run": run_states(name), "kernel": kernel(name)}


def restorable(state, before):
    """The state a restore must give back. `all.disable_ipv6` is left out
    when the interfaces had other values than `all` before (Docker's IPv6
    networks: all=1, eth0=0, lo=0): writing it would switch them off again,
    so the restore writes the interfaces one by one and says so."""
    kernel = dict(state["kernel"])
    was = before["kernel"]
    ifaces = [v for k, v in was.items() if k.endswith(".disable_ipv6") and ".all." not in k and ".default." not in k]
    if any(v != was["net.ipv6.conf.all.disable_ipv6"] for v in ifaces):
        kernel.pop("net.ipv6.conf.all.disable_ipv6", None)
    return dict(state, kernel=kernel)


def playbook(name, *args):
    return run_playbook(STATE["journal"], name, *args)


def journal_entries():
    """{host: entry} of the newest run in the journal."""
    import json
    runs = sorted(d for d in os.listdir(STATE["journal"]) if os.path.isdir(os.path.join(STATE["journal"], d)))
    last = os.path.join(STATE["journal"], runs[-1])
    return {f[:-5]: json.load(open(os.path.join(last, f))) for f in os.listdir(last) if f.endswith(".json")}


def serves_ipv4_from_peer(name, port=8000):
    r = http_get(host(PEER), url(addresses(host(name))["ipv4"][0], port))
    return r.status == 200


def dual(name, port=8000):
    ls = host(name).check_output("ss -ltnH 2>/dev/null | awk '{print $4}'").split()
    return ("*:%d" % port in ls) or ("[::]:%d" % port in ls)


@pytest.fixture(scope="module", autouse=True)
def journal(tmp_path_factory):
    STATE["journal"] = str(tmp_path_factory.mktemp("journal"))
    os.chmod(STATE["journal"], 0o700)


def test_01_before():
    STATE["before"] = {h: snapshot(h) for h in ALL}
    run = STATE["before"]["dsr-c-stopped"]["run"]
    assert run["idle.service"] == ("inactive", "disabled"), run
    assert run["nginx.service"] == ("inactive", "disabled"), run
    assert run["webapp.service"] == ("active", "enabled"), run
    assert set(STATE["before"]["dsr-c-ipv6off"]["kernel"].values()) == {"0", "1"}
    assert STATE["before"]["dsr-c-ipv6off"]["kernel"]["net.ipv6.conf.eth0.disable_ipv6"] == "1"
    assert not host("dsr-c-wrapper").file(MARKER).exists
    for h in RUN + ["dsr-c-portenv"]:
        assert serves_ipv4_from_peer(h, 8010 if h == "dsr-c-portenv" else 8000), h
    for unit, port in FORMS.items():
        assert serves_ipv4_from_peer("dsr-c-forms", port) and not dual("dsr-c-forms", port), unit


def test_02_read_only_phases_execute_nothing(tmp_path):
    r = playbook("audit.yml", "-e", "dsr_report_dir=%s" % (tmp_path / "reports"))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert not host("dsr-c-wrapper").file(MARKER).exists, "audit.yml ran the wrapper script"
    r = playbook("rollout.yml", "--check", "--limit", "dsr-c-wrapper")
    assert not host("dsr-c-wrapper").file(MARKER).exists, "preflight or --check ran the wrapper script"
    assert {h: snapshot(h) for h in ALL} == STATE["before"]


@pytest.mark.parametrize("name", sorted(WRONG))
def test_03_wrong_discovery_stops_in_preflight_with_nothing_changed(name):
    r = playbook("rollout.yml", "--limit", name)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "Preflight failed; nothing was changed anywhere." in out, out[-3000:]
    verdict = out[out.index("Preflight failed"):]
    for word in WRONG[name]:
        assert word in verdict, (word, verdict[:2000])
    assert snapshot(name) == STATE["before"][name]
    assert not host("dsr-c-wrapper").file(MARKER).exists


def test_04_rollout_leaves_stopped_services_stopped_and_restores_failed_hosts():
    r = playbook("rollout.yml", "--limit", ",".join(RUN))
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]  # two hosts fail by design
    STATE["rollout"] = out
    entries = journal_entries()
    assert entries["dsr-c-stopped"]["result"] == "migrated", entries["dsr-c-stopped"]
    assert sorted(entries["dsr-c-stopped"]["not_migrated"]) == [
        "idle.service: stopped, left alone", "nginx.service: stopped, left alone"]
    assert entries["dsr-c-ipv6off"]["result"] == "failed"
    assert "has no global IPv6 address" in entries["dsr-c-ipv6off"]["error"], entries["dsr-c-ipv6off"]
    # The IPv6-off host had every interface off: `all` restores them all.
    off = STATE["before"]["dsr-c-ipv6off"]
    assert restorable(off, off)["kernel"] == off["kernel"]
    assert "stays as it is: writing it would set every interface" in " ".join(out.split())
    assert entries["dsr-c-sabotage"]["result"] == "failed"
    assert "no longer listens on 0.0.0.0:8000" in entries["dsr-c-sabotage"]["error"], entries["dsr-c-sabotage"]


def test_05_the_migrated_host_kept_its_stopped_services_stopped():
    now = snapshot("dsr-c-stopped")
    assert now["run"] == STATE["before"]["dsr-c-stopped"]["run"]
    assert dual("dsr-c-stopped") and not dual("dsr-c-stopped", 8001) and not dual("dsr-c-stopped", 80)
    # Their files are left alone too: no drop-in for idle, nginx's files as they were.
    assert "/etc/systemd/system/idle.service.d" not in now["files"]
    nginx = [l for l in now["files"].splitlines() if " /etc/nginx/" in l]
    assert nginx == [l for l in STATE["before"]["dsr-c-stopped"]["files"].splitlines() if " /etc/nginx/" in l]
    six = addresses(host("dsr-c-stopped"))["ipv6"]
    assert six and http_get(host(PEER), url(six[0], 8000)).status == 200
    assert serves_ipv4_from_peer("dsr-c-stopped")


def test_05b_the_forms_discovery_reads_went_dual_stack():
    """A template (%i), a bind only in override.conf, options after the app
    module, ./gunicorn.conf.py, and a TLS listen from an included snippet."""
    h = host("dsr-c-forms")
    six = addresses(h)["ipv6"][0]
    for unit, port in FORMS.items():
        assert dual("dsr-c-forms", port), unit
        assert http_get(host(PEER), url(six, port)).status == 200, unit
        assert serves_ipv4_from_peer("dsr-c-forms", port), unit
    # The tool's drop-in sorts after override.conf, and systemd says it won.
    show = h.check_output("systemctl show -p ExecStart appo.service")
    assert "[::]:8003" in show, show
    # nginx's TLS twin went into the snippet, under the IPv4 listen.
    assert h.file("/etc/nginx/snippets/tls-listen.conf").content_string == "listen 8443 ssl;\nlisten [::]:8443 ssl;\n"
    assert dual("dsr-c-forms", 8443)
    r = h.run("curl -sk -o /dev/null -w '%%{http_code}' https://[%s]:8443/" % six)
    assert r.stdout == "200", r.stdout


@pytest.mark.parametrize("name", ["dsr-c-ipv6off", "dsr-c-sabotage"])
def test_06_failed_hosts_are_back_exactly_as_before(name):
    before = STATE["before"][name]
    assert restorable(snapshot(name), before) == restorable(before, before)
    assert serves_ipv4_from_peer(name)
    assert not dual(name)


def test_07_rollback_puts_every_run_state_and_kernel_value_back():
    r = playbook("rollback.yml", "--limit", ",".join(RUN))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    for h in RUN:
        before = STATE["before"][h]
        assert restorable(snapshot(h), before) == restorable(before, before), h
        assert serves_ipv4_from_peer(h), h
    # A second rollback changes nothing.
    r = playbook("rollback.yml", "--limit", ",".join(RUN))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert not re.search(r"changed=[1-9]", r.stdout), r.stdout[-3000:]
