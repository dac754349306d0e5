from dsr_sysctl import sysctl_overrides, sysctl_values, sysctl_winners

OURS = "/etc/sysctl.d/60-dualstack-rollout.conf"
CAT = """# /etc/sysctl.d/10-disable-ipv6.conf
net.ipv6.conf.all.disable_ipv6 = 1
net/ipv6/conf/default/disable_ipv6 = 1

# /etc/sysctl.d/60-dualstack-rollout.conf
# Managed
net.ipv6.conf.all.disable_ipv6 = 0
net.ipv6.conf.default.disable_ipv6 = 0
net.ipv6.conf.eth0.disable_ipv6 = 0
net.ipv6.bindv6only = 0

# /etc/sysctl.d/99-sysctl.conf
# /etc/sysctl.conf - Configuration file
-net.ipv6.conf.*.disable_ipv6 = 1
"""
KEYS = ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6",
        "net.ipv6.conf.eth0.disable_ipv6", "net.ipv6.bindv6only"]


def test_last_file_wins_with_globs_and_slashes():
    w = sysctl_winners(CAT, KEYS)
    assert w["net.ipv6.bindv6only"] == {"value": "0", "file": OURS}
    assert w["net.ipv6.conf.eth0.disable_ipv6"]["file"] == "/etc/sysctl.d/99-sysctl.conf"


def test_override_is_reported_by_name():
    w = sysctl_winners(CAT, KEYS)
    msgs = sysctl_overrides(w, {"net.ipv6.conf.all.disable_ipv6": 0, "net.ipv6.bindv6only": 0}, OURS)
    assert msgs == ["net.ipv6.conf.all.disable_ipv6 = 1 is set by /etc/sysctl.d/99-sysctl.conf, which is "
                    "applied after /etc/sysctl.d/60-dualstack-rollout.conf; remove it there or set 0"]


def test_earlier_file_does_not_win():
    text = CAT.split("# /etc/sysctl.d/99-sysctl.conf")[0]
    w = sysctl_winners(text, KEYS)
    assert sysctl_overrides(w, {k: 0 for k in KEYS}, OURS) == []


def test_slash_key_normalisation():
    w = sysctl_winners("# /etc/sysctl.d/a.conf\nnet/ipv6/conf/eth0.100/disable_ipv6 = 1\n",
                       ["net.ipv6.conf.eth0/100.disable_ipv6"])
    assert w["net.ipv6.conf.eth0/100.disable_ipv6"]["value"] == "1"


def test_values():
    assert sysctl_values("net.ipv6.bindv6only = 0\nnet.ipv6.conf.lo.disable_ipv6 = 1\n") == {
        "net.ipv6.bindv6only": "0", "net.ipv6.conf.lo.disable_ipv6": "1"}


def test_wanted_and_mismatch():
    from dsr_sysctl import sysctl_mismatch, sysctl_wanted
    import pytest
    w = sysctl_wanted(["eth0"], 1)
    assert w == {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.default.disable_ipv6": "0",
                 "net.ipv6.conf.lo.disable_ipv6": "0", "net.ipv6.conf.eth0.disable_ipv6": "0",
                 "net.ipv6.bindv6only": "1"}
    assert "net.ipv6.bindv6only" not in sysctl_wanted([], "keep")
    with pytest.raises(ValueError):
        sysctl_wanted([], "2")
    assert sysctl_mismatch({"a": "0", "b": "1"}, {"a": "0", "b": "0"}) == ["b is 0 after applying, expected 1"]
