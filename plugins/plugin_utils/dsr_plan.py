"""One plan per host, built once in preflight and read by everything after.

The plan is what preflight decided about a host, in one place: the services
with their run states and binds, the kernel values before and after, the
nginx edits, the ports to verify, and the recipe to put the host back. The
rollout stores it in the snapshot's manifest next to `before` (the first
run's plan is kept, as `before` is). The migration, the restore, rollback.yml
and audit.yml read its fields instead of working them out again.

Schema (version 1), every key always present:

  version        1
  host           inventory name
  needs_change   bool: anything left to change (else the host is not drained)
  services[]     one per gunicorn service found:
    unit, name, manager      systemd unit or supervisor:PROGRAM
    active, enabled, state   its run state when preflight read it
    binds_now                what its configuration binds today
    binds_target             what it will bind (binds_now when stopped)
    listens                  [{address, port, v6only}] it will listen on
                             ([] when stopped: it is left alone)
    reuse_port, forwarded_allow_ips   the two options the change may set
    written[]                {kind, path} of every file its change writes
                             (the same bytes again when nothing changes;
                             [] for a stopped service: it is left alone)
    changed                  whether anything about it changes
  kernel         {before: {key: value}, after: {key: value},
                  file: the sysctl.d file the kernel step writes}
  nginx          {active, changed, files: [paths the edit writes],
                  listens: [{file, line, address, port, v6only, tls}] added}
  verify         {expected: [{address, port, v6only}],
                  nginx_ports: HTTP ports asked over IPv4 and IPv6,
                  public_ports: gunicorn ports asked over IPv4 and IPv6,
                  private_ports: gunicorn loopback ports no peer may reach}
  restore        {files: every path the snapshot keeps,
                  services: [{unit, name, manager, restart, active,
                              enabled, state}] as found before the first
                              run's change,
                  kernel: the values then, put back at run time}
"""
from __future__ import annotations


from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_contract import kernel_restore, run_state_problems
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_ss import verify_targets
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_sysctl import sysctl_wanted
from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_waves import needs_change

PLAN_VERSION = 1


def _service(item, recipes):
    svc, plan = item["service"], item["plan"]
    r = recipes.get(svc["unit"], {})
    changed = bool(plan.get("changed"))
    return {
        "unit": svc["unit"],
        "name": svc.get("name") or svc["unit"],
        "manager": svc.get("manager", "systemd"),
        "active": bool(r.get("active", svc.get("active"))),
        "enabled": r.get("enabled"),
        "state": r.get("state", "unknown"),
        "binds_now": list(svc.get("binds") or []),
        "binds_target": list(plan["binds"]),
        "listens": [dict((k, l.get(k)) for k in ("address", "port", "v6only")) for l in plan.get("listeners") or []],
        "reuse_port": bool(plan.get("reuse_port", svc.get("reuse_port"))),
        "forwarded_allow_ips": plan.get("forwarded_allow_ips", svc.get("forwarded_allow_ips")),
        "written": [{"kind": c["kind"], "path": c["path"]} for c in item.get("changes") or []],
        "changed": changed,
    }


def host_plan(gunicorn_plans, nginx_plan, before, interfaces, sysctl_file, sysctl_file_exists,
              bindv6only="keep", host=None, nginx_active=True, found=None, original=None):
    """The host's plan (schema above) from preflight's parts.

    gunicorn_plans  the running services' plans (dsr_gunicorn_plans), after
                    the trust step amended them
    nginx_plan      nginx_dualstack's plan (empty for a stopped nginx)
    before          the host as it was (dsr_before: listeners, kernel,
                    services with run states)
    interfaces      the interfaces whose IPv6 switch the kernel step sets
    found           every gunicorn service found, stopped ones included
                    (listed with nothing written: they are left alone)
    original        what an earlier run's snapshot recorded before its first
                    change (None on a first run): the restore puts the host
                    back to that, not to the half-done host of this run
    """
    before = before or {}
    nginx_plan = nginx_plan or {}
    recipes = dict((r["unit"], r) for r in before.get("services") or [])
    kernel_before = dict(before.get("kernel") or {})
    wanted = sysctl_wanted(interfaces or [], bindv6only)
    kernel_after = dict(kernel_before)
    kernel_after.update(wanted)
    planned = set(p["service"]["unit"] for p in gunicorn_plans or [])
    services = [_service(p, recipes) for p in gunicorn_plans or []] + [
        _service({"service": svc, "plan": {"binds": svc.get("binds") or [], "changed": False}, "changes": []},
                 recipes)
        for svc in found or [] if svc["unit"] not in planned]
    nginx_files = sorted(k for k, v in (nginx_plan.get("files") or {}).items() if v.get("changed"))
    written = sorted(set(w["path"] for s in services for w in s["written"]))
    return {
        "version": PLAN_VERSION,
        "host": host,
        "needs_change": needs_change(gunicorn_plans, nginx_plan, kernel_before, sysctl_file_exists, bindv6only),
        "services": services,
        "kernel": {"before": kernel_before, "after": kernel_after, "file": sysctl_file},
        "nginx": {
            "active": bool(nginx_active),
            "changed": bool(nginx_plan.get("changed")),
            "files": nginx_files,
            "listens": [dict((k, l.get(k)) for k in ("file", "line", "address", "port", "v6only", "tls"))
                        for l in nginx_plan.get("listens") or []],
        },
        "verify": verify_targets(gunicorn_plans, nginx_plan),
        "restore": {
            "files": [sysctl_file] + sorted(set(written + nginx_files) - set([sysctl_file])),
            "services": list((original or before).get("services") or []),
            "kernel": dict((original or before).get("kernel") or {}),
        },
    }


def plan_of(manifest, fallback=None):
    """The plan a snapshot's manifest holds (`data.plan`), else `fallback`
    (a snapshot taken by a release before the plan was stored)."""
    data = (manifest or {}).get("data") or {}
    plan = data.get("plan")
    return plan if isinstance(plan, dict) and plan.get("version") == PLAN_VERSION else fallback


def restore_recipe(manifest):
    """What putting the host back needs, from a snapshot's manifest: the
    plan's `restore` (services with their run states, kernel values), or
    for a snapshot taken before plans were stored, the same from `before`."""
    before = ((manifest or {}).get("data") or {}).get("before") or {}
    plan = plan_of(manifest)
    if plan is not None:
        return {"services": plan["restore"]["services"], "kernel": plan["restore"]["kernel"]}
    return {"services": before.get("services") or [], "kernel": before.get("kernel") or {}}


def rollback_needed(manifest, state, files_differ):
    """Whether rollback.yml has anything to put back on a host: a file that
    differs from the snapshot, a kernel value, a listener, or a run state
    that is not what the snapshot recorded. A host already as before is
    neither drained nor restarted (a second rollback changes nothing)."""
    if files_differ:
        return True
    before = ((manifest or {}).get("data") or {}).get("before") or {}
    recipe = restore_recipe(manifest)
    state = state or {}
    return bool(kernel_restore(recipe["kernel"], state.get("kernel"))["writes"]
                or state.get("summary") != (before.get("listeners") or [])
                or run_state_problems(recipe["services"], state.get("run_states")))
