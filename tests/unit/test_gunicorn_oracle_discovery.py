"""Discovery's own corpus (tests/corpus/services/), discovered, planned and rewritten end to end.

Every service gunicorn_services finds in that corpus must get a rewrite (no
crash, no refusal), and every rewritten ExecStart is read back by systemd
(systemd-analyze) and then by gunicorn 19.9.0 and 27.0.1: the effective
bind list, reuse_port and forwarded_allow_ips must be the plan, with every
other setting as before. Services whose gunicorn reads a config file are
judged by the rewrite corpus instead (their files live under the case's
root, not at the paths gunicorn would open).
"""
import os

import pytest

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_binds import bind_plan
import dsr_gunicorn as g
import test_gunicorn_oracle as o
import test_gunicorn_services_corpus as tc


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory):
    out = []
    for name in tc.case_names():
        root = str(tmp_path_factory.mktemp(name) / "host")
        os.makedirs(root)
        _, _, services, _ = tc.run_case(name, root)
        for svc in services:
            plan = bind_plan(svc["binds"], bindv6only=1, gunicorn_version=g._version(svc),
                             reuse_port=svc.get("reuse_port"), forwarded_allow_ips=svc.get("forwarded_allow_ips"),
                             resolved={"localhost": "127.0.0.1"}, ctx={"service": svc["unit"]})
            out.append((name, svc, plan, g.gunicorn_changes(svc, plan)))
    return out


def test_every_discovered_service_gets_a_rewrite(rewritten):
    assert len(rewritten) >= 40
    for name, svc, plan, changes in rewritten:
        assert changes and all(c["path"] for c in changes), (name, svc["unit"])


def test_rewritten_exec_starts_mean_the_plan(rewritten, tmp_path):
    picked = []
    for name, svc, plan, changes in rewritten:
        ch = changes[0]
        if svc["manager"] != "systemd" or [c["kind"] for c in changes] != ["dropin"] \
                or "ExecStart=" not in ch["content"] or svc.get("config_file") or svc.get("gunicorn_index") is None:
            continue
        unit = "d%03d.service" % len(picked)
        # the drop-in alone, as a unit: its ExecStart and Environment lines
        (tmp_path / unit).write_text(ch["content"].replace("\nExecStart=-", "\nExecStart=")
                                     .replace("\nExecStart=+", "\nExecStart="))
        picked.append((unit, name, svc, plan))
    assert len(picked) >= 20
    units = o.systemd_units(str(tmp_path), [u for u, _, _, _ in picked])
    before_jobs, after_jobs = [], []
    for unit, name, svc, plan in picked:
        env = {"GUNICORN_CMD_ARGS": svc.get("gunicorn_cmd_args"), "PORT": svc.get("port_env"),
               "FORWARDED_ALLOW_IPS": svc.get("forwarded_allow_ips")
               if svc.get("forwarded_allow_ips_source") == "environment" else None}
        env = {k: v for k, v in env.items() if v is not None}
        before_jobs.append({"args": svc["argv"][svc["gunicorn_index"] + 1:], "env": env})
        wenv, args = o.gunicorn_invocation(o.systemd_exec_argv(units[unit]["argv"], {}))
        after_env = dict(env)
        after_env.update(dict(a.split("=", 1) for a in units[unit]["environment"]))
        after_env.update(wenv)
        after_env = {k: v for k, v in after_env.items() if k in ("GUNICORN_CMD_ARGS", "PORT", "FORWARDED_ALLOW_IPS")}
        after_jobs.append({"args": args, "env": after_env})
    judged = 0
    for v in o.VERSIONS:
        before = o.gunicorn_read(v, before_jobs)
        after = o.gunicorn_read(v, after_jobs)
        for (unit, name, svc, plan), b, a in zip(picked, before, after):
            if b["ok"]:
                o.assert_effective(a, plan, b, "%s %s under %s" % (name, svc["unit"], v))
                judged += 1
    assert judged >= 20
