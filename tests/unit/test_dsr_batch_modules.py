"""dsr_commands (an action plugin), dsr_read_files and dsr_http_probe: what turns a
looped task into one round trip per host. Real processes, real files and a
real HTTP server on loopback over IPv4 and IPv6; no mocks."""
import base64
import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

import dsr_commands  # documentation only (the work is the action plugin's)
import dsr_http
import dsr_http_probe
import dsr_read_files
from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_shell

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The action plugin shares its name with the documentation module.
_spec = importlib.util.spec_from_file_location("dsr_commands_action", os.path.join(ROOT, "plugins", "action", "dsr_commands.py"))
dsr_commands_action = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dsr_commands_action)

# --- dsr_commands (action plugin: one sh script, no Python on the host) -----

def sh(commands, allow_failure=False, timeout=0):
    """Run the action's script with a real /bin/sh, as the connection would."""
    p = subprocess.run(["/bin/sh", "-c", dsr_shell.build_script(commands, allow_failure, timeout)],
                       capture_output=True, text=True)
    results = dsr_shell.parse_output(p.stdout, commands)
    return results, dsr_shell.first_error(results, allow_failure, timeout)


def test_a_command_that_hangs_is_stopped_and_named_even_with_allow_failure():
    results, error = sh([["sleep", "30"], ["echo", "after"]], allow_failure=True, timeout=1)
    assert results[0]["rc"] == dsr_shell.TIMED_OUT
    assert error == "sleep 30 timed out after 1 s"
    assert results[1]["stdout"] == "after\n"


def test_a_command_within_its_timeout_runs_as_without_one():
    results, error = sh([["echo", "quick"]], timeout=5)
    assert error is None and results[0]["stdout"] == "quick\n"


def test_commands_run_in_order_and_read_like_a_loop():
    results, error = sh([["echo", "one"], ["sh", "-c", "echo two >&2"]])
    assert error is None
    assert [r["stdout"] for r in results] == ["one\n", ""]
    assert results[1]["stderr"] == "two\n"
    assert results[0]["cmd"] == ["echo", "one"] and results[0]["rc"] == 0
    assert results[0]["stdout_lines"] == ["one"]


def test_a_failing_command_stops_and_is_named():
    results, error = sh([["false"], ["echo", "never"]])
    assert len(results) == 1
    assert error.startswith("false exited 1")


def test_allow_failure_keeps_going_and_leaves_no_failed_key():
    # Ansible reads `failed` inside `results` as the task's own failure.
    results, error = sh([["no-such-command-dsr"], ["echo", "ok"]], allow_failure=True)
    assert error is None
    assert results[0]["rc"] == 127 and "not found" in results[0]["stderr"]
    assert results[1]["stdout"] == "ok\n"
    assert all("failed" not in r for r in results)


def test_arguments_reach_the_command_unchanged_and_output_bytes_survive(tmp_path):
    # Quotes, spaces, globs and $ are arguments, not shell; output lines that
    # look like the framing, no trailing newline and non-UTF-8 bytes come back as written.
    weird = ["it's", "a b", "*", "$HOME", "@@DSR-END", ""]
    out_file = tmp_path / "out"
    out_file.write_bytes(b"@@DSR 9 0\n@@ERR\n@@DSR-END\nno newline \xff")
    results, error = sh([["printf", "%s|"] + weird, ["cat", str(out_file)]])
    assert error is None
    assert results[0]["stdout"] == "|".join(weird) + "|"
    assert results[1]["stdout"].startswith("@@DSR 9 0\n@@ERR\n@@DSR-END\nno newline ")
    assert results[1]["rc"] == 0


def test_a_script_cut_short_is_an_error_not_an_empty_result():
    with pytest.raises(ValueError, match="stopped before its end"):
        dsr_shell.parse_output("@@DSR 0 0\nb25l\n@@ERR\n", [["echo", "one"]])


def adhoc_dsr_commands(tmp_path, args):
    """`ansible localhost -m dualstack.rollout.dsr_commands -a ARGS` over the local connection:
    (exit code, the task's result)."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_HOME=str(tmp_path),
               ANSIBLE_BECOME="False", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local",
                        "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable,
                        "-m", "dualstack.rollout.dsr_commands", "-a", json.dumps(args)],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    return p.returncode, json.loads(p.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_through_ansible_itself(tmp_path):
    """The task as the playbooks run it: ansible's own executor and the local
    connection, results registered like a looped command."""
    rc, res = adhoc_dsr_commands(tmp_path, {"commands": [["echo", "one"], ["sh", "-c", "exit 3"]], "allow_failure": True})
    assert rc == 0, res
    assert [r["rc"] for r in res["results"]] == [0, 3]
    assert res["results"][0]["stdout"] == "one\n" and res["changed"] is False
    rc, res = adhoc_dsr_commands(tmp_path, {"commands": [["sh", "-c", "echo boom >&2; exit 4"]]})
    assert rc != 0
    assert res["failed"] is True and res["msg"] == "sh -c echo boom >&2; exit 4 exited 4: boom"


# --- dsr_read_files ---------------------------------------------------------

def test_read_files_follow_links_keep_order_and_bytes(tmp_path):
    real = tmp_path / "sites-available" / "app"
    real.parent.mkdir()
    body = b"server {\n    listen 80;\n}\n\xc3\xa9 no final newline"
    real.write_bytes(body)
    link = tmp_path / "sites-enabled-app"
    link.symlink_to(real)
    other = tmp_path / "nginx.conf"
    other.write_bytes(b"events {}\n")
    files, error = dsr_read_files.read_all([str(other), str(link), str(real)], False)
    assert error is None
    assert [f["path"] for f in files] == [str(other), str(link), str(real)]
    assert files[1]["real_path"] == str(real)
    assert base64.b64decode(files[1]["content"]) == body
    assert files[1]["content"] == files[2]["content"]


def test_read_files_missing(tmp_path):
    missing = str(tmp_path / "gone.conf")
    files, error = dsr_read_files.read_all([missing], False)
    assert error == "%s does not exist or is not a regular file" % missing
    files, error = dsr_read_files.read_all([missing], True)
    assert error is None and files == [{"path": missing, "real_path": missing, "exists": False, "content": None}]


# --- dsr_probe_requests (filter) --------------------------------------------

def test_probe_requests_brackets_ipv6_and_orders_ports_first():
    reqs = dsr_http.probe_requests(["192.0.2.1", "2001:db8::1"], [80, "8000"], path="/health",
                                   json={"scheme": "https"})
    assert [r["url"] for r in reqs] == [
        "http://192.0.2.1:80/health", "http://[2001:db8::1]:80/health",
        "http://192.0.2.1:8000/health", "http://[2001:db8::1]:8000/health"]
    assert all(r["json"] == {"scheme": "https"} and r["expect"] == "answer" for r in reqs)


def test_probe_requests_repeat_and_no_answer():
    reqs = dsr_http.probe_requests(["[::1]"], [8001], expect="no_answer", repeat=3)
    assert [r["url"] for r in reqs] == ["http://[::1]:8001/"] * 3
    assert {r["expect"] for r in reqs} == {"no_answer"}
    assert dsr_http.probe_requests(["127.0.0.1"], []) == []


@pytest.mark.parametrize("args, message", [
    ((["10.0.0.300"], [80]), "'10.0.0.300' is not an IP address"),
    ((["127.0.0.1"], [70000]), "70000 is not a TCP port"),
    ((["127.0.0.1"], [80], "health"), "path 'health' must start with /"),
    ((["127.0.0.1"], [80], "/", "maybe"), "expect must be answer, any or no_answer, not 'maybe'"),
])
def test_probe_requests_bad_input(args, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace("[", r"\[")):
        dsr_http.probe_requests(*args)


# --- dsr_http_probe against a real server ------------------------------------

class App(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        body = json.dumps({"scheme": "https", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Server6(HTTPServer):
    address_family = socket.AF_INET6


def serve(cls, addr):
    srv = cls((addr, 0), App)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def servers():
    v4 = serve(HTTPServer, "127.0.0.1")
    try:
        v6 = serve(Server6, "::1")
    except OSError:  # pragma: no cover - a host without IPv6 loopback
        pytest.skip("no IPv6 loopback here")
    yield v4.server_address[1], v6.server_address[1]
    v4.shutdown()
    v6.shutdown()


def probe(requests):
    return dsr_http_probe.probe_all(requests, 3)


def test_probe_both_families_with_json(servers):
    p4, p6 = servers
    results, problems = probe([
        {"url": "http://127.0.0.1:%d/" % p4, "json": {"scheme": "https"}},
        {"url": "http://[::1]:%d/x" % p6, "json": {"path": "/x"}},
    ])
    assert problems == []
    assert [r["status"] for r in results] == [200, 200]
    assert results[1]["json"] == {"scheme": "https", "path": "/x"}


def test_probe_reports_wrong_json_error_status_and_silence(servers):
    p4, _ = servers
    closed = free_port()
    results, problems = probe([
        {"url": "http://127.0.0.1:%d/" % p4, "json": {"scheme": "http"}},
        {"url": "http://127.0.0.1:%d/broken" % p4},
        {"url": "http://127.0.0.1:%d/" % closed},
    ])
    assert [r["ok"] for r in results] == [False, False, False]
    assert problems[0].startswith("http://127.0.0.1:%d/ answered {" % p4)
    assert problems[0].endswith('expected {"scheme": "http"}')
    assert problems[1] == "http://127.0.0.1:%d/broken: HTTP 500" % p4
    assert problems[2].startswith("http://127.0.0.1:%d/: " % closed)
    assert results[2]["status"] == -1


def test_probe_no_answer_expected(servers):
    p4, _ = servers
    closed = free_port()
    results, problems = probe([
        {"url": "http://127.0.0.1:%d/" % closed, "expect": "no_answer"},
        {"url": "http://127.0.0.1:%d/" % p4, "expect": "no_answer"},
    ])
    assert results[0]["ok"] is True
    assert problems == ["http://127.0.0.1:%d/ answered HTTP 200 but must not answer" % p4]


def test_modules_carry_documentation():
    """Every module's DOCUMENTATION parses (ansible-doc and ansible-lint read it)."""
    import glob
    import importlib.util
    import yaml
    paths = sorted(glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
    assert len(paths) >= 6
    for path in paths:
        spec = importlib.util.spec_from_file_location("doc_" + os.path.basename(path)[:-3], path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        doc = yaml.safe_load(mod.DOCUMENTATION)
        assert doc["module"] == os.path.basename(path)[:-3] and doc["options"], path


ACTIONS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "plugins", "action")) if f.endswith(".py"))


@pytest.mark.parametrize("name", ACTIONS)
def test_action_documentation_matches_the_action(name):
    """Each action plugin's module file is documentation only: its options
    must be the ones the action plugin validates, with the same types and
    defaults."""
    import yaml
    spec_ = importlib.util.spec_from_file_location(name + "_action", os.path.join(ROOT, "plugins", "action", name + ".py"))
    act = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(act)
    doc = yaml.safe_load(importlib.import_module(name).DOCUMENTATION)["options"]
    spec = act.ARGUMENT_SPEC
    assert sorted(doc) == sorted(spec)
    for opt_name, opt in spec.items():
        for key in ("type", "elements", "required", "default"):
            assert doc[opt_name].get(key) == opt.get(key), (opt_name, key)