from dsr_nginx import nginx_plan

SITE = """# sandbox site
server {
    listen 80 default_server;
    server_name _;
    location / {
        proxy_pass http://127.0.0.1:8000;
        proxy_set_header X-Forwarded-Proto https;
    }
}
"""


def plan(files, **kw):
    return nginx_plan(files, **kw)


def test_wildcard_gains_ipv6_wildcard_with_same_params():
    r = plan({"/etc/nginx/sites-enabled/app": SITE})
    f = r["files"]["/etc/nginx/sites-enabled/app"]
    assert f["added"] == ["listen [::]:80 default_server;"]
    assert "    listen 80 default_server;\n    listen [::]:80 default_server;\n" in f["content"]
    assert f["content"].replace("\n    listen [::]:80 default_server;", "") == SITE
    assert r["problems"] == []


def test_second_plan_is_a_no_op():
    first = plan({"a": SITE})["files"]["a"]["content"]
    again = plan({"a": first})
    assert not again["changed"]
    assert again["files"]["a"]["content"] == first


def test_loopback_gains_only_v6_loopback():
    text = "server {\n\tlisten 127.0.0.1:8080;\n}\n"
    f = plan({"a": text})["files"]["a"]
    assert f["added"] == ["listen [::1]:8080;"]
    assert "\tlisten 127.0.0.1:8080;\n\tlisten [::1]:8080;\n" in f["content"]


def test_specific_address_gains_its_interface_ipv6():
    text = "server {\n  listen 10.0.0.5:443 ssl http2;\n}\n"
    f = plan({"a": text}, interfaces={"10.0.0.5": ["fe80::5", "fd00::5"]})["files"]["a"]
    assert f["added"] == ["listen [fd00::5]:443 ssl http2;"]


def test_specific_address_without_ipv6_is_a_problem():
    r = plan({"/x": "server {\n  listen 10.0.0.5:80;\n}\n"}, interfaces={}, ctx={"host": "app1"})
    assert r["problems"] == ["host app1: /x line 2: listen 10.0.0.5:80: the interface that carries 10.0.0.5 "
                             "has no global IPv6 address"]


def test_existing_counterpart_is_respected():
    text = "server {\n  listen 80;\n  listen [::]:80;\n}\n"
    assert not plan({"a": text})["changed"]


def test_star_and_explicit_any():
    text = "server {\n  listen *:8080;\n  listen 0.0.0.0:8081 reuseport;\n}\n"
    f = plan({"a": text})["files"]["a"]
    assert f["added"] == ["listen [::]:8080;", "listen [::]:8081 reuseport;"]


def test_ipv6only_is_never_copied():
    text = "server {\n  listen 80 ipv6only=on;\n}\n"
    assert plan({"a": text})["files"]["a"]["added"] == ["listen [::]:80;"]


def test_ipv6only_off_beside_ipv4_is_a_problem():
    r = plan({"a": "server {\n listen 80;\n}\n", "b": "server {\n listen [::]:80 ipv6only=off;\n}\n"})
    assert any("ipv6only=off" in p and "EADDRINUSE" in p for p in r["problems"])


def test_hostname_listen_is_a_problem():
    r = plan({"a": "server {\n listen localhost:80;\n}\n"})
    assert any("not a literal address" in p for p in r["problems"])


def test_server_without_listen_gets_explicit_pair():
    text = "server {\n    server_name x;\n}\n"
    f = plan({"a": text})["files"]["a"]
    assert f["added"] == ["listen 80;", "listen [::]:80;"]
    assert plan({"a": f["content"]})["changed"] is False


def test_several_server_blocks_each_get_their_own():
    text = "server {\n listen 80;\n server_name a;\n}\nserver {\n listen 80;\n server_name b;\n}\n"
    f = plan({"a": text})["files"]["a"]
    assert f["content"].count("listen [::]:80;") == 2


def test_comments_and_quotes_are_not_directives():
    text = "server {\n  # listen 81;\n  add_header X \"listen 82;\";\n  listen 80;\n}\n"
    assert plan({"a": text})["files"]["a"]["added"] == ["listen [::]:80;"]


def test_proxy_pass_localhost_is_reported():
    text = "server {\n listen 80;\n location / { proxy_pass http://localhost:8000; }\n}\n"
    r = plan({"/s": text})
    assert len(r["warnings"]) == 1 and "localhost" in r["warnings"][0]


def test_unix_and_ipv6_only_blocks_unchanged():
    text = "server {\n listen unix:/run/x.sock;\n listen [::1]:90;\n}\n"
    assert not plan({"a": text})["changed"]
