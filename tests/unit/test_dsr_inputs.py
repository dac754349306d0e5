"""The bad-input table: each bad value, the message it gives, and that the
message names the host, the service where there is one, and the variable.
The role variables are checked against the roles' real argument specs."""
import pytest

from dsr_inputs import input_problems, role_specs

GROUPS = {"all": ["app1", "app2", "lb1"], "app_hosts": ["app1", "app2"], "lb": ["lb1"], "ungrouped": []}


def run(hostvars_of=None, groups=None, waves=(1, "100%")):
    hv = dict((h, {}) for members in (groups or GROUPS).values() for h in members)
    for h, v in (hostvars_of or {}).items():
        hv[h] = dict(v)
    return input_problems(hv, groups or GROUPS, "app_hosts", "lb", list(waves))


# (case, host vars, groups, waves, words every message must contain)
TABLE = [
    ("malformed address", {"app1": {"dsr_lb_address": "10.0.0.300"}}, None, None,
     ["host app1", "dsr_lb_address", "'10.0.0.300' is not an IPv4 address"]),
    ("IPv4 given as the IPv6 address", {"app2": {"dsr_lb_address6": "10.0.0.3"}}, None, None,
     ["host app2", "dsr_lb_address6", "not an IPv6 address"]),
    ("port out of range", {"app1": {"dsr_exposure_accept": [8000, 70000]}}, None, None,
     ["host app1", "dsr_exposure_accept", "70000 is not a TCP port (1-65535)"]),
    ("no-IPv6 acceptance not a boolean", {"app1": {"dsr_accept_no_global_ipv6": "yes"}}, None, None,
     ["host app1", "dsr_accept_no_global_ipv6 must be true or false", "'yes'"]),
    ("test hook not a boolean", {"app2": {"dsr_test_sabotage": 1}}, None, None,
     ["host app2", "dsr_test_sabotage must be true or false"]),
    ("lock time to live not seconds", {"app1": {"dsr_lock_ttl": "2h"}}, None, None,
     ["host app1", "dsr_lock_ttl '2h' is not a number of seconds above 0"]),
    ("change time-out not seconds", {"app1": {"dsr_change_timeout": 0}}, None, None,
     ["host app1", "dsr_change_timeout 0 is not a number of seconds above 0"]),
    ("unknown balancer program", {h: {"dsr_lb_backend": "traefik"} for h in ("app1", "app2", "lb1")}, None, None,
     ["host app1, app2, lb1", "dsr_lb_backend 'traefik' is not one of nginx, haproxy"]),
    ("balancer program differs between hosts", {"lb1": {"dsr_lb_backend": "haproxy"}}, None, None,
     ["dsr_lb_backend differs between hosts", "haproxy on lb1", "nginx on app1, app2", "group all"]),
    ("HAProxy without a balancer host", {h: {"dsr_lb_backend": "haproxy"} for h in ("app1", "app2")},
     {"all": ["app1", "app2"], "app_hosts": ["app1", "app2"], "ungrouped": []}, None,
     ["dsr_lb_backend is haproxy", "group lb (variable dsr_lb_group) names no balancer"]),
    ("HAProxy drain time-out not a number", {"app1": {"lb_haproxy__drain_timeout": "soon"}}, None, None,
     ["host app1", "lb_haproxy__drain_timeout"]),
    ("verify client not a host", {"app1": {"lb_nginx__verify_from": "client-typo"}}, None, None,
     ["host app1", "lb_nginx__verify_from 'client-typo' is not a host of this inventory"]),
    ("port list of the wrong type", {"app1": {"listener_verify__nginx_ports": ["http"]}}, None, None,
     ["host app1", "listener_verify__nginx_ports"]),
    ("unknown bindv6only policy", {"app2": {"ipv6_kernel__bindv6only": "maybe"}}, None, None,
     ["host app2", "ipv6_kernel__bindv6only", "keep, 0, 1", "maybe"]),
    ("unknown wildcard strategy", {"app1": {"gunicorn_dualstack__wildcard_strategy": "both"}}, None, None,
     ["host app1", "gunicorn_dualstack__wildcard_strategy", "separate, dual"]),
    ("empty inventory group", None, {"all": ["lb1"], "app_hosts": [], "lb": ["lb1"]}, None,
     ["inventory group app_hosts", "dsr_app_group", "empty"]),
    ("two balancers", None, {"all": ["app1", "lb1", "lb2"], "app_hosts": ["app1"], "lb": ["lb1", "lb2"]}, None,
     ["inventory group lb", "dsr_lb_group", "one balancer"]),
    ("malformed wave", None, None, [1, "half"], ["dsr_waves", "'half' is not a host count or a percentage"]),
    ("wave over 100%", None, None, [1, "150%"], ["dsr_waves", "between 0% and 100%"]),
    ("max fail percentage", {"app1": {"dsr_max_fail_percentage": 120}}, None, None,
     ["host app1", "dsr_max_fail_percentage", "0 to 100"]),
    ("unknown peer", {"app1": {"listener_verify__peer": "lb-typo"}}, None, None,
     ["host app1", "listener_verify__peer", "'lb-typo' is not a host of this inventory"]),
    ("balancer task file not an absolute path", {"app1": {"dsr_lb_external_drain": "lb/drain.yml"}},
     {"all": ["app1"], "app_hosts": ["app1"], "lb": []}, None,
     ["host app1", "dsr_lb_external_drain 'lb/drain.yml' is not the absolute path of a task file"]),
    ("balancer task file missing", {"app1": {"dsr_lb_external_enable": "/nonexistent/enable.yml"}},
     {"all": ["app1"], "app_hosts": ["app1"], "lb": []}, None,
     ["host app1", "dsr_lb_external_enable", "not the absolute path of a task file on the controller"]),
    ("balancer tasks beside an nginx balancer", {"app1": {"dsr_lb_external_verify": __file__}}, None, None,
     ["host app1", "dsr_lb_external_verify is set and group lb", "lb1", "not both"]),
    ("service name with a path", {"app1": {"gunicorn_dualstack__services": ["/etc/systemd/system/web.service"]}},
     None, None, ["host app1", "service '/etc/systemd/system/web.service'", "gunicorn_dualstack__services"]),
]


@pytest.mark.parametrize("case,hostvars_of,groups,waves,words", TABLE, ids=[t[0] for t in TABLE])
def test_bad_input_table(case, hostvars_of, groups, waves, words):
    problems = run(hostvars_of, groups, waves or (1, "100%"))
    assert len(problems) == 1, problems
    for w in words:
        assert w in problems[0], (w, problems[0])


def test_good_inventory_has_no_problems():
    good = {"app1": {"dsr_lb_address": "10.0.0.2", "dsr_lb_address6": "fd00::2", "dsr_exposure_accept": [8000],
                     "ipv6_kernel__bindv6only": "1", "listener_verify__peer": "lb1",
                     "gunicorn_dualstack__services": ["webapp.service", "api"]},
            "app2": {"dsr_exposure_accept": True, "dsr_max_fail_percentage": 0}}
    assert run(good) == []


def test_specs_come_from_every_role():
    specs = role_specs()
    for name in ("ipv6_kernel__bindv6only", "gunicorn_dualstack__wildcard_strategy", "lb_nginx__drain_seconds",
                 "listener_verify__peer", "nginx_dualstack__files", "snapshot__dir"):
        assert name in specs, name
