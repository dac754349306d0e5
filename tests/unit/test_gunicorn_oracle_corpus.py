"""The rewrite corpus (tests/corpus/rewrite/*.yml), judged by gunicorn, systemd and supervisord.

Each case is a service as operators write it: unit files and drop-ins, the
files they name (EnvironmentFile, config files), or a supervisord config.
The harness reads it the way the host would (systemd-analyze for the unit,
supervisord's own config reader for programs, systemd's EnvironmentFile
rules, gunicorn's config machinery for the effective bind), plans it with
bind_plan, applies every change the rewrite returns (as the role's copy,
lineinfile, blockinfile and ini_file tasks would), reads the result again
and asserts that gunicorn now has exactly the plan, every other setting
unchanged, under gunicorn 19.9.0 and 27.0.1 (each where the original is
valid). Applying the changes twice gives the same files.

Case file keys: description, source, manager (systemd | supervisor), unit,
units {file name under the unit directory: text}, files {absolute path:
text}, supervisord (the supervisord.conf text), service (what discovery
reports beyond the effective values: bind_source, forwarded_allow_ips_source,
gunicorn_cmd_args_file, forwarded_allow_ips_file, config_file, version,
dropin_path), host {bindv6only, strategy, interfaces, resolved}, expect
{binds, kinds, refused}.
"""
import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import bind_plan
import dsr_gunicorn as g
import test_gunicorn_oracle as o

CORPUS = os.path.join(o.ROOT, "tests", "corpus", "rewrite")
CASES = sorted(glob.glob(os.path.join(CORPUS, "*.yml")))
SUPERVISOR = "4.2.5"


def load(path):
    with open(path) as f:
        case = yaml.safe_load(f)
    case.setdefault("manager", "systemd")
    case.setdefault("service", {})
    case.setdefault("host", {})
    case.setdefault("expect", {})
    return case


# ---------------------------------------------------------------------------
# supervisord's own reading of a config

SUP_PROBE = r'''
import json, shlex, sys
from supervisor.options import ServerOptions
result = {}
for conf in sys.argv[1:]:
    opts = ServerOptions()
    opts.realize(args=["-c", conf])
    out = result[conf] = {}
    for group in opts.process_group_configs:
        for pc in group.process_configs:
            out[pc.name] = {"argv": shlex.split(pc.command), "environment": pc.environment or {},
                            "directory": pc.directory}
print(json.dumps(result))
'''


def supervisor_read(confs):
    """{conf: {program: {argv, environment, directory}}} as supervisord 4.2.5 reads each config."""
    target = os.path.join(o.CACHE, "supervisor-%s" % SUPERVISOR)
    if not os.path.isdir(target):
        o._pip_target(target, ["supervisor==%s" % SUPERVISOR])
    r = subprocess.run([sys.executable, "-c", SUP_PROBE] + list(confs), capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=target), timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


_ENV_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("[^"]*"|\'[^\']*\'|[^,]*)\s*(?:,|$)')


def _ini_option(text, section, option):
    """The raw value of option in [section] (supervisord strips ' ;' comments)."""
    sec = None
    for line in text.splitlines():
        m = re.match(r"^\[(.+)\]\s*$", line)
        if m:
            sec = m.group(1)
            continue
        m = re.match(r"^\s*%s\s*[=:]\s*(.*)$" % re.escape(option), line)
        if sec == section and m:
            return re.split(r"\s[;#]", m.group(1))[0].strip()
    return None


def _ini_set(text, section, option, value):
    """community.general.ini_file with no_extra_spaces: replace the option's line, or add it."""
    lines = text.splitlines()
    sec = None
    start = None
    for n, line in enumerate(lines):
        m = re.match(r"^\[(.+)\]\s*$", line)
        if m:
            sec = m.group(1)
            if sec == section:
                start = n
            continue
        if sec == section and re.match(r"^\s*%s\s*[=:]" % re.escape(option), line):
            lines[n] = "%s=%s" % (option, value)
            return "\n".join(lines) + "\n"
    assert start is not None, section
    lines.insert(start + 1, "%s=%s" % (option, value))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Reading a case's service, and applying changes

class Host(object):
    def __init__(self, case, tmp):
        self.case = case
        self.tmp = str(tmp)
        self.root = os.path.join(self.tmp, "root")
        self.unitdir = os.path.join(self.tmp, "units")
        self.sup_read = None  # supervisord's and systemd's readings, when read for many hosts at once
        self.sd_read = None
        os.makedirs(self.unitdir)
        for name, text in (case.get("units") or {}).items():
            self.write(os.path.join(self.unitdir, name), text)
        for path, text in (case.get("files") or {}).items():
            self.write(self.real(path), text)
        if case["manager"] == "supervisor":
            self.conf = self.real("/etc/supervisor/supervisord.conf")
            self.write(self.conf, case["supervisord"].replace("@LOGDIR@", self.tmp))

    @staticmethod
    def write(path, text):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def real(self, path):
        return self.root + path

    def mapped(self, text):
        """Paths of the case's files inside the temporary root, for gunicorn."""
        for path in sorted(self.case.get("files") or {}, key=len, reverse=True):
            text = text.replace(path, self.real(path))
            d = os.path.dirname(path)
            text = re.sub(r"(?<![\w/])%s(?=/|$|\s)" % re.escape(d), self.real(d), text)
        return text

    def read(self):
        """(svc reading, gunicorn args, env for gunicorn, cwd) as the host has it now."""
        if self.case["manager"] == "supervisor":
            if self.sup_read is None:
                self.sup_read = supervisor_read([self.conf])[self.conf]
            prog, self.sup_read = self.sup_read[self.case["unit"]], None
            env = dict(prog["environment"])
            wenv, args = o.gunicorn_invocation(prog["argv"])
            env.update(wenv)
            with open(self.conf) as f:
                text = f.read()
            raw_env = _ini_option(text, "program:" + self.case["unit"], "environment") or ""
            svc = {"unit": "supervisor:" + self.case["unit"], "name": self.case["unit"], "manager": "supervisor",
                   "argv": prog["argv"], "exec_prefix": "", "conf_path": self.conf,
                   "section": "program:" + self.case["unit"],
                   "environment_pairs": [[k, v.strip()] for k, v in _ENV_PAIR.findall(raw_env)],
                   "working_directory": prog["directory"] or "/"}
            wd = prog["directory"]
        else:
            unit = self.case["unit"]
            if self.sd_read is None:
                self.sd_read = o.systemd_units(self.unitdir, [unit])[unit]
            u, self.sd_read = self.sd_read, None
            env = dict(a.split("=", 1) for a in u["environment"])
            for f in u["environment_files"]:
                path = self.real(f.lstrip("-"))
                if os.path.exists(path):
                    with open(path) as fh:
                        env.update(o.systemd_envfile(fh.read()))
            argv = o.systemd_exec_argv(u["argv"], env)
            wenv, args = o.gunicorn_invocation(argv)
            env.update(wenv)
            # discovery's argv: the words the process gets ($VAR expanded)
            svc = {"unit": unit, "manager": "systemd", "argv": argv, "exec_prefix": "",
                   "working_directory": u["working_directory"] or "/"}
            wd = u["working_directory"]
        cwd = self.real(wd) if wd and os.path.isdir(self.real(wd)) else self.tmp
        genv = {k: self.mapped(v) for k, v in env.items() if k in ("GUNICORN_CMD_ARGS", "PORT", "FORWARDED_ALLOW_IPS")}
        svc["gunicorn_cmd_args"] = env.get("GUNICORN_CMD_ARGS")
        return svc, [self.mapped(a) for a in args], genv, cwd

    def apply(self, changes):
        for ch in changes:
            if ch["kind"] == "dropin":
                d = os.path.join(self.unitdir, os.path.basename(os.path.dirname(ch["path"])))
                self.write(os.path.join(d, os.path.basename(ch["path"])), ch["content"])
            elif ch["kind"] == "envfile":
                path = self.real(ch["path"])
                lines = open(path).read().splitlines() if os.path.exists(path) else []
                hits = [n for n, line in enumerate(lines) if re.search(ch["regexp"], line)]
                if hits:
                    lines[hits[-1]] = ch["line"]
                else:
                    lines.append(ch["line"])
                self.write(path, "\n".join(lines) + "\n")
            elif ch["kind"] == "config":
                path = self.real(ch["path"])
                text = open(path).read() if os.path.exists(path) else ""
                block = "# BEGIN dualstack-rollout\n%s\n# END dualstack-rollout\n" % ch["block"]
                m = re.search(r"# BEGIN dualstack-rollout\n.*?# END dualstack-rollout\n", text, re.S)
                if m:
                    text = text[:m.start()] + block + text[m.end():]
                else:
                    text = text + ("" if text.endswith("\n") or not text else "\n") + block
                self.write(path, text)
            elif ch["kind"] == "supervisor":
                with open(ch["path"]) as f:
                    text = f.read()
                self.write(ch["path"], _ini_set(text, ch["section"], ch["option"], ch["value"]))
            else:
                raise AssertionError(ch)

    def snapshot(self):
        out = {}
        for base, _, names in os.walk(self.tmp):
            for n in names:
                with open(os.path.join(base, n), "rb") as f:
                    out[os.path.join(base, n)] = f.read()
        return out


def _supervisor_batch(states, paths):
    hosts = [states[p]["host"] for p in paths if states[p]["case"]["manager"] == "supervisor"]
    if hosts:
        read = supervisor_read([h.conf for h in hosts])
        for h in hosts:
            h.sup_read = read[h.conf]
    hosts = [states[p]["host"] for p in paths if states[p]["case"]["manager"] == "systemd"]
    if hosts:
        read = o.systemd_units_at([os.path.join(h.unitdir, h.case["unit"]) for h in hosts])
        for h in hosts:
            h.sd_read = read[h.case["unit"]]


def _oracle_version(version):
    return "19.9.0" if not version or str(version).startswith("19.") else "27.0.1"


def _refusal(case, host):
    """The rewrite must refuse this case, naming the unit and the reason."""
    unit = case["unit"]
    svc = {"unit": unit, "manager": "systemd", "exec_prefix": "", "reuse_port": False, "binds": ["127.0.0.1:8000"],
           "argv": o.systemd_units(host.unitdir, [unit])[unit]["argv"], "forwarded_allow_ips": None}
    svc.update(case["service"])
    plan = bind_plan(svc["binds"], gunicorn_version=svc.get("version"))
    with pytest.raises(g.RewriteError) as e:
        g.gunicorn_changes(svc, plan)
    assert case["expect"]["refused"] in str(e.value) and unit in str(e.value), str(e.value)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Every case read, planned, rewritten, applied and read again; gunicorn runs batched."""
    states = {}
    for path in CASES:
        st = states[path] = {"case": load(path), "error": None}
        try:
            st["host"] = Host(st["case"], tmp_path_factory.mktemp(os.path.basename(path)[:-4]))
        except Exception as e:  # reported by the case's own test
            st["error"] = e
    live = [p for p in CASES if states[p]["error"] is None and not states[p]["case"]["expect"].get("refused")]
    _supervisor_batch(states, live)
    for p in live:
        st = states[p]
        try:
            st["svc"], st["args"], st["env"], st["cwd"] = st["host"].read()
        except Exception as e:  # reported by the case's own test
            st["error"] = e
    live = [p for p in live if states[p]["error"] is None]

    def batch(key):
        for v in o.VERSIONS:
            res = o.gunicorn_read(v, [{"args": states[p][key + "args"], "env": states[p][key + "env"],
                                       "cwd": states[p][key + "cwd"]} for p in live])
            for p, r in zip(live, res):
                states[p].setdefault(key + "read", {})[v] = r

    batch("")
    for p in live:
        st = states[p]
        try:
            _plan_and_apply(st)
        except Exception as e:
            st["error"] = e
    live = [p for p in live if states[p]["error"] is None]
    _supervisor_batch(states, live)
    for p in live:
        st = states[p]
        try:
            _, st["after_args"], st["after_env"], st["after_cwd"] = st["host"].read()
        except Exception as e:
            st["error"] = e
    live = [p for p in live if states[p]["error"] is None]
    batch("after_")
    return states


def _plan_and_apply(st):
    case, svc = st["case"], st["svc"]
    spec = dict(case["service"])
    version = spec.get("version", "19.9.0")
    first = st["read"][_oracle_version(version)]
    assert first["ok"], "the original is not valid gunicorn %s: %s" % (first["version"], first.get("error"))
    fwd_source = spec.get("forwarded_allow_ips_source", "default")
    svc.update({"binds": first["bind"], "reuse_port": first["reuse_port"],
                "reuse_port_source": "cli" if first["reuse_port"] else "default",
                "forwarded_allow_ips": ",".join(first["forwarded_allow_ips"]) if fwd_source != "default" else None,
                "forwarded_allow_ips_source": fwd_source, "gunicorn_cmd_args_file": None, "config_file": None,
                "version": version})
    svc.update(spec)
    h = case["host"]
    st["plan"] = bind_plan(svc["binds"], bindv6only=h.get("bindv6only", 0), strategy=h.get("strategy", "separate"),
                           gunicorn_version=g._version(svc), reuse_port=svc["reuse_port"],
                           forwarded_allow_ips=svc["forwarded_allow_ips"], interfaces=h.get("interfaces"),
                           resolved=h.get("resolved"), ctx={"service": svc["unit"]})
    st["changes"] = g.gunicorn_changes(svc, st["plan"])
    host = st["host"]
    host.apply(st["changes"])
    once = host.snapshot()
    host.apply(st["changes"])
    st["idempotent"] = host.snapshot() == once


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-4] for p in CASES])
def test_rewrite_case(path, corpus):
    st = corpus[path]
    if st["error"] is not None:
        raise st["error"]
    case, exp = st["case"], st["case"]["expect"]
    if exp.get("refused"):
        _refusal(case, st["host"])
        return
    plan = st["plan"]
    if "binds" in exp:
        assert plan["binds"] == exp["binds"]
    if "kinds" in exp:
        assert [c["kind"] for c in st["changes"]] == exp["kinds"]
    assert st["idempotent"], "applying the changes twice changed the files again"
    judged = 0
    for v in o.VERSIONS:
        if not st["read"][v]["ok"]:
            continue  # the original is not valid for this version
        o.assert_effective(st["after_read"][v], plan, st["read"][v], "%s under gunicorn %s: %r %r"
                           % (os.path.basename(path), v, st["after_args"], st["after_env"]))
        judged += 1
    assert judged


def test_corpus_is_broad():
    cases = [load(p) for p in CASES]
    assert len(cases) >= 40
    units = [c["unit"] for c in cases]
    assert len(units) == len(set(units)), "unit names must differ: systemd reads all cases at once"
    kinds = set()
    for c in cases:
        kinds.add(c["manager"] + ":" + c["service"].get("bind_source", "?"))
    for want in ("systemd:cli", "systemd:env", "systemd:envfile", "systemd:config", "systemd:config_default",
                 "systemd:default", "systemd:port_env", "supervisor:cli", "supervisor:env", "supervisor:config"):
        assert want in kinds, want
