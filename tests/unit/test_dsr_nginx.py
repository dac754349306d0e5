import base64

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_nginx import _glob_match, nginx_plan, parse_text

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


# -- read with nginx's grammar, includes resolved as nginx does ---------------

CONF = "events {}\nhttp {\n    include /etc/nginx/conf.d/*.conf;\n    include sites-enabled/*;\n}\n"


def read_files(entries):
    """dsr_read_files' shape: [{path, real_path, exists, content (base64)}]."""
    return [{"path": p, "real_path": r, "exists": True, "content": base64.b64encode(t.encode()).decode()}
            for p, r, t in entries]


def test_hash_inside_a_token_is_not_a_comment():
    text = 'server {\n  return 200 "a#b"; set $x "#"; add_header X a#b;\n  listen 80;\n}\n'
    f = plan({"a": text})["files"]["a"]
    assert f["added"] == ["listen [::]:80;"]


def test_listen_from_an_include_belongs_to_the_including_server():
    r = plan(read_files([
        ("/etc/nginx/nginx.conf", "/etc/nginx/nginx.conf", CONF),
        ("/etc/nginx/sites-enabled/tls", "/etc/nginx/sites-available/tls",
         "server {\n    server_name t;\n    include snippets/listen.conf;\n}\n"),
        ("/etc/nginx/snippets/listen.conf", "/etc/nginx/snippets/listen.conf", "listen 443 ssl;\n"),
    ]))
    assert r["files"]["/etc/nginx/sites-available/tls"]["changed"] is False  # no listen 80 invented
    assert r["files"]["/etc/nginx/snippets/listen.conf"]["content"] == "listen 443 ssl;\nlisten [::]:443 ssl;\n"
    assert [l["listen"] for l in r["servers"][0]["listens"]] == ["443 ssl", "[::]:443 ssl"]
    assert r["listens"] == [{"file": "/etc/nginx/snippets/listen.conf", "line": 1, "server": 0,
                             "address": "::", "port": 443, "v6only": 1, "tls": True}]


def test_files_are_keyed_by_real_path_and_included_by_nginx_path():
    r = plan(read_files([
        ("/etc/nginx/nginx.conf", "/etc/nginx/nginx.conf", CONF),
        ("/etc/nginx/sites-enabled/default", "/etc/nginx/sites-available/default", "server {\n\tlisten 80;\n}\n"),
    ]))
    assert set(r["files"]) == {"/etc/nginx/nginx.conf", "/etc/nginx/sites-available/default"}
    assert r["files"]["/etc/nginx/sites-available/default"]["added"] == ["listen [::]:80;"]


def test_once_only_options_stay_once_per_address_and_port():
    r = plan({"/etc/nginx/nginx.conf": "http {\n"
              " server { listen 80; listen [::]:80 default_server reuseport; }\n"
              " server {\n  listen 80 default_server backlog=511;\n }\n"
              " server {\n  listen 8080 reuseport default_server;\n }\n"
              " server {\n  listen 8080;\n }\n}\n"})
    got = [[l["listen"] for l in s["listens"]] for s in r["servers"]]
    assert got == [["80", "[::]:80 default_server reuseport"],
                   ["80 default_server backlog=511", "[::]:80"],
                   ["8080 reuseport default_server", "[::]:8080 reuseport default_server"],
                   ["8080", "[::]:8080"]]


def test_snippet_shared_by_servers_is_edited_once_or_stops_the_host():
    snippet = ("/etc/nginx/snippets/l.conf", "/etc/nginx/snippets/l.conf", "listen 443 ssl;\n")
    both = "http {\n server { include snippets/l.conf; }\n server { include snippets/l.conf; }\n}\n"
    r = plan(read_files([("/etc/nginx/nginx.conf", "/etc/nginx/nginx.conf", both), snippet]))
    assert r["files"]["/etc/nginx/snippets/l.conf"]["added"] == ["listen [::]:443 ssl;"]
    assert r["problems"] == []
    one_has = "http {\n server { include snippets/l.conf; listen [::]:443 ssl; }\n server { include snippets/l.conf; }\n}\n"
    r = plan(read_files([("/etc/nginx/nginx.conf", "/etc/nginx/nginx.conf", one_has), snippet]))
    assert not r["changed"]
    assert r["problems"][0].startswith("/etc/nginx/snippets/l.conf line 1: listen 443 ssl is included by 2 servers")


def test_include_that_was_not_read_stops_the_host():
    r = plan({"/etc/nginx/sites-enabled/a": "server {\n  include /etc/nginx/snippets/missing.conf;\n}\n"})
    assert not r["changed"]
    assert r["problems"][0].startswith("/etc/nginx/sites-enabled/a line 2: include /etc/nginx/snippets/missing.conf")


def test_glob_matches_as_glob3_does():
    assert _glob_match("/etc/nginx/conf.d/*.conf", "/etc/nginx/conf.d/a.conf")
    assert not _glob_match("/etc/nginx/conf.d/*.conf", "/etc/nginx/conf.d/.hidden.conf")
    assert not _glob_match("/etc/nginx/conf.d/*", "/etc/nginx/conf.d/sub/a.conf")
    assert _glob_match("/etc/nginx/sites-enabled/[!.]*", "/etc/nginx/sites-enabled/default")


def test_stream_tcp_is_migrated_and_udp_is_noted():
    r = plan({"/etc/nginx/nginx.conf": "stream {\n server {\n  listen 5432;\n  proxy_pass 127.0.0.1:5433;\n }\n"
              " server {\n  listen 53 udp;\n  proxy_pass 10.0.0.53:53;\n }\n}\n"})
    assert r["files"]["/etc/nginx/nginx.conf"]["added"] == ["listen [::]:5432;"]
    assert [s["kind"] for s in r["servers"]] == ["stream", "stream"]
    assert len(r["notes"]) == 1 and "udp" in r["notes"][0]


def test_localhost_is_reported_in_every_pass_directive_and_upstream():
    text = ("upstream u {\n server localhost:8000;\n}\nserver {\n listen 80;\n"
            " location /a { uwsgi_pass localhost:3031; }\n location /b { fastcgi_pass localhost:9000; }\n"
            " location /c { grpc_pass grpc://localhost:50051; }\n location /d { proxy_pass http://u; }\n"
            " location /e { proxy_pass http://both.example:81; }\n location /f { proxy_pass http://127.0.0.1:82; }\n}\n")
    r = plan({"/s": text}, ctx={"hosts": "127.0.0.1 localhost both.example\n::1 localhost both.example\n"})
    assert [w.split(":")[0] for w in r["warnings"]] == ["/s line 2", "/s line 6", "/s line 7", "/s line 8", "/s line 10"]


def test_crlf_and_comments_kept_byte_for_byte():
    text = "server {\r\n    listen 80; # public\r\n}\r\n"
    f = plan({"a": text})["files"]["a"]
    assert f["content"] == "server {\r\n    listen 80; # public\r\n    listen [::]:80;\r\n}\r\n"


def test_a_file_nginx_grammar_refuses_is_a_problem():
    r = plan({"/bad": "server {\n listen 80;\n"})
    assert r["problems"] and r["problems"][0].startswith("/bad")
    assert not r["changed"]


def test_statements_carry_offsets_of_their_terminator():
    text = "a 1;\nb { c \"x;y\"; }\n"
    stmts = parse_text(text)
    assert [(s["directive"], s["args"], text[s["end"]]) for s in stmts] == [("a", ["1"], ";"), ("b", [], "{")]
    assert stmts[1]["block"][0]["args"] == ["x;y"] and text[stmts[1]["block"][0]["end"]] == ";"


def test_a_file_that_is_not_utf8_is_left_for_a_person():
    raw = b"# \xe9t\xe9\nserver {\n listen 80;\n}\n"
    r = plan([{"path": "/l", "real_path": "/l", "exists": True, "content": base64.b64encode(raw).decode()}])
    assert not r["changed"] and "not UTF-8" in r["problems"][0]


def test_crossplane_is_pinned_alike_everywhere_and_installed_at_that_pin():
    import os
    import re

    import crossplane
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pins = set()
    for name in ("requirements.txt", "requirements-legacy.txt", "execution-environment.yml",
                 "execution-environment-legacy.yml"):
        with open(os.path.join(root, name)) as f:
            found = re.findall(r"(?m)^\s*(?:- )?crossplane==(\S+)\s*$", f.read())
        assert len(found) == 1, name
        pins.update(found)
    assert pins == {crossplane.__version__}
