"""The nginx configuration corpus (tests/corpus/nginx/*): real-world-shaped
configurations, each with its expected plan.

Each case is a folder: `root/` mirrors the host's files (absolute paths below
it), `case.yml` says what `nginx -T` would list (`links`: sites-enabled
symlinks -> the file they point to), the host's interfaces and /etc/hosts,
and the expected plan: the lines added per file, the resulting listens of
every server block (`+` marks an added one), problems, warnings and notes
(each expected message is the start of the actual one).

Every case also proves: only whole lines or listen statements were inserted
(every other byte kept), a second plan changes nothing, crossplane's own
parser reads each file into the same statements, and, where nginx is
installed, `nginx -t` accepts the result in a scratch prefix.

`python tests/unit/test_dsr_nginx_corpus.py CASE` prints a case's actual plan
in case.yml's form (to review by hand, never to paste unread).
"""
import base64
import difflib
import ipaddress
import itertools
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_nginx import nginx_plan, parse_listen, parse_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "corpus", "nginx")
CASES = sorted(d for d in os.listdir(CORPUS) if os.path.isfile(os.path.join(CORPUS, d, "case.yml")))
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def load(case):
    with open(os.path.join(CORPUS, case, "case.yml")) as f:
        meta = yaml.safe_load(f)
    root = os.path.join(CORPUS, case, "root")
    texts = {}
    for d, _, names in os.walk(root):
        for n in names:
            full = os.path.join(d, n)
            with open(full, "rb") as f:
                texts["/" + os.path.relpath(full, root)] = f.read()
    links = meta.get("links") or {}
    targets = set(links.values())
    main = meta.get("main", "/etc/nginx/nginx.conf")
    paths = [p for p in texts if p not in targets] + list(links)
    paths.sort(key=lambda p: (p != main, p))
    files = [{"path": p, "real_path": links.get(p, p), "exists": True,
              "content": base64.b64encode(texts[links.get(p, p)]).decode()} for p in paths]
    return meta, files, {p: texts[p].decode("utf-8", "surrogateescape") for p in texts}


def run(meta, files):
    return nginx_plan(files, meta.get("interfaces") or {}, {"hosts": meta.get("hosts", "")})


def compact(plan):
    return {
        "added": dict((p, f["added"]) for p, f in sorted(plan["files"].items()) if f["changed"]),
        "servers": [{"at": "%s:%d" % (s["file"], s["line"]),
                     "listens": [("+" if l["added"] else "") + l["listen"] for l in s["listens"]]}
                    for s in plan["servers"]],
        "problems": plan["problems"], "warnings": plan["warnings"], "notes": plan["notes"],
    }


def test_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES)
def test_expected_plan(case):
    meta, files, _ = load(case)
    got = compact(run(meta, files))
    exp = meta["expected"]
    assert got["added"] == (exp.get("added") or {})
    assert got["servers"] == exp["servers"]
    for kind in ("problems", "warnings", "notes"):
        want = exp.get(kind) or []
        assert len(got[kind]) == len(want), got[kind]
        for g, w in zip(got[kind], want):
            assert g.startswith(w), (g, w)


def _inserted(old, new):
    """The listen statements new has on top of old, checked line by line: a
    line is either kept byte for byte, or added whole, or an old line with
    ` listen ...;` statements put in after a `;` or `{`."""
    a, b = old.splitlines(True), new.splitlines(True)
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        assert tag in ("insert", "replace"), (tag, a[i1:i2], b[j1:j2])
        if tag == "replace":
            assert i2 - i1 == j2 - j1, (a[i1:i2], b[j1:j2])
            for old_line, new_line in zip(a[i1:i2], b[j1:j2]):
                out.extend(_same_line_inserts(old_line, new_line))
            continue
        for line in b[j1:j2]:
            assert re.match(r"^[ \t]*listen [^;]*;\r?\n?$", line), line
            out.append(line.strip())
    return out


def _same_line_inserts(old_line, new_line):
    """The ` listen ...;` statements that, taken out of new_line, give old_line."""
    found = [m for m in re.finditer(r"(?<=[;{]) listen [^;]*;", new_line)]
    for n in range(1, len(found) + 1):
        for subset in itertools.combinations(found, n):
            kept, last = "", 0
            for m in subset:
                kept += new_line[last:m.start()]
                last = m.end()
            if kept + new_line[last:] == old_line:
                return [m.group(0).strip() for m in subset]
    raise AssertionError("not an insertion of listen statements: %r -> %r" % (old_line, new_line))


@pytest.mark.parametrize("case", CASES)
def test_only_listen_lines_are_inserted_and_a_second_plan_changes_nothing(case):
    meta, files, texts = load(case)
    plan = run(meta, files)
    for path, f in plan["files"].items():
        assert _inserted(texts[path], f["content"]) == f["added"], path
    again_files = [dict(f, content=base64.b64encode(plan["files"][f["real_path"]]["content"]
                                                    .encode("utf-8", "surrogateescape")).decode())
                   for f in files]
    again = run(meta, again_files)
    if not plan["problems"]:
        assert not again["changed"]
        assert [[l["listen"] for l in s["listens"]] for s in again["servers"]] == \
            [[l["listen"] for l in s["listens"]] for s in plan["servers"]]


def _crossplane_tree(stmts):
    out = []
    for s in stmts:
        args = list(s["args"])
        out.append((s["directive"], s["line"], args if s["directive"] != "if" else None,
                    _crossplane_tree(s.get("block", []))))
    return out


@pytest.mark.parametrize("case", CASES)
def test_statements_match_crossplanes_parser(case, tmp_path):
    import crossplane
    _, files, texts = load(case)
    for path, text in texts.items():
        f = tmp_path / "x.conf"
        f.write_text(text, encoding="utf-8", errors="surrogateescape")
        payload = crossplane.parse(str(f), single=True, check_ctx=False, check_args=False, comments=False)
        assert payload["status"] == "ok", payload["errors"]
        assert _crossplane_tree(parse_text(text, path)) == _crossplane_tree(payload["config"][0]["parsed"]), path


# -- nginx -t on the result --------------------------------------------------

_ABS = re.compile(r"(?<![\w./-])/(etc|var|run|srv|usr/share)/")


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory):
    """A self-signed certificate, its key and DH parameters (RFC 7919 ffdhe2048)."""
    d = tmp_path_factory.mktemp("tls")
    key, cert, dh = (str(d / n) for n in ("key.pem", "cert.pem", "dh.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=corpus",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
                    "-out", dh], check=True, capture_output=True)
    return key, cert, dh


def _scratch(tmp, texts, links, tls):
    """Write the files under tmp with their absolute paths moved there; put
    the certificates, keys and DH parameters they name in place and make the
    directories they log to."""
    tmpdir = str(tmp)
    key, cert, dh = tls
    for path, text in texts.items():
        text = _ABS.sub(lambda m: tmpdir + m.group(0), text)
        text = re.sub(r"(?m)^(\s*user\s+)[^;]+;", r"\1root;", text)
        dest = tmpdir + path
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        for s in re.finditer(r"(?m)^\s*(ssl_certificate_key|ssl_certificate|ssl_trusted_certificate|ssl_dhparam|"
                             r"error_log|access_log|pid|root)\s+(\S+?);", text):
            target = s.group(2).strip("\"'")
            if not target.startswith(tmpdir):
                continue
            os.makedirs(target if s.group(1) == "root" else os.path.dirname(target), exist_ok=True)
            src = {"ssl_certificate_key": key, "ssl_dhparam": dh}.get(s.group(1), cert)
            if s.group(1).startswith("ssl_") and not os.path.exists(target):
                shutil.copy(src, target)
    for link, target in links.items():
        os.makedirs(os.path.dirname(tmpdir + link), exist_ok=True)
        os.symlink(tmpdir + target, tmpdir + link)
    for d in ("var/log/nginx", "var/lib/nginx", "run", "usr/share/nginx/modules"):
        os.makedirs(os.path.join(tmpdir, d), exist_ok=True)
    # load_module's relative paths are relative to the prefix (Debian: /usr/share/nginx/modules).
    if os.path.isdir("/usr/lib/nginx/modules"):
        os.symlink("/usr/lib/nginx/modules", os.path.join(tmpdir, "modules"))


@pytest.mark.parametrize("case", CASES)
def test_nginx_accepts_the_result(case, tmp_path, request):
    if not NGINX:
        pytest.skip("nginx is not installed on this controller: `apt-get install nginx libnginx-mod-stream` "
                    "lets this test run `nginx -t` on every planned corpus result (without starting nginx)")
    meta, files, texts = load(case)
    if meta.get("nginx_t") is False:
        pytest.skip(meta.get("nginx_t_why", "the case is one nginx refuses"))
    plan = run(meta, files)
    if plan["problems"]:
        pytest.skip("the plan stops this host; nothing is written")
    result = dict(texts)
    for path, f in plan["files"].items():
        result[path] = f["content"]
    _scratch(tmp_path, result, meta.get("links") or {}, request.getfixturevalue("tls_material"))
    main = str(tmp_path) + meta.get("main", "/etc/nginx/nginx.conf")
    # nginx -t binds every listen: run it in a network namespace of its own
    # that carries the listens' addresses (and no other process's ports).
    setup = ["ip link set lo up"]
    for s in plan["servers"]:
        for l in s["listens"]:
            lst = parse_listen(l["listen"].split())
            if lst["kind"] == "unix":
                os.makedirs(os.path.dirname(str(tmp_path) + lst["addr"][5:]), exist_ok=True)
            elif lst["kind"] == "tcp" and not ipaddress.ip_address(lst["host"]).is_unspecified \
                    and not ipaddress.ip_address(lst["host"]).is_loopback:
                setup.append("ip addr add %s/%d dev lo nodad" % (lst["host"], 32 if lst["family"] == 4 else 128))
    cmd = "%s && exec %s -t -q -p %s/ -c %s" % (" && ".join(sorted(set(setup))), NGINX, tmp_path, main)
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --net is not permitted here: nginx -t would bind the controller's own ports")
    r = subprocess.run(["unshare", "--net", "sh", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


class _Dumper(yaml.SafeDumper):
    """Indented sequences and a document start, as yamllint --strict wants."""
    def increase_indent(self, flow=False, indentless=False):
        return super(_Dumper, self).increase_indent(flow, False)


def _str(dumper, value):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump_yaml(data):
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=150, allow_unicode=True, explicit_start=True)


if __name__ == "__main__":  # pragma: no cover  (PYTHONPATH=plugins/filter)
    meta, files, _ = load(sys.argv[1])
    print(dump_yaml({"expected": compact(run(meta, files))}))
