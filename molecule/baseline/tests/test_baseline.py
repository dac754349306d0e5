"""Baseline ("before") state of a legacy host, checked with real traffic.

The fixture must produce what the fleet has before a migration: systemd up,
the Flask app answering through nginx and directly over IPv4, and nothing at
all answering over IPv6, although the network and the host have IPv6.
"""
from conftest import CURL_CONNECT_REFUSED, addresses, http_get, url

APP_PORT = 8000
NGINX_PORT = 80


def test_systemd_is_running(app_host):
    state = app_host.run("systemctl is-system-running").stdout.strip()
    failed = app_host.run("systemctl --failed --no-legend --plain").stdout
    assert state == "running", "systemd is {!r}; failed units:\n{}".format(state, failed)


def test_host_has_both_families(app_host):
    addrs = addresses(app_host)
    assert addrs["ipv4"], "no global IPv4 address on eth0"
    assert addrs["ipv6"], "no global IPv6 address on eth0: the network is not dual-stack"


def test_listeners_are_ipv4_only(app_host):
    lines = app_host.check_output("ss -ltnH").splitlines()
    locals_ = sorted(line.split()[3] for line in lines)
    assert "0.0.0.0:%d" % NGINX_PORT in locals_
    assert "0.0.0.0:%d" % APP_PORT in locals_
    v6 = [a for a in locals_ if a.startswith("[") or a.startswith("*")]
    assert v6 == [], "IPv6 listeners before migration: %s" % v6


def test_app_answers_locally_over_ipv4_through_nginx(app_host):
    r = http_get(app_host, url("127.0.0.1", NGINX_PORT))
    assert r.status == 200, r
    # nginx sets X-Forwarded-Proto: https and gunicorn trusts 127.0.0.1.
    assert r.json["scheme"] == "https"
    assert r.json["remote_addr"] == "127.0.0.1"


def test_app_answers_locally_over_ipv4_direct(app_host):
    r = http_get(app_host, url("127.0.0.1", APP_PORT))
    assert r.status == 200, r
    assert r.json["scheme"] == "http"
    assert r.json["service"] == "webapp"


def test_nothing_answers_locally_over_ipv6(app_host):
    for port in (NGINX_PORT, APP_PORT):
        r = http_get(app_host, url("::1", port))
        assert r.curl_rc == CURL_CONNECT_REFUSED, "[::1]:%d answered: %s" % (port, r)


def test_peer_reaches_host_over_ipv4(app_host, peer):
    target = addresses(app_host)["ipv4"][0]
    peer_v4 = addresses(peer)["ipv4"][0]
    through_nginx = http_get(peer, url(target, NGINX_PORT))
    assert through_nginx.status == 200, through_nginx
    assert through_nginx.json["scheme"] == "https"
    assert through_nginx.json["host"] == app_host.check_output("hostname")
    direct = http_get(peer, url(target, APP_PORT))
    assert direct.status == 200, direct
    assert direct.json["remote_addr"] == peer_v4


def test_peer_gets_nothing_over_ipv6(app_host, peer):
    target = addresses(app_host)["ipv6"][0]
    # "Connection refused" (not a time-out) proves the path exists: the
    # host's IPv6 stack got the SYN and no socket was listening for it.
    for port in (NGINX_PORT, APP_PORT):
        r = http_get(peer, url(target, port))
        assert r.curl_rc == CURL_CONNECT_REFUSED, "[%s]:%d answered: %s" % (target, port, r)
