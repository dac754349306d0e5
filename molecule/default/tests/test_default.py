"""After the single-host migration: real listeners and real traffic.

Every app host must answer through nginx over IPv4 and IPv6, from itself and
from the peer, with the app still seeing scheme https; gunicorn must listen
with the v6only the plan promised; a loopback-bound gunicorn must stay
unreachable from the peer on both families; and the kernel settings must be
persisted in the role's own sysctl.d file.
"""
import json

import pytest

from conftest import CURL_CONNECT_REFUSED, addresses, http_get, url

NGINX = 80
APP = 8000
SYSCTL_FILE = "/etc/sysctl.d/60-dualstack-rollout.conf"


def hostname(host):
    return host.backend.get_hostname()


def listeners(host):
    out = host.check_output("ss -ltnHe 2>/dev/null")
    found = {}
    for line in out.splitlines():
        f = line.split()
        v6only = next((x.split(":")[1] for x in f if x.startswith("v6only:")), None)
        found[f[3]] = v6only
    return found


def test_ipv6_enabled_and_persisted(app_host):
    assert app_host.file(SYSCTL_FILE).contains("net.ipv6.conf.all.disable_ipv6 = 0")
    assert app_host.sysctl("net.ipv6.conf.lo.disable_ipv6") == 0
    assert app_host.sysctl("net.ipv6.conf.eth0.disable_ipv6") == 0


def test_gunicorn_listens_dual_stack_as_planned(app_host):
    ls = listeners(app_host)
    name = hostname(app_host)
    if name == "dsr-loopback":
        assert "127.0.0.1:%d" % APP in ls and "[::1]:%d" % APP in ls
        for wildcard in ("0.0.0.0", "*", "[::]"):
            assert "%s:%d" % (wildcard, APP) not in ls
    elif name == "dsr-specific":
        v4 = addresses(app_host)["ipv4"][0]
        v6 = addresses(app_host)["ipv6"][0]
        assert "%s:%d" % (v4, APP) in ls and "[%s]:%d" % (v6, APP) in ls
        assert "[::]:%d" % APP not in ls and "*:%d" % APP not in ls
    elif name == "dsr-v6only":
        # bindv6only=1: two sockets, the IPv6 one v6only
        assert "0.0.0.0:%d" % APP in ls and ls.get("[::]:%d" % APP) == "1"
    else:
        # separate strategy under bindv6only=0: IPv4 socket + dual [::] with reuse_port
        assert "0.0.0.0:%d" % APP in ls and ls.get("*:%d" % APP) == "0"


def test_nginx_listens_on_both_families(app_host):
    ls = listeners(app_host)
    assert "0.0.0.0:%d" % NGINX in ls
    assert ls.get("[::]:%d" % NGINX) == "1", "nginx must keep ipv6only=on beside its IPv4 listen"


def test_local_requests_over_both_families_see_https(app_host):
    for addr in ("127.0.0.1", "::1"):
        r = http_get(app_host, url(addr, NGINX))
        assert r.status == 200, r
        if hostname(app_host) != "dsr-specific":
            assert r.json["scheme"] == "https", "X-Forwarded-Proto no longer trusted via %s: %s" % (addr, r.body)


def test_peer_requests_through_nginx_over_both_families(app_host, peer):
    addrs = addresses(app_host)
    targets = addrs["ipv4"] + addrs["ipv6"]
    if hostname(app_host) != "dsr-ipv6off":
        assert addrs["ipv6"], "host lost its global IPv6 address"
    for t in targets:
        r = http_get(peer, url(t, NGINX))
        assert r.status == 200, (t, r)
        assert r.json["host"] == app_host.check_output("hostname")


def test_public_gunicorn_keeps_ipv4_peer_addresses(app_host, peer):
    if hostname(app_host) in ("dsr-loopback", "dsr-specific"):
        pytest.skip("gunicorn is not bound publicly on this host")
    v4 = addresses(app_host)["ipv4"][0]
    r = http_get(peer, url(v4, APP))
    assert r.status == 200, r
    # separate sockets: an IPv4 peer is still seen as plain IPv4, not ::ffff:
    assert r.json["remote_addr"] == addresses(peer)["ipv4"][0]
    for v6 in addresses(app_host)["ipv6"]:
        r = http_get(peer, url(v6, APP))
        assert r.status == 200, r
        assert r.json["remote_addr"] in addresses(peer)["ipv6"]


def test_loopback_gunicorn_is_not_exposed(app_host, peer):
    if hostname(app_host) != "dsr-loopback":
        pytest.skip("only dsr-loopback has a loopback-bound gunicorn")
    addrs = addresses(app_host)
    for t in addrs["ipv4"] + addrs["ipv6"]:
        r = http_get(peer, url(t, APP))
        assert r.curl_rc == CURL_CONNECT_REFUSED, (t, r)


def test_snapshot_is_owner_only_with_manifest(app_host):
    d = app_host.file("/var/lib/dualstack-rollout/snapshot")
    assert d.is_directory and d.mode == 0o700
    manifest = json.loads(app_host.file("/var/lib/dualstack-rollout/snapshot/manifest.json").content_string)
    assert SYSCTL_FILE in manifest["files"]
    # The host as it was before the first change: kernel values at run time,
    # what it listened on (with owners), how each service ran.
    before = manifest["data"]["before"]
    assert before["kernel"]["net.ipv6.bindv6only"] in ("0", "1")
    assert "net.ipv6.conf.lo.disable_ipv6" in before["kernel"]
    assert any(x.endswith(" webapp.service") for x in before["listeners"]), before["listeners"]
    webapp = [s for s in before["services"] if s["unit"] == "webapp.service"][0]
    assert webapp["active"] and webapp["restart"] == "restart"
    for path, entry in manifest["files"].items():
        if entry["existed"]:
            stored = app_host.file(entry["stored"])
            assert stored.mode == 0o600 and stored.sha256sum == entry["sha256"]
