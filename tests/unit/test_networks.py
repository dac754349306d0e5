"""Every Docker network the project creates (the Molecule scenarios, the
sandbox fleet of `make demo`, the fleet-size benchmark) has subnets of its
own, so a sandbox or a benchmark left running does not stop a scenario
("Pool overlaps with other one on this address space")."""
import glob
import importlib.util
import ipaddress
import os
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def networks():
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "molecule", "*", "molecule.yml"))):
        data = yaml.safe_load(open(path))
        seen = set()
        for platform in data.get("platforms", []):
            for net in platform.get("docker_networks", []):
                if net["name"] in seen:
                    continue
                seen.add(net["name"])
                out.append((os.path.relpath(path, ROOT) + ":" + net["name"],
                            [c["subnet"] for c in net.get("ipam_config", [])]))
    sandbox = yaml.safe_load(open(os.path.join(ROOT, "inventory", "sandbox", "group_vars", "all.yml")))
    out.append(("inventory/sandbox", [sandbox["sandbox_subnet4"], sandbox["sandbox_subnet6"]]))
    spec = importlib.util.spec_from_file_location("fleet_scale", os.path.join(ROOT, "bench", "fleet_scale.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with tempfile.TemporaryDirectory() as d:
        inv = yaml.safe_load(open(bench.inventory(2, d)))
    v = inv["all"]["vars"]
    out.append(("bench/fleet_scale.py", [v["sandbox_subnet4"], v["sandbox_subnet6"]]))
    return out


def test_every_network_has_subnets_of_its_own():
    nets = networks()
    assert len(nets) >= 8 and all(len(s) == 2 for _, s in nets), nets
    clashes = []
    for i, (a, sa) in enumerate(nets):
        for b, sb in nets[i + 1:]:
            for x in sa:
                for y in sb:
                    nx, ny = ipaddress.ip_network(x), ipaddress.ip_network(y)
                    if nx.version == ny.version and nx.overlaps(ny):
                        clashes.append("%s %s overlaps %s %s" % (a, x, b, y))
    assert clashes == []
