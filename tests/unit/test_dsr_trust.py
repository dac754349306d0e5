"""dsr_trust: the balancer's route source, counterparts, the plan's edge cases
and the audit view (the corpus in tests/corpus/trust/ runs the real-world
shapes through nginx -t and gunicorn's own trust check)."""
import base64
import json

import pytest

import dsr_trust as t
from dsr_trust import TrustError, route_get, route_source, trust_plan, trust_rules

ADDRS = ("2: eth0    inet 10.20.0.2/24 brd 10.20.0.255 scope global eth0\\       valid_lft forever preferred_lft forever\n"
         "2: eth0    inet6 fd42:d5a:30::2/64 scope global \\       valid_lft forever preferred_lft forever\n")
ROUTE = "fd42:d5a:30::11 from :: dev eth0 proto kernel src fd42:d5a:30::2 metric 256 pref medium"
LB = {"name": "lb1", "route": ROUTE, "addresses": ADDRS}
SITE = "/etc/nginx/sites-enabled/app"


def plan(text, balancer=LB, services=None):
    return trust_plan({SITE: text}, balancer, services)


def new(p):
    return p["files"][SITE]["content"]


# -- ip route get, every form ------------------------------------------------------

@pytest.mark.parametrize("text,src,via", [
    (ROUTE, "fd42:d5a:30::2", None),
    # iproute2 6.x through a router
    ("2001:db8:20::11 from :: via fe80::1 dev eth0 proto ra src 2001:db8:10::5 metric 1024 hoplimit 64 pref medium",
     "2001:db8:10::5", "fe80::1"),
    # CentOS 7 (iproute2 3.10): double spaces and a `cache` line
    ("fd42:d5a:30::11 from :: dev eth0  src fd42:d5a:30::2  metric 0 \n    cache \n", "fd42:d5a:30::2", None),
    ("2001:db8:20::11 from :: via 2001:db8:10::1 dev eth1  src 2001:db8:10::5  metric 0 \n    cache  mtu 1500 hoplimit 64",
     "2001:db8:10::5", "2001:db8:10::1"),
    # Debian 9 (iproute2 4.9)
    ("fd42:d5a:30::11 from :: dev eth0 src fd42:d5a:30::2 metric 256 pref medium", "fd42:d5a:30::2", None),
    # uncompressed in, compressed out (what gunicorn 19.9 compares as a string)
    ("fd42:d5a:30::11 from :: dev eth0 src FD42:0D5A:0030:0000:0000:0000:0000:0002 metric 256", "fd42:d5a:30::2", None),
    # ip -j
    (json.dumps([{"dst": "fd42:d5a:30::11", "from": "::", "gateway": "fd42:d5a:30::1", "dev": "eth0",
                  "protocol": "kernel", "prefsrc": "fd42:d5a:30::2", "metric": 256, "flags": [], "pref": "medium"}]),
     "fd42:d5a:30::2", "fd42:d5a:30::1"),
    # IPv4 forms (route4)
    ("10.20.0.11 dev eth0 src 10.20.0.2 uid 0 \n    cache ", "10.20.0.2", None),
    ("10.20.9.11 via 10.20.0.1 dev eth0 src 10.20.0.2 uid 1000 \n    cache ", "10.20.0.2", "10.20.0.1"),
])
def test_route_forms(text, src, via):
    r = route_get(text)
    assert (r["src"], r["via"]) == (src, via)
    assert route_source(text) == src


@pytest.mark.parametrize("text,why", [
    ("", "printed nothing"),
    ("RTNETLINK answers: Network is unreachable", "failed"),
    ("unreachable fd42:d5a:30::11 from :: dev lo proto kernel src ::1 metric 4294967295 error -101 pref medium",
     "no usable route"),
    ("fd42:d5a:30::11 from :: dev lo  table unspec  proto kernel  src ::1  metric 4294967295  error -101", "no usable"),
    ("local fd42:d5a:30::2 dev lo table local proto kernel src fd42:d5a:30::2 metric 0 pref medium", "own address"),
    ("fd42:d5a:30::11 from :: dev eth0 metric 1024 pref medium", "no source"),
    ("fe80::11 from :: dev eth0 proto kernel src fe80::2 metric 256 pref medium", "link-local"),
])
def test_route_without_a_usable_source_is_never_guessed(text, why):
    with pytest.raises(TrustError) as e:
        route_source(text)
    assert why in str(e.value)


def test_filters_are_registered():
    assert set(t.FilterModule().filters()) == {"dsr_host_trust", "dsr_trust_rule_line", "dsr_trust_gunicorn_line",
                                               "dsr_trust_rules"}


# -- the balancer ------------------------------------------------------------------

def test_balancer_from_json_addresses_and_route4():
    links = [{"ifindex": 2, "ifname": "eth0", "addr_info": [
        {"family": "inet", "local": "10.20.0.2", "prefixlen": 24, "scope": "global"},
        {"family": "inet", "local": "172.17.0.1", "prefixlen": 16, "scope": "global"},
        {"family": "inet6", "local": "fd42:d5a:30::2", "prefixlen": 56, "scope": "global"}]}]
    b = t._balancers({"route": ROUTE, "addresses": json.dumps(links),
                      "route4": "10.20.0.11 dev eth0 src 10.20.0.2 uid 0"})[0]
    assert b["ipv4"] == ["10.20.0.2"]  # route4 (and `ipv4`) say which address; no guess from every interface
    assert (b["ipv6"], b["prefix"]) == ("fd42:d5a:30::2", "fd42:d5a:30::/56")
    b = t._balancers({"route": ROUTE, "addresses": json.dumps(links)})[0]
    assert b["ipv4"] == ["10.20.0.2", "172.17.0.1"]


def test_balancer_nat_address_given_as_ipv4():
    p = plan("server { listen 80; set_real_ip_from 198.51.100.7; }\n",
             {"route": ROUTE, "addresses": ADDRS, "ipv4": ["198.51.100.7"]})
    assert p["files"][SITE]["added"] == ["set_real_ip_from fd42:d5a:30::2;"]


def test_an_ipv4_route_in_place_of_the_ipv6_one_is_refused():
    p = plan("server { listen 80; set_real_ip_from 10.20.0.2; }\n",
             {"route": "10.20.0.11 dev eth0 src 10.20.0.2 uid 0", "addresses": ADDRS})
    assert not p["ipv6_upstream_ok"]
    assert "ip -6 route get" in p["problems"][0]


# -- nginx edge cases ------------------------------------------------------------

def test_ipv4_mapped_rules_count_as_the_ipv4_they_map():
    p = plan("server { listen 80;\n    set_real_ip_from ::ffff:10.20.0.2;\n}\n")
    assert p["files"][SITE]["added"] == ["set_real_ip_from fd42:d5a:30::2;"]


def test_stream_server_access_list():
    p = plan("stream {\n  server {\n    listen 5432;\n    allow 10.20.0.2;\n    deny all;\n"
             "    proxy_pass 127.0.0.1:5433;\n  }\n}\n")
    assert p["files"][SITE]["added"] == ["allow fd42:d5a:30::2;"]
    assert "    allow 10.20.0.2;\n    allow fd42:d5a:30::2;\n" in new(p)


def test_geo_include_inside_the_block():
    files = {"/etc/nginx/nginx.conf": "events {}\nhttp {\n  geo $lb { default 0; include /etc/nginx/geo-lb.conf; }\n}\n",
             "/etc/nginx/geo-lb.conf": "10.20.0.2 1;\n"}
    p = trust_plan(files, LB)
    assert p["files"]["/etc/nginx/geo-lb.conf"]["content"] == "10.20.0.2 1;\nfd42:d5a:30::2 1;\n"


def test_geo_more_specific_ipv6_entry_beats_the_twin():
    p = plan("geo $internal {\n  default 0;\n  10.0.0.0/8 1;\n  fd42:d5a:30::2 0;\n}\n")
    assert p["files"][SITE]["added"] == ["fd42:d5a:30::/64 1;"]
    assert not p["ipv6_upstream_ok"]
    assert "value '1' but its IPv6 source fd42:d5a:30::2 the value '0'" in p["problems"][0]


def test_location_list_replaces_the_inherited_one():
    # the server's list names the balancer; the location's own list does not and
    # denies it in both families: nothing to twin there, and no problem
    p = plan("server { listen 80;\n  allow 10.20.0.2;\n  deny all;\n  location /x {\n    deny all;\n  }\n}\n")
    assert p["files"][SITE]["added"] == ["allow fd42:d5a:30::2;"]
    assert p["ipv6_upstream_ok"]


def test_hostname_beside_the_balancers_address_is_a_note():
    p = plan("server { listen 80;\n  set_real_ip_from 10.20.0.2;\n  set_real_ip_from lb1.example.net;\n}\n")
    assert p["ipv6_upstream_ok"]
    assert any("is a name" in n for n in p["notes"])


def test_allow_context_reports_realip():
    p = plan("server { listen 80;\n  set_real_ip_from 10.20.0.2;\n  real_ip_header X-Forwarded-For;\n"
             "  location /a {\n    allow 10.20.0.2;\n    deny all;\n  }\n}\n"
             "server { listen 81;\n  location /b {\n    allow 10.20.0.2;\n    deny all;\n  }\n}\n")
    ctx = [r["context"] for r in p["rules"] if r["directive"] == "allow"]
    assert ctx[0]["real_ip_header"] == "X-Forwarded-For" and ctx[0]["realip_trusts_balancer"]
    assert ctx[1]["real_ip_header"] is None and not ctx[1]["realip_trusts_balancer"]
    realip_default = plan("server { listen 80;\n  set_real_ip_from 10.20.0.2;\n  allow 10.20.0.2;\n}\n")
    assert realip_default["rules"][1]["context"]["real_ip_header"] == "X-Real-IP"  # nginx's default header


def test_files_list_input_and_not_utf8():
    text = "server { listen 80;\n  # caf\xe9\n  set_real_ip_from 10.20.0.2;\n}\n".encode("latin-1")
    files = [{"path": SITE, "real_path": "/etc/nginx/sites-available/app", "exists": True,
              "content": base64.b64encode(text).decode()},
             {"path": "/etc/nginx/missing.conf", "exists": False}]
    p = trust_plan(files, LB)
    assert not p["files"]["/etc/nginx/sites-available/app"]["changed"]
    assert "not UTF-8" in p["problems"][0] and "set_real_ip_from fd42:d5a:30::2;" in p["problems"][0]


def test_unreadable_route4_is_a_problem_not_a_guess():
    p = plan("server { listen 80;\n  set_real_ip_from 10.20.0.2;\n}\n",
             dict(LB, route4="RTNETLINK answers: Network is unreachable"))
    assert not p["ipv6_upstream_ok"] and "IPv4 source toward this host is unknown" in p["problems"][0]
    with pytest.raises(TrustError):
        route_source("[{not json")


def test_map_entries_are_not_rules():
    p = plan("map $x $y {\n  allow 10.20.0.2;\n}\nserver { listen 80; }\n")
    assert p["rules"] == [] and not p["changed"]


def test_balancer_without_ipv4_addresses_is_a_problem():
    p = plan("server { listen 80;\n  set_real_ip_from 10.20.0.2;\n}\n", {"route": ROUTE})
    assert not p["ipv6_upstream_ok"] and "IPv4 addresses are unknown" in p["problems"][0]


def test_unreadable_file_is_a_problem():
    p = plan("server { listen 80;\n  allow 10.20.0.2\n}\n")
    assert not p["ipv6_upstream_ok"] and "grammar" in p["problems"][0]


# -- gunicorn ------------------------------------------------------------------------

def svc(value, version, **kw):
    return dict({"unit": "app.service", "version": version, "forwarded_allow_ips": value,
                 "forwarded_allow_ips_source": "cli"}, **kw)


@pytest.mark.parametrize("value,version,expected", [
    ("10.20.0.2", "19.9.0", "10.20.0.2,fd42:d5a:30::2"),
    (["127.0.0.1", "10.20.0.2"], "27.0.1", "127.0.0.1,10.20.0.2,fd42:d5a:30::2"),  # a config file's list
    ("10.20.0.0/24", "24.1.0", "10.20.0.0/24,fd42:d5a:30::/64"),
    ("10.20.0.0/24", "24.0.0", None),  # exact strings before 24.1: the network never matched
    ("10.20.0.0/24,fd42:d5a:30::/48", "27.0.1", None),  # covered already
    ("10.20.0.2,fd42:d5a:30::2", "19.9.0", None),
    ("*", "27.0.1", None),
    (None, "27.0.1", None),  # 127.0.0.1,::1 does not name the balancer
    ("lb1.example.net", "19.9.0", None),  # a name never matched a peer
])
def test_gunicorn_values(value, version, expected):
    p = trust_plan({}, LB, [svc(value, version)])
    assert [g["value"] for g in p["gunicorn"]] == ([expected] if expected else [])
    assert p["ipv6_upstream_ok"]


def test_gunicorn_item_fields():
    p = trust_plan({}, LB, [svc(None, "19.9.0"), svc("127.0.0.1,10.20.0.2", "19.9.0", unit="b.service")])
    assert p["gunicorn"] == [{"unit": "b.service", "value": "127.0.0.1,10.20.0.2,fd42:d5a:30::2",
                              "before": "127.0.0.1,10.20.0.2", "add": ["fd42:d5a:30::2"], "source": "cli"}]


def test_gunicorn_unknown_version_adds_single_addresses_only():
    p = trust_plan({}, LB, [svc("10.20.0.2", "27.0.1", version_known=False)])
    assert p["gunicorn"][0]["value"] == "10.20.0.2,fd42:d5a:30::2"
    p = trust_plan({}, LB, [svc("10.20.0.0/24", "27.0.1", version_known=False)])
    assert p["gunicorn"] == [] and "exact addresses" in p["notes"][0]


def test_gunicorn_without_ipv6_route_is_a_problem():
    p = trust_plan({}, {"route": "", "ipv4": ["10.20.0.2"]}, [svc("10.20.0.2", "19.9.0")])
    assert p["gunicorn"] == [] and not p["ipv6_upstream_ok"]
    assert "service app.service" in p["problems"][0]


# -- the audit -------------------------------------------------------------------------

def test_trust_rules_before_and_after():
    text = ("server { listen 80;\n  set_real_ip_from 10.20.0.2;\n  set_real_ip_from 203.0.113.0/24;\n"
            "  location /a {\n    allow 10.20.0.0/16;\n    deny all;\n  }\n}\n")
    before = trust_rules({SITE: text}, ["10.20.0.2"], ["fd42:d5a:30::2"])
    assert [(r["line"], r["directive"], r["value"], r["ipv4"], r["ipv6"], r["both"]) for r in before] == [
        (2, "set_real_ip_from", "10.20.0.2", True, False, False),
        (3, "set_real_ip_from", "203.0.113.0/24", False, False, False),
        (5, "allow", "10.20.0.0/16", True, False, False),
        (6, "deny", "all", True, True, True),
    ]
    assert before[0]["context"]["realip_trusts_balancer"]
    after_text = plan(text)["files"][SITE]["content"]
    after = trust_rules({SITE: after_text}, ["10.20.0.2"], ["fd42:d5a:30::2"])
    assert [(r["value"], r["both"]) for r in after if r["directive"] != "deny"] == [
        ("10.20.0.2", True), ("fd42:d5a:30::2", True), ("203.0.113.0/24", False),
        ("10.20.0.0/16", True), ("fd42:d5a:30::/64", True)]


# -- gunicorn itself, serving requests from the balancer --------------------------------

SERVE = r'''
import http.client, json, os, subprocess, sys, time
job = json.load(sys.stdin)
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
for a in ("10.20.0.2", "10.20.0.11", "fd42:d5a:30::2", "fd42:d5a:30::11"):
    subprocess.run(["ip", "addr", "add", a, "dev", "lo"] + (["nodad"] if ":" in a else []), check=True)
out = {}
for name, value in job["values"].items():
    g = subprocess.Popen([sys.executable, "-m", "gunicorn.app.wsgiapp", "-b", "10.20.0.11:8000",
                          "-b", "[fd42:d5a:30::11]:8000", "--forwarded-allow-ips", value, "app:app"],
                         cwd=job["dir"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for src, dst in (("10.20.0.2", "10.20.0.11"), ("fd42:d5a:30::2", "fd42:d5a:30::11")):
            for _ in range(100):
                try:
                    c = http.client.HTTPConnection(dst, 8000, timeout=5, source_address=(src, 0))
                    c.request("GET", "/", headers={"X-Forwarded-Proto": "https"})
                    break
                except OSError:
                    time.sleep(0.1)
            out["%s from %s" % (name, src)] = c.getresponse().read().decode()
    finally:
        g.terminate()
        g.wait()
print(json.dumps(out))
'''

APP = "def app(environ, start_response):\n" \
      "    start_response('200 OK', [('Content-Type', 'text/plain')])\n" \
      "    return [environ['wsgi.url_scheme'].encode()]\n"


@pytest.mark.parametrize("version,current", [("19.9.0", "10.20.0.2"), ("27.0.1", "10.20.0.0/24")])
def test_gunicorn_sees_https_from_the_balancers_ipv6_source(version, current, tmp_path):
    import subprocess
    import sys
    from test_gunicorn_services_oracle import oracle_paths
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --net is not permitted here")
    value = trust_plan({}, LB, [svc(current, version)])["gunicorn"][0]["value"]
    (tmp_path / "app.py").write_text(APP)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": ":".join(oracle_paths(version))}
    r = subprocess.run(["unshare", "--net", sys.executable, "-c", SERVE], capture_output=True, text=True, env=env,
                       input=json.dumps({"dir": str(tmp_path), "values": {"before": current, "after": value}}),
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "before from 10.20.0.2": "https", "before from fd42:d5a:30::2": "http",  # the issue: scheme lost over IPv6
        "after from 10.20.0.2": "https", "after from fd42:d5a:30::2": "https"}
