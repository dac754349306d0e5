"""The host plan (plugins/plugin_utils/dsr_plan.py), built from the real planners'
output: gunicorn's service plans, nginx's plan, the run-state recipes."""
import json

import pytest

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_contract import service_recipe, with_run_states
from dsr_gunicorn import service_plans
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_nginx import nginx_plan
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_plan import PLAN_VERSION, host_plan, plan_of, restore_recipe, rollback_needed
from test_dsr_gunicorn import svc_of
from test_dsr_nginx import SITE

SYSCTL = "/etc/sysctl.d/60-dualstack-rollout.conf"
SITE_FILE = "/etc/nginx/sites-enabled/app"
KERNEL_OFF = {"net.ipv6.bindv6only": "0", "net.ipv6.conf.all.disable_ipv6": "1",
              "net.ipv6.conf.default.disable_ipv6": "1", "net.ipv6.conf.lo.disable_ipv6": "1",
              "net.ipv6.conf.eth0.disable_ipv6": "1", "net.ipv6.conf.eth1.disable_ipv6": "1"}
KERNEL_ON = dict((k, "0") for k in KERNEL_OFF)


def services():
    web = svc_of(["/srv/web/venv/bin/gunicorn", "-b", "0.0.0.0:8000", "app:app"], ["0.0.0.0:8000"], active=True)
    admin = svc_of(["/srv/admin/venv/bin/gunicorn", "-b", "127.0.0.1:9000", "admin:app"], ["127.0.0.1:9000"],
                   unit="admin.service", active=True)
    old = svc_of(["/srv/old/venv/bin/gunicorn", "-b", "0.0.0.0:8100", "old:app"], ["0.0.0.0:8100"],
                 unit="old.service", active=False)
    return [web, admin, old]


def before(found, kernel):
    states = [{"owner": s["unit"], "manager": "systemd", "active": s["active"], "enabled": s["active"],
               "state": "active" if s["active"] else "inactive"} for s in found]
    states.append({"owner": "nginx.service", "manager": "systemd", "active": True, "enabled": True, "state": "active"})
    recipes = [service_recipe(s) for s in found] + [
        {"unit": "nginx.service", "name": "nginx", "manager": "systemd", "restart": "restart"}]
    return {"listeners": ["0.0.0.0:80 nginx.service", "0.0.0.0:8000 web.service", "127.0.0.1:9000 admin.service"],
            "kernel": kernel, "answered4": [], "services": with_run_states(recipes, states)}


def first_run():
    found = services()
    plans = service_plans([s for s in found if s["active"]], 0, "separate", [], [], "app1")
    nginx = nginx_plan({SITE_FILE: SITE})
    return host_plan(plans, nginx, before(found, KERNEL_OFF), ["eth0"], SYSCTL, False, "keep", "app1", True, found)


def test_first_run_plan_holds_every_part():
    plan = first_run()
    assert plan["version"] == PLAN_VERSION and plan["host"] == "app1" and plan["needs_change"] is True
    by = dict((s["unit"], s) for s in plan["services"])
    assert sorted(by) == ["admin.service", "old.service", "web.service"]
    web = by["web.service"]
    assert (web["active"], web["enabled"], web["state"], web["manager"]) == (True, True, "active", "systemd")
    assert web["binds_now"] == ["0.0.0.0:8000"] and web["binds_target"] == ["0.0.0.0:8000", "[::]:8000"]
    assert web["written"] == [{"kind": "dropin", "path": "/etc/systemd/system/web.service.d/99-dualstack-rollout.conf"}]
    assert web["changed"] is True
    # loopback gains its IPv6 twin and stays private
    assert by["admin.service"]["binds_target"] == ["127.0.0.1:9000", "[::1]:9000"]
    # a stopped service is listed, left alone: nothing written, binds as they are
    old = by["old.service"]
    assert (old["active"], old["written"], old["changed"]) == (False, [], False)
    assert old["binds_target"] == old["binds_now"] == ["0.0.0.0:8100"]


def test_kernel_after_switches_only_what_the_kernel_step_writes():
    plan = first_run()
    assert plan["kernel"]["before"] == KERNEL_OFF and plan["kernel"]["file"] == SYSCTL
    after = plan["kernel"]["after"]
    for k in ("all", "default", "lo", "eth0"):
        assert after["net.ipv6.conf.%s.disable_ipv6" % k] == "0"
    # eth1 carries no IPv4 here: the step leaves it as it was
    assert after["net.ipv6.conf.eth1.disable_ipv6"] == "1"
    assert after["net.ipv6.bindv6only"] == "0"


def test_nginx_edits_and_ports_to_verify():
    plan = first_run()
    assert plan["nginx"]["changed"] is True and plan["nginx"]["files"] == [SITE_FILE]
    assert [(l["file"], l["address"], l["port"]) for l in plan["nginx"]["listens"]] == [(SITE_FILE, "::", 80)]
    v = plan["verify"]
    assert (v["nginx_ports"], v["public_ports"], v["private_ports"]) == ([80], [8000], [9000])
    assert [(e["address"], e["port"]) for e in v["expected"]] == [
        ("0.0.0.0", 8000), ("::", 8000), ("127.0.0.1", 9000), ("::1", 9000), ("::", 80)]


def test_restore_recipe_names_every_file_and_each_run_state():
    plan = first_run()
    files = plan["restore"]["files"]
    assert files[0] == SYSCTL and SITE_FILE in files
    assert "/etc/systemd/system/web.service.d/99-dualstack-rollout.conf" in files
    assert len(files) == len(set(files))
    states = dict((s["unit"], s["active"]) for s in plan["restore"]["services"])
    assert states == {"web.service": True, "admin.service": True, "old.service": False, "nginx.service": True}
    assert plan["restore"]["kernel"] == KERNEL_OFF


def test_the_plan_survives_the_manifest():
    plan = first_run()
    assert json.loads(json.dumps(plan)) == plan


def test_a_second_run_has_nothing_to_change():
    found = [svc_of(["/srv/web/venv/bin/gunicorn", "-b", "0.0.0.0:8000", "-b", "[::]:8000", "--reuse-port",
                     "--forwarded-allow-ips", "127.0.0.1,::1", "app:app"],
                    ["0.0.0.0:8000", "[::]:8000"], active=True, reuse_port=True, reuse_port_source="cli",
                    forwarded_allow_ips="127.0.0.1,::1", forwarded_allow_ips_source="cli")]
    plans = service_plans(found, 0, "separate", [], [], "app1")
    nginx = nginx_plan({SITE_FILE: nginx_plan({SITE_FILE: SITE})["files"][SITE_FILE]["content"]})
    plan = host_plan(plans, nginx, before(found, KERNEL_ON), ["eth0"], SYSCTL, True, "keep", "app1", True, found)
    assert plan["needs_change"] is False and plan["nginx"]["changed"] is False
    assert [s["changed"] for s in plan["services"]] == [False]
    # without its sysctl file the host still needs the kernel step
    plan = host_plan(plans, nginx, before(found, KERNEL_ON), ["eth0"], SYSCTL, False, "keep", "app1", True, found)
    assert plan["needs_change"] is True


def manifest(plan=None, before_=None):
    data = {"before": before_ if before_ is not None else before(services(), KERNEL_OFF)}
    if plan is not None:
        data["plan"] = plan
    return {"version": 1, "files": {}, "data": data}


def test_plan_of_reads_only_a_plan_of_this_schema():
    plan = first_run()
    assert plan_of(manifest(plan)) == plan
    assert plan_of(manifest()) is None
    assert plan_of(manifest(dict(plan, version=PLAN_VERSION + 1)), "fallback") == "fallback"
    assert plan_of(None) is None


def test_restore_recipe_comes_from_the_plan_or_from_an_old_snapshot_s_before():
    plan = first_run()
    plan["restore"]["kernel"] = {"net.ipv6.conf.all.disable_ipv6": "1"}
    assert restore_recipe(manifest(plan))["kernel"] == {"net.ipv6.conf.all.disable_ipv6": "1"}
    old = restore_recipe(manifest())
    assert old["kernel"] == KERNEL_OFF and [s["unit"] for s in old["services"]][:1] == ["web.service"]


def state_as_before(b):
    return {"summary": list(b["listeners"]), "kernel": dict(b["kernel"]),
            "run_states": [dict(owner=s["unit"], manager=s["manager"], active=s["active"], enabled=s["enabled"],
                                state=s["state"]) for s in b["services"]]}


@pytest.mark.parametrize("change, needed", [
    (lambda st: None, False),
    (lambda st: st["kernel"].update({"net.ipv6.conf.eth0.disable_ipv6": "0"}), True),
    (lambda st: st["summary"].append("[::]:8000 web.service"), True),
    (lambda st: st["run_states"][0].update(active=False, state="inactive"), True),
    (lambda st: st["run_states"][2].update(enabled=True), True),
])
def test_rollback_needed_when_anything_differs_from_the_snapshot(change, needed):
    m = manifest(first_run())
    st = state_as_before(m["data"]["before"])
    change(st)
    assert rollback_needed(m, st, False) is needed
    assert rollback_needed(m, st, True) is True


def test_a_rerun_restores_to_the_first_run_s_before_not_to_its_own():
    """A host an earlier run left half-done (kernel switched on, a service
    stopped since): the restore recipe is what the first run recorded."""
    found = services()
    plans = service_plans([s for s in found if s["active"]], 0, "separate", [], [], "app1")
    original = before(found, KERNEL_OFF)
    now = before(found, KERNEL_ON)
    plan = host_plan(plans, nginx_plan({SITE_FILE: SITE}), now, ["eth0"], SYSCTL, True, "keep", "app1", True,
                     found, original)
    assert plan["kernel"]["before"] == KERNEL_ON  # this run's starting point
    assert plan["restore"]["kernel"] == KERNEL_OFF  # the host as it was
    assert plan["restore"]["services"] == original["services"]
