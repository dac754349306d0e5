"""Trust twins composed with the other plans, as preflight uses them:
dsr_host_trust (the twins added to the text the listen plan leaves) and
dsr_gunicorn_trust (the balancer's IPv6 source appended to the value a bind
plan writes). The files are checked by nginx's grammar again and the
gunicorn command lines by gunicorn's own configuration code."""
import base64
import shlex

import pytest

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import bind_plan
from dsr_gunicorn import gunicorn_changes, trust_amend
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_nginx import nginx_plan
from dsr_trust import host_trust, trust_plan

ADDRS = ("2: eth0    inet 10.20.0.2/24 brd 10.20.0.255 scope global eth0\\       valid_lft forever preferred_lft forever\n"
         "2: eth0    inet6 fd42:d5a:30::2/64 scope global \\       valid_lft forever preferred_lft forever\n")
LB = {"name": "lb1", "route": "fd42:d5a:30::11 from :: dev eth0 proto kernel src fd42:d5a:30::2 metric 256",
      "addresses": ADDRS}
SITE = "/etc/nginx/sites-enabled/app"
MAIN = "/etc/nginx/nginx.conf"
NGINX_CONF = "events {}\nhttp {\n    set_real_ip_from 10.20.0.2;\n    real_ip_header X-Forwarded-For;\n" \
             "    include /etc/nginx/sites-enabled/*;\n}\n"
SITE_CONF = "server {\n    listen 80;\n    location / {\n        allow 10.20.0.2;\n        deny all;\n" \
            "        proxy_pass http://127.0.0.1:8000;\n    }\n}\n"


def read(files):
    """dsr_read_files' shape: what preflight hands both plans."""
    return [{"path": p, "real_path": p, "content": base64.b64encode(t.encode()).decode()} for p, t in files.items()]


def test_twins_go_into_the_text_the_listen_plan_leaves():
    files = read({MAIN: NGINX_CONF, SITE: SITE_CONF})
    listen = nginx_plan(files, {}, {"host": "app1"})
    assert listen["files"][SITE]["changed"] and not listen["files"][MAIN]["changed"]
    out = host_trust(files, listen, LB, [], {"host": "app1"})
    site, main = out["nginx"]["files"][SITE], out["nginx"]["files"][MAIN]
    # both edits in one text: the listen twin and the allow twin, and the
    # realip twin in the file the listen plan did not touch
    assert site["content"] == ("server {\n    listen 80;\n    listen [::]:80;\n    location / {\n"
                               "        allow 10.20.0.2;\n        allow fd42:d5a:30::2;\n        deny all;\n"
                               "        proxy_pass http://127.0.0.1:8000;\n    }\n}\n")
    assert site["added"] == ["listen [::]:80;", "allow fd42:d5a:30::2;"] and site["changed"]
    assert main["changed"] and "    set_real_ip_from fd42:d5a:30::2;\n" in main["content"]
    assert out["nginx"]["changed"] and out["trust"]["ipv6_upstream_ok"]
    # the listen plan's other fields are kept for verification
    assert out["nginx"]["listens"] == listen["listens"]


def test_a_second_run_on_the_written_files_changes_nothing():
    files = read({MAIN: NGINX_CONF, SITE: SITE_CONF})
    first = host_trust(files, nginx_plan(files, {}, {}), LB, [], {})["nginx"]["files"]
    again = read(dict((p, f["content"]) for p, f in first.items()))
    out = host_trust(again, nginx_plan(again, {}, {}), LB, [], {})
    assert not out["nginx"]["changed"] and not any(f["changed"] for f in out["nginx"]["files"].values())
    assert [r["action"] for r in out["trust"]["rules"] if r["balancer"]] == ["present", "present"]


def test_no_route_keeps_the_host_on_ipv4_and_says_where():
    files = read({MAIN: NGINX_CONF, SITE: SITE_CONF})
    out = host_trust(files, nginx_plan(files, {}, {}), dict(LB, route=""), [], {"host": "app1"})
    assert not out["trust"]["ipv6_upstream_ok"]
    assert any(MAIN in p and "set_real_ip_from" in p for p in out["trust"]["problems"])


def svc_of(args, fwd, version="19.9.0"):
    argv = ["/usr/bin/gunicorn"] + args + ["app:app"]
    return {"unit": "web.service", "manager": "systemd", "argv": argv, "exec_prefix": "",
            "binds": [args[args.index("--bind") + 1]], "bind_source": "cli", "reuse_port": False,
            "reuse_port_source": "default", "forwarded_allow_ips": fwd,
            "forwarded_allow_ips_source": "cli" if "--forwarded-allow-ips" in args else "default",
            "gunicorn_cmd_args": None, "gunicorn_cmd_args_file": None, "config_file": None, "version": version,
            "version_known": True, "working_directory": "/srv/web"}


def item_of(svc):
    plan = bind_plan(svc["binds"], bindv6only=0, gunicorn_version=svc["version"], strategy="dual",
                     forwarded_allow_ips=svc["forwarded_allow_ips"], interfaces={})
    changes = gunicorn_changes(svc, plan)
    return {"service": svc, "plan": plan, "change": changes[0], "changes": changes, "problems": []}


def exec_args(item):
    line = [ln for ln in item["change"]["content"].splitlines() if ln.startswith("ExecStart=/")][0]
    return shlex.split(line.split("=", 1)[1])[1:]


@pytest.mark.parametrize("version,args,fwd", [
    # gunicorn directly behind the balancer, on every address
    ("19.9.0", ["--bind", "0.0.0.0:8000", "--forwarded-allow-ips", "10.20.0.2"], "10.20.0.2"),
    # the bind plan changes forwarded_allow_ips itself (loopback gains ::1):
    # the balancer's source is appended to that value, not to the old one
    ("19.9.0", ["--bind", "127.0.0.1:8000", "--forwarded-allow-ips", "127.0.0.1,10.20.0.2"], "127.0.0.1,10.20.0.2"),
    ("27.0.1", ["--bind", "0.0.0.0:8000", "--forwarded-allow-ips", "10.20.0.0/24"], "10.20.0.0/24"),
])
def test_gunicorn_trusts_the_balancers_ipv6_source_and_binds_as_planned(version, args, fwd, monkeypatch):
    import test_gunicorn_oracle as oracle
    svc = svc_of(args, fwd, version)
    item = item_of(svc)
    trusted = trust_plan({}, LB, [svc])["gunicorn"]
    (out,) = trust_amend([item], trusted, "app1")
    assert out["plan"]["changed"] and out["plan"]["binds"] == item["plan"]["binds"]
    for entry in (item["plan"]["forwarded_allow_ips"] or fwd).split(","):
        assert entry in out["plan"]["forwarded_allow_ips"].split(",")
    peers = ("10.20.0.2", "fd42:d5a:30::2", "::1", "192.0.2.7")
    monkeypatch.setattr(oracle, "PEERS", peers)  # the harness's peer list, not the code under test
    before, after = oracle.gunicorn_read(version, [{"args": args + ["app:app"]}, {"args": exec_args(out)}])
    assert before["ok"] and after["ok"], (before, after)
    assert after["bind"] == out["plan"]["binds"]
    assert after["trusted"]["fd42:d5a:30::2"] and after["trusted"]["10.20.0.2"]
    assert not before["trusted"]["fd42:d5a:30::2"] and not after["trusted"]["192.0.2.7"]


def test_services_the_trust_plan_does_not_name_are_left_as_planned():
    item = item_of(svc_of(["--bind", "0.0.0.0:8000"], None))
    assert trust_amend([item], [], "app1") == [item]


def test_a_host_without_ipv6_yet_names_the_reason():
    files = read({MAIN: NGINX_CONF, SITE: SITE_CONF})
    lb = dict(LB, route=None, why="host app1 has no global IPv6 address for the balancer to reach yet")
    out = host_trust(files, nginx_plan(files, {}, {}), lb, [], {"host": "app1"})
    assert not out["trust"]["ipv6_upstream_ok"]
    assert all("no global IPv6 address for the balancer to reach yet" in p for p in out["trust"]["problems"])


def test_the_lines_preflight_and_the_journal_show():
    from dsr_trust import gunicorn_line, rule_line
    files = read({MAIN: NGINX_CONF, SITE: SITE_CONF})
    out = host_trust(files, nginx_plan(files, {}, {}), LB, [], {})
    lines = [rule_line(r) for r in out["trust"]["rules"] if r["balancer"]]
    assert lines == ["%s:3 set_real_ip_from 10.20.0.2: gains set_real_ip_from fd42:d5a:30::2;" % MAIN,
                     "%s:4 allow 10.20.0.2: gains allow fd42:d5a:30::2;" % SITE]
    g = trust_plan({}, LB, [svc_of(["--bind", "0.0.0.0:8000", "--forwarded-allow-ips", "10.20.0.2"],
                                   "10.20.0.2")])["gunicorn"][0]
    assert gunicorn_line(g) == "web.service forwarded_allow_ips 10.20.0.2: gains fd42:d5a:30::2"


def test_the_audit_lists_gunicorn_trust_per_family():
    from dsr_trust import trust_rules
    before = svc_of(["--bind", "0.0.0.0:8000", "--forwarded-allow-ips", "10.20.0.2"], "10.20.0.2")
    after = dict(before, forwarded_allow_ips="10.20.0.2,::ffff:10.20.0.2,fd42:d5a:30::2")
    network_old = dict(before, forwarded_allow_ips="10.20.0.0/24")  # 19.9 compares strings: never matched
    network_new = dict(network_old, version="27.0.1")
    other = dict(before, unit="other.service", forwarded_allow_ips="192.0.2.1")
    rows = trust_rules({}, ["10.20.0.2"], ["fd42:d5a:30::2"], services=[before, after, network_old, network_new, other])
    got = [(r["value"], r["ipv4"], r["ipv6"], r["both"]) for r in rows]
    assert got == [("10.20.0.2", True, False, False),
                   ("10.20.0.2,::ffff:10.20.0.2,fd42:d5a:30::2", True, True, True),
                   ("10.20.0.0/24", True, False, False)]
    assert all(r["directive"] == "forwarded_allow_ips" and r["file"] == "web.service" for r in rows)
