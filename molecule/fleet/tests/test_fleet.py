"""Fleet rollout end to end, on the real containers of this scenario.

The tests run in file order and drive the real entry points with
ansible-playbook against Molecule's inventory:

1. before: fingerprint every file the rollout may touch, on every host;
   the audit reports every app host IPv4-only and dsr-app3's squatter as
   unmanaged; `rollout.yml --check --diff` shows the plan and changes
   nothing; a firewall that keeps a port closed on IPv4 but not on IPv6
   stops the rollout in preflight, before any change;
2. rollout.yml with a fault on dsr-app3 (second wave): the run stops there,
   dsr-app3 is back on IPv4 with byte-identical files and in the balancer,
   wave 1 and dsr-app2 are dual-stack, wave 3 is untouched;
3. rollback.yml --limit on a never-migrated host says so and changes nothing;
4. the fault removed, rollout.yml completes: every host answers through the
   balancer over IPv4 and IPv6, balancer-to-app traffic on IPv6, and every
   rule that trusted the balancer by its IPv4 address (nginx realip on every
   host, `allow` on dsr-app2, gunicorn's forwarded_allow_ips on dsr-app4)
   trusts its IPv6 source too: the app sees the real client and https over
   both families, before, after the rollout and after the rollback;
5. a second rollout.yml changes nothing;
6. rollback.yml returns every host to byte-identical files and IPv4-only
   listeners; a second rollback.yml changes nothing.
"""
import json
import os
import re

import pytest

from conftest import addresses, docker_host, fingerprint, http_get, run_playbook, url

APPS = ["dsr-app%d" % i for i in range(1, 7)]
LB = "dsr-lb"
STATE = {}


def host(name):
    return docker_host(name)


def playbook(name, *args):
    return run_playbook(STATE["journal"], name, *args)


def recap(output):
    """{host: {ok, changed, failed, ...}} from the PLAY RECAP."""
    out = {}
    for m in re.finditer(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                         output, re.M):
        out[m.group(1)] = {"ok": int(m.group(2)), "changed": int(m.group(3)),
                           "unreachable": int(m.group(4)), "failed": int(m.group(5))}
    return out


def listeners(name):
    return host(name).check_output("ss -ltnH 2>/dev/null | awk '{print $4}' | sort -u").split()


def is_dual(name):
    ls = listeners(name)
    return any(a in ls for a in ("[::]:80", "*:80"))


def upstream():
    return host(LB).check_output("grep -E '^\\s*server ' /etc/nginx/conf.d/app-upstream.conf")


def through_lb(family, n=12):
    lb = host(LB)
    target = addresses(lb)["ipv4" if family == 4 else "ipv6"][0]
    return [http_get(lb, url(target, 80)) for _ in range(n)]


# Trust follows the hop (docs/trust.md). The app hosts' nginx takes the
# client from X-Forwarded-For when the balancer's IPv4 address sends it
# (realip); dsr-app2's allows only the balancer (allow/deny on the
# connection, no realip there: the app reads the balancer's X-Real-IP); the
# balancer reaches dsr-app4's gunicorn directly, which trusts its
# X-Forwarded-Proto by IPv4 address. What each host proves: realip hosts the
# client, dsr-app2 the 200 (a 403 without the twin), dsr-app4 the scheme
# (its client comes from the balancer's header whatever gunicorn trusts).
CLIENT = "dsr-app6"
DIRECT = {"dsr-app4": 8000}
FAMILY = {4: "ipv4", 6: "ipv6"}


def client_view(family, n=18):
    """Requests through the balancer from CLIENT, a host that is not the
    balancer: (CLIENT's own address of that family, the answers)."""
    c = host(CLIENT)
    own = addresses(c)[FAMILY[family]][0]
    target = addresses(host(LB))[FAMILY[family]][0]
    return own, [http_get(c, url(target, 80)) for _ in range(n)]


def hop_view(name, family):
    """One request as the balancer sends it to app host `name`: from the
    balancer over `family`, to the port its server line names, with a client
    in X-Forwarded-For. -> (that client, the answer)."""
    client = "192.0.2.7" if family == 4 else "2001:db8::7"
    dst = addresses(host(name))[FAMILY[family]][0]
    return client, http_get(host(LB), url(dst, DIRECT.get(name, 80)),
                            headers={"X-Forwarded-For": client, "X-Real-IP": client, "X-Forwarded-Proto": "https"})


def assert_real_client_and_https(families):
    """The app sees the real client and https, per family: through the
    balancer from CLIENT, and host by host over the balancer's own hop."""
    for family in families:
        own, answers = client_view(family)
        assert all(a.status == 200 and a.json["client"] == own and a.json["scheme"] == "https"
                   for a in answers), (family, answers)
        for h in APPS:
            client, a = hop_view(h, family)
            assert a.status == 200, (h, family, a)
            assert a.json["client"] == client and a.json["scheme"] == "https", (h, family, a.json)


@pytest.fixture(scope="module", autouse=True)
def journal(tmp_path_factory):
    STATE["journal"] = str(tmp_path_factory.mktemp("journal"))
    os.chmod(STATE["journal"], 0o700)


def test_01_before_state():
    STATE["before"] = {h: fingerprint(h) for h in APPS + [LB]}
    for h in APPS:
        assert not is_dual(h)
    answers = through_lb(4)
    assert all(r.status == 200 and r.json["scheme"] == "https" for r in answers), answers
    # the rules that trust the balancer by its IPv4 address hold today
    assert_real_client_and_https([4])


def test_01a_audit_reports_the_fleet_read_only(tmp_path):
    reports = str(tmp_path / "reports")
    r = playbook("audit.yml", "-e", "dsr_report_dir=%s" % reports, "-e", "dsr_report_stamp=before")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert all(v["changed"] == 0 for v in recap(out).values()), recap(out)
    audit = json.load(open(os.path.join(reports, "audit-before.json")))
    rows = {h["host"]: h for h in audit["hosts"]}
    assert set(rows) == set(APPS + [LB])
    for h in APPS:
        assert rows[h]["state"] == "ipv4-only", rows[h]
        assert rows[h]["reach"] == {"4": True, "6": False}, rows[h]
    assert rows[LB]["role"] == "lb" and rows[LB]["nginx"]["missing_ipv6_ports"] == [80]
    squat = [u for u in rows["dsr-app3"]["unmanaged"] if u["listener"] == "[::]:8000"]
    assert squat and squat[0]["process"] == "sandbox-squatter.service", rows["dsr-app3"]["unmanaged"]
    # the app hosts' realip, dsr-app2's allow and dsr-app4's gunicorn trust
    # the balancer over IPv4 only: the hop to IPv6 would lose them
    for h in APPS:
        kind = "allow" if h == "dsr-app2" else "set_real_ip_from"
        rules = [r for r in rows[h]["trust"] if r["directive"] == kind]
        assert rules and rules[0]["ipv4"] and not rules[0]["ipv6"], rows[h]["trust"]
    assert [(r["ipv4"], r["ipv6"]) for r in rows["dsr-app4"]["trust"]
            if r["directive"] == "forwarded_allow_ips"] == [(True, False)], rows["dsr-app4"]["trust"]
    assert rows["dsr-app5"]["services"][0]["families"] == "ipv4-only"
    assert rows["dsr-app6"]["services"][0]["families"] == "loopback-ipv4"
    for ext in ("json", "md", "html", "txt"):
        path = os.path.join(reports, "audit-before." + ext)
        assert os.stat(path).st_mode & 0o777 == 0o600, path
    html = open(os.path.join(reports, "audit-before.html")).read()
    assert '<tr class="ipv4-only">' in html and "sandbox-squatter.service" in html
    assert {h: fingerprint(h) for h in APPS + [LB]} == STATE["before"]


def test_01b_check_diff_shows_the_plan_and_changes_nothing():
    r = playbook("rollout.yml", "--check", "--diff")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    # the plan: the gunicorn drop-in with the IPv6 bind, the nginx listen line, the upstream
    assert "99-dualstack-rollout.conf" in out and "[::]:8000" in out, out[-3000:]
    assert re.search(r"^\+\s*listen \[::\]:80", out, re.M), out[-3000:]
    assert {h: fingerprint(h) for h in APPS + [LB]} == STATE["before"]
    for h in APPS:
        assert not is_dual(h)


def test_01c_firewall_that_ipv6_would_bypass_stops_preflight():
    app4, lb = host("dsr-app4"), host(LB)
    lb4, lb6 = addresses(lb)["ipv4"][0], addresses(lb)["ipv6"][0]
    # IPv4: gunicorn's port only from the balancer (and loopback, for nginx); IPv6: no rules at all
    app4.check_output("iptables -A INPUT -i lo -j ACCEPT && "
                      "iptables -A INPUT -p tcp --dport 8000 -s %s/32 -j ACCEPT && "
                      "iptables -A INPUT -p tcp --dport 8000 -j DROP" % lb4)
    r = playbook("rollout.yml")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "Preflight failed; nothing was changed anywhere" in out
    assert "host dsr-app4: port 8000 (webapp.service) would answer on IPv6 to anyone" in out
    assert "-s %s/32" % lb4 in out and "dsr_exposure_accept: [8000]" in out
    assert {h: fingerprint(h) for h in APPS + [LB]} == STATE["before"]
    # the same rule for IPv6: the rest of the scenario runs with it in place
    app4.check_output("ip6tables -A INPUT -i lo -j ACCEPT && "
                      "ip6tables -A INPUT -p tcp --dport 8000 -s %s/128 -j ACCEPT && "
                      "ip6tables -A INPUT -p tcp --dport 8000 -j DROP" % lb6)


def test_01d_unknown_service_and_unreachable_balancer_stop_preflight(tmp_path):
    # a service name that is on no host: every app host says so, naming it and the variable
    r = playbook("rollout.yml", "-e", '{"gunicorn_dualstack__services": ["webapp", "nosuch"]}')
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "host dsr-app1: nosuch: named in gunicorn_dualstack__services, but no gunicorn service" in out, out[-3000:]
    assert "Preflight failed; nothing was changed anywhere" in out
    # the balancer unplugged (its inventory entry points at no container): named as unreachable
    extra = tmp_path / "unplugged.yml"
    extra.write_text("all:\n  children:\n    lb:\n      hosts:\n        dsr-lb:\n"
                     "          ansible_host: dsr-lb-unplugged\n")
    r = playbook("rollout.yml", "-i", str(extra))
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert re.search(r"dsr-lb\s+NO\s+unreachable", out), out[-3000:]
    assert "Preflight failed; nothing was changed anywhere" in out
    assert {h: fingerprint(h) for h in APPS + [LB]} == STATE["before"]


def test_02_rollout_stops_at_the_faulty_wave_and_restores_that_host():
    r = playbook("rollout.yml")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "host dsr-app3: migration failed" in out
    # wave 1 and the healthy host of wave 2 are dual-stack and in the balancer on IPv6
    for h in ("dsr-app1", "dsr-app2"):
        assert is_dual(h), h
        assert "[%s]:%d" % (addresses(host(h))["ipv6"][0], DIRECT.get(h, 80)) in upstream()
    # the faulty host is back exactly as before, serving IPv4, in the balancer on IPv4
    assert fingerprint("dsr-app3") == STATE["before"]["dsr-app3"]
    assert not is_dual("dsr-app3")
    v4 = addresses(host("dsr-app3"))["ipv4"][0]
    assert re.search(r"server %s:80 [^;]*;" % re.escape(v4), upstream())
    assert " down;" not in upstream()
    r3 = http_get(host(LB), url(v4, 80))
    assert r3.status == 200 and r3.json["scheme"] == "https"
    # later waves untouched
    for h in ("dsr-app4", "dsr-app5", "dsr-app6"):
        assert fingerprint(h) == STATE["before"][h]
        assert not host(h).file("/var/lib/dualstack-rollout/snapshot").exists
    # every request through the balancer still answered
    assert all(x.status == 200 for x in through_lb(4))
    # the journal names waves and results
    run = [d for d in os.listdir(STATE["journal"]) if os.path.isdir(os.path.join(STATE["journal"], d))]
    assert len(run) == 1
    STATE["run1"] = os.path.join(STATE["journal"], run[0])
    j3 = json.load(open(os.path.join(STATE["run1"], "dsr-app3.json")))
    # The squatter holds [::]:8000 v6only; the kernel still lets gunicorn's
    # dual socket bind beside it, and then hands IPv6 connections to the
    # squatter: only the real request from the peer catches that.
    assert j3["wave"] == 2 and j3["result"] == "failed" and j3["error"]
    j1 = json.load(open(os.path.join(STATE["run1"], "dsr-app1.json")))
    assert j1["wave"] == 1 and j1["result"] == "migrated"
    # dsr-app2's allow gained the balancer's IPv6 source in this run
    j2 = json.load(open(os.path.join(STATE["run1"], "dsr-app2.json")))
    assert j2["trust"]["ipv6_upstream"] and any(" allow " in r and "gains allow " in r
                                                for r in j2["trust"]["rules"]), j2["trust"]
    # "ADDR:PORT [v6only=N] OWNER": IPv6 sockets after, IPv4 only before, each with its owner
    assert any(x.startswith("[::]:8000 ") and x.endswith(" webapp.service") for x in j1["listeners_after"])
    assert j1["listeners_before"] and all(not x.startswith("[") for x in j1["listeners_before"])
    assert oct(os.stat(os.path.join(STATE["run1"], "dsr-app1.json")).st_mode & 0o777) == "0o600"


def test_03_rollback_of_a_never_migrated_host_changes_nothing():
    r = playbook("rollback.yml", "--limit", "dsr-app4")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "never migrated" in out
    assert recap(out)["dsr-app4"]["changed"] == 0
    assert fingerprint("dsr-app4") == STATE["before"]["dsr-app4"]


def test_04_rollout_completes_once_the_fault_is_gone():
    host("dsr-app3").check_output("systemctl stop sandbox-squatter.service")
    r = playbook("rollout.yml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    for h in APPS:
        assert is_dual(h), h
        assert "[%s]:%d" % (addresses(host(h))["ipv6"][0], DIRECT.get(h, 80)) in upstream(), upstream()
    for family in (4, 6):
        answers = through_lb(family)
        assert all(x.status == 200 and x.json["scheme"] == "https" for x in answers), (family, answers)
    # Trust followed the hop: each rule that named the balancer's IPv4
    # address names its IPv6 source too, in the file it was in, and the app
    # sees the real client and https over both families.
    source = host(LB).check_output("ip -6 route get %s" % addresses(host("dsr-app1"))["ipv6"][0]).split(" src ")[1].split()[0]
    for h in APPS:
        site = host(h).file("/etc/nginx/sites-available/sandbox-app").content_string
        if h != "dsr-app2":
            assert "    set_real_ip_from %s;\n" % source in site, (h, site)
    assert "        allow %s;\n        deny all;" % source in host("dsr-app2").file(
        "/etc/nginx/sites-available/sandbox-app").content_string
    dropin = host("dsr-app4").file("/etc/systemd/system/webapp.service.d/99-dualstack-rollout.conf").content_string
    assert "--forwarded-allow-ips" in dropin and source in dropin, dropin
    assert_real_client_and_https([4, 6])
    # the journal of this run names the twins of the hosts it migrated (wave 3)
    run = sorted(d for d in os.listdir(STATE["journal"]) if os.path.isdir(os.path.join(STATE["journal"], d)))[-1]
    j4, j5 = (json.load(open(os.path.join(STATE["journal"], run, h + ".json"))) for h in ("dsr-app4", "dsr-app5"))
    assert j4["trust"]["ipv6_upstream"] and any(r.startswith("webapp.service forwarded_allow_ips")
                                                and r.endswith("gains %s" % source) for r in j4["trust"]["rules"]), j4
    assert any("set_real_ip_from" in r and r.endswith("gains set_real_ip_from %s;" % source)
               for r in j5["trust"]["rules"]), j5["trust"]
    # the balancer itself listens on both families
    assert "[::]:80" in listeners(LB)
    # edited files keep their own modes (copy's mode=preserve would make them 0600)
    assert host(LB).file("/etc/nginx/conf.d/app-upstream.conf").mode == 0o644
    assert host("dsr-app1").file("/etc/nginx/sites-available/sandbox-app").mode == 0o644


def test_05_second_rollout_changes_nothing():
    r = playbook("rollout.yml")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    changed = {h: v["changed"] for h, v in recap(out).items() if h != "localhost"}
    assert set(changed) == set(APPS + [LB])
    assert all(v == 0 for v in changed.values()), changed


def test_06_rollback_restores_every_byte():
    r = playbook("rollback.yml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    for h in APPS + [LB]:
        assert fingerprint(h) == STATE["before"][h], h
    for h in APPS:
        assert not is_dual(h), h
    assert all(x.status == 200 and x.json["scheme"] == "https" for x in through_lb(4))
    assert_real_client_and_https([4])


def test_07_second_rollback_changes_nothing():
    r = playbook("rollback.yml")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    changed = {h: v["changed"] for h, v in recap(out).items() if h != "localhost"}
    assert all(v == 0 for v in changed.values()), changed
