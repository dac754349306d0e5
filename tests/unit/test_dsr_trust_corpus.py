"""The trust corpus (tests/corpus/trust/*/case.yml): app hosts behind a
balancer, with the rules that trust it by address, each with its expected plan.

A case holds the host's nginx files (`files`: path -> text; `main: debian`
puts tests/corpus/trust/_main/debian-nginx.conf at /etc/nginx/nginx.conf;
`links`: sites-enabled symlinks -> the file they point to; `crlf: true`
writes every file with CRLF line endings), what was read on the balancer
(`balancer`, default: _main/balancer.yml) and the gunicorn services
(`services`), and the expected plan: lines added per file, every rule as
`file:line directive value -> counterpart (action)`, gunicorn values,
problems and notes (each expected message is the start of the actual one)
and ipv6_upstream_ok.

Every case also proves: only whole lines or statements after a `;` were
inserted (every other byte kept), a second plan changes nothing, the audit
sees every balancer rule covering both families afterwards, `nginx -t`
accepts the result (in a scratch prefix inside `unshare --net`), and each
gunicorn value, read by that gunicorn's own configuration code (19.9.0 or
27.0.1), trusts the balancer's IPv6 source exactly where it trusted its
IPv4 address before. Cases with `probes` are served by a real nginx (see
below): requests from the balancer's IPv6 source after the plan get what
requests from its IPv4 address get today, and would not without the twins.

`python tests/unit/test_dsr_trust_corpus.py CASE` prints a case's actual plan
in case.yml's form (to review by hand, never to paste unread).
"""
import base64
import os
import re
import subprocess
import sys

import pytest
import yaml

from dsr_trust import trust_plan, trust_rules
from test_dsr_nginx_corpus import NGINX, _scratch, dump_yaml, tls_material  # noqa: F401  (a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "corpus", "trust")
CASES = sorted(d for d in os.listdir(CORPUS) if os.path.isfile(os.path.join(CORPUS, d, "case.yml")))


def _read(name):
    with open(os.path.join(CORPUS, "_main", name)) as f:
        return f.read()


def load(case):
    with open(os.path.join(CORPUS, case, "case.yml")) as f:
        meta = yaml.safe_load(f)
    texts = dict(meta.get("files") or {})
    if meta.get("main") == "debian":
        texts["/etc/nginx/nginx.conf"] = _read("debian-nginx.conf")
    if meta.get("crlf"):
        texts = dict((p, t.replace("\n", "\r\n")) for p, t in texts.items())
    links = meta.get("links") or {}
    paths = sorted(set(texts) - set(links.values()) | set(links), key=lambda p: (p != "/etc/nginx/nginx.conf", p))
    files = [{"path": p, "real_path": links.get(p, p), "exists": True,
              "content": base64.b64encode(texts[links.get(p, p)].encode("utf-8", "surrogateescape")).decode()}
             for p in paths]
    if "balancer" not in meta:
        meta["balancer"] = yaml.safe_load(_read("balancer.yml"))
    return meta, files, texts


def run(meta, files):
    return trust_plan(files, meta["balancer"], meta.get("services"), {"prefix": "/etc/nginx/"})


def _rule(r):
    s = "%s:%d %s %s" % (r["file"], r["line"], r["directive"], r["value"])
    if r["counterpart"]:
        s += " -> " + r["counterpart"]
    return s + " (%s)" % r["action"]


def compact(plan):
    return {
        "added": dict((p, f["added"]) for p, f in sorted(plan["files"].items()) if f["changed"]),
        "rules": [_rule(r) for r in plan["rules"]],
        "gunicorn": [{"unit": g["unit"], "value": g["value"]} for g in plan["gunicorn"]],
        "problems": plan["problems"], "notes": plan["notes"], "ipv6_upstream_ok": plan["ipv6_upstream_ok"],
    }


def _sources(meta):
    """The balancers' (IPv4, IPv6 source) pairs, as the plan reads them."""
    from dsr_trust import _balancers
    return [(b["ipv4"], b["ipv6"]) for b in _balancers(meta["balancer"]) if b["ipv6"]]


def test_corpus_is_large_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES)
def test_expected_plan(case):
    meta, files, _ = load(case)
    got = compact(run(meta, files))
    exp = meta["expected"]
    assert got["added"] == (exp.get("added") or {})
    assert got["rules"] == (exp.get("rules") or [])
    assert got["gunicorn"] == (exp.get("gunicorn") or [])
    assert got["ipv6_upstream_ok"] == exp["ipv6_upstream_ok"]
    for kind in ("problems", "notes"):
        want = exp.get(kind) or []
        assert len(got[kind]) == len(want), got[kind]
        for g, w in zip(got[kind], want):
            assert g.startswith(w), (g, w)


def _remove_twins(new, added):
    """new without the added statements, taken out left to right: each one
    either on a line of its own, indented like the line before it, with the
    file's line ending, or right after a `;` on the same line."""
    out, cursor = "", 0
    crlf = "\r\n" in new
    for stmt in added:
        m = re.compile(r"(?:(\r?\n)([ \t]*)|(?<=;) )" + re.escape(stmt) + r"(?=\s|$)").search(new, cursor)
        assert m, (stmt, new[cursor:])
        if m.group(1):
            before = new[:m.start()]
            prev = before[before.rfind("\n") + 1:]
            assert m.group(2) == re.match(r"[ \t]*", prev).group(0), (stmt, prev)
            assert (m.group(1) == "\r\n") == crlf, stmt
        out += new[cursor:m.start()]
        cursor = m.end()
    return out + new[cursor:]


def _again(plan, files):
    return [dict(f, content=base64.b64encode(plan["files"][f["real_path"]]["content"]
                                             .encode("utf-8", "surrogateescape")).decode()) for f in files]


@pytest.mark.parametrize("case", CASES)
def test_only_twins_are_inserted_and_a_second_plan_changes_nothing(case):
    meta, files, texts = load(case)
    plan = run(meta, files)
    for path, f in plan["files"].items():
        assert _remove_twins(f["content"], f["added"]) == texts[path], path
    again = run(meta, _again(plan, files))
    assert not any(f["changed"] for f in again["files"].values())
    assert again["problems"] == plan["problems"]


@pytest.mark.parametrize("case", CASES)
def test_audit_sees_both_families_after_the_plan(case):
    meta, files, _ = load(case)
    plan = run(meta, files)
    if not plan["ipv6_upstream_ok"]:
        pytest.skip("the host stays on its IPv4 upstream")
    after = _again(plan, files)
    for v4, v6 in _sources(meta):
        for r in trust_rules(after, v4, [v6]):
            if r["ipv4"] and r["directive"] in ("set_real_ip_from", "allow", "deny", "geo", "geo proxy") \
                    and r["context"].get("key", "$remote_addr") == "$remote_addr" and r["value"] != "all":
                assert r["ipv6"], r


@pytest.mark.parametrize("case", CASES)
def test_nginx_accepts_the_result(case, tmp_path, request):
    if not NGINX:
        pytest.skip("nginx is not installed on this controller")
    meta, files, texts = load(case)
    if "/etc/nginx/nginx.conf" not in texts:
        pytest.skip("no nginx configuration in this case")
    if meta.get("nginx_t") is False:
        pytest.skip(meta["nginx_t_why"])
    plan = run(meta, files)
    result = dict(texts)
    for path, f in plan["files"].items():
        result[path] = f["content"]
    _scratch(tmp_path, result, meta.get("links") or {}, request.getfixturevalue("tls_material"))
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --net is not permitted here: nginx -t would bind the controller's own ports")
    cmd = "ip link set lo up && exec %s -t -q -p %s/ -c %s/etc/nginx/nginx.conf" % (NGINX, tmp_path, tmp_path)
    r = subprocess.run(["unshare", "--net", "sh", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("case", [c for c in CASES if "services" in load(c)[0]])
def test_gunicorn_trusts_the_ipv6_source_where_it_trusted_the_ipv4(case, monkeypatch):
    import test_gunicorn_oracle as oracle
    meta, files, _ = load(case)
    plan = run(meta, files)
    values = dict((g["unit"], g["value"]) for g in plan["gunicorn"])
    peers = [p for v4, v6 in _sources(meta) for p in v4 + [v6]]
    monkeypatch.setattr(oracle, "PEERS", tuple(peers))  # the harness's peer list, not the code under test
    for svc in meta["services"]:
        version = svc.get("version") or "19.9.0"
        before = ["--forwarded-allow-ips", svc["forwarded_allow_ips"]] if svc.get("forwarded_allow_ips") else []
        after = ["--forwarded-allow-ips", values[svc["unit"]]] if svc["unit"] in values else before
        res = oracle.gunicorn_read(version, [{"args": before + ["app:app"]}, {"args": after + ["app:app"]}])
        assert res[0]["ok"] and res[1]["ok"], res
        for v4, v6 in _sources(meta):
            was = any(res[0]["trusted"][a] for a in v4)
            assert res[1]["trusted"][v6] == was, (svc["unit"], version, res[1]["forwarded_allow_ips"])
            for a in v4:
                assert res[1]["trusted"][a] == res[0]["trusted"][a]


if __name__ == "__main__":  # pragma: no cover  (PYTHONPATH=plugins/filter:tests/unit)
    meta, files, _ = load(sys.argv[1])
    print(dump_yaml({"expected": compact(run(meta, files))}))


# -- real requests through nginx ------------------------------------------------
#
# A case's `probes` are requests a balancer sends: {path, port (80), method
# (GET), headers, show: [response headers to compare]}. The host's nginx is
# started in a network namespace three times: as it is (requests from the
# balancer's IPv4 address), after the listen plan and this plan (from its
# IPv6 source), and after the listen plan alone (from its IPv6 source). Each
# request's status, the client address nginx logs (the balancer's own address
# written as "balancer") and the `show` headers must be the same in the first
# two runs, and the third must differ somewhere: the twins are what keeps
# behaviour, not chance.

PROBE = r'''
import http.client, json, os, subprocess, sys, time
job = json.load(sys.stdin)
def sh(*a):
    subprocess.run(a, check=True, capture_output=True)
sh("ip", "link", "set", "lo", "up")
for a in job["addresses"]:
    sh("ip", "addr", "add", a, "dev", "lo", "nodad") if ":" in a else sh("ip", "addr", "add", a, "dev", "lo")
subprocess.run([job["nginx"], "-p", job["prefix"], "-c", job["conf"]], check=True, capture_output=True)
log = job["log"]
out = []
try:
    for p in job["probes"]:
        for _ in range(50):
            try:
                c = http.client.HTTPConnection(job["dst"], p.get("port", 80), timeout=5,
                                               source_address=(job["src"], 0))
                c.request(p.get("method", "GET"), p["path"], headers=p.get("headers") or {})
                break
            except OSError:  # refused until nginx listens; unreachable until the kernel has the new addresses
                time.sleep(0.1)
        r = c.getresponse()
        r.read()
        shown = dict((h, r.getheader(h)) for h in p.get("show", []))
        time.sleep(0.05)
        with open(log) as f:
            last = f.read().splitlines()[-1]
        out.append({"status": r.status, "client": last.split()[0], "headers": shown})
finally:
    subprocess.run([job["nginx"], "-p", job["prefix"], "-c", job["conf"], "-s", "stop"], capture_output=True)
print(json.dumps(out))
'''


def _serve(tmp, texts, meta, tls, src, dst):
    _scratch(tmp, texts, meta.get("links") or {}, tls)
    log = str(tmp) + "/var/log/nginx/access.log"
    job = {"nginx": NGINX, "prefix": str(tmp) + "/", "conf": str(tmp) + "/etc/nginx/nginx.conf", "log": log,
           "probes": meta["probes"], "src": src, "dst": dst, "addresses": [src, dst]}
    r = subprocess.run(["unshare", "--net", sys.executable, "-c", PROBE], input=__import__("json").dumps(job),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = __import__("json").loads(r.stdout)
    for x in res:
        x["client"] = "balancer" if x["client"] == src else x["client"]
    return res


@pytest.mark.parametrize("case", [c for c in CASES if "probes" in load(c)[0]])
def test_requests_through_the_balancer_behave_the_same_over_ipv6(case, tmp_path, request):
    from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_nginx import nginx_plan
    if not NGINX or subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs nginx and unshare --net")
    tls = request.getfixturevalue("tls_material")
    meta, files, texts = load(case)
    (v4, v6), = _sources(meta)[:1]
    dst4, dst6 = "10.20.0.11" if v4[0].startswith("10.20.") else "10.30.0.11", "fd42:d5a:30::11"
    plan = run(meta, files)
    listens = nginx_plan(_again(plan, files), {}, {})
    assert not listens["problems"], listens["problems"]
    twinned = dict(texts, **dict((p, f["content"]) for p, f in listens["files"].items()))
    untwinned = dict(texts, **dict((p, f["content"]) for p, f in nginx_plan(files, {}, {})["files"].items()))
    before = _serve(tmp_path / "before", texts, meta, tls, v4[0], dst4)
    after = _serve(tmp_path / "after", twinned, meta, tls, v6, dst6)
    without = _serve(tmp_path / "without", untwinned, meta, tls, v6, dst6)
    assert after == before
    assert without != before, "the probes do not see the rules this case twins"
