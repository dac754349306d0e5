import pytest

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_waves import AnsibleFilterError, needs_change, wave_of, waves

HOSTS = ["a%d" % i for i in range(1, 9)]


def test_canary_then_quarter_then_rest():
    assert waves(HOSTS, [1, "25%", "100%"]) == [["a1"], ["a2", "a3"], ["a4", "a5", "a6", "a7", "a8"]]


def test_last_item_repeats():
    assert waves(HOSTS, [1, 3]) == [["a1"], ["a2", "a3", "a4"], ["a5", "a6", "a7"], ["a8"]]


def test_small_percentage_is_at_least_one_host():
    assert waves(["a", "b"], ["10%"]) == [["a"], ["b"]]


def test_no_serial_is_one_wave():
    assert waves(HOSTS, None) == [HOSTS]


def test_wave_of():
    assert wave_of("a3", HOSTS, [1, "25%", "100%"]) == 2


@pytest.mark.parametrize("bad", [["x"], ["150%"], [-1], [True]])
def test_bad_serial(bad):
    with pytest.raises(AnsibleFilterError):
        waves(HOSTS, bad)


def test_empty_group():
    with pytest.raises(AnsibleFilterError) as e:
        waves([], [1])
    assert "app_hosts" in str(e.value)


def test_needs_change():
    done = {"net.ipv6.bindv6only": "0", "net.ipv6.conf.all.disable_ipv6": "0"}
    unchanged = [{"plan": {"changed": False}}]
    assert not needs_change(unchanged, {"changed": False}, done, True)
    assert needs_change(unchanged, {"changed": False}, done, False)
    assert needs_change(unchanged, {"changed": False}, dict(done, **{"net.ipv6.conf.lo.disable_ipv6": "1"}), True)
    assert needs_change(unchanged, {"changed": False}, done, True, "1")
    assert needs_change([{"plan": {"changed": True}}], {"changed": False}, done, True)
    assert needs_change(unchanged, {"changed": True}, done, True)


def test_waves_are_cut_by_ansible_cores_own_arithmetic():
    # 0 takes every host left, as ansible-core's serial does; a fraction of
    # a percent is a value ansible-core cannot read, so it is refused here.
    assert waves(HOSTS, [1, 0]) == [["a1"], HOSTS[1:]]
    with pytest.raises(Exception, match="ansible-core can read"):
        waves(HOSTS, ["12.5%"])
    # The same batches as the executor itself for a spread of serial lists.
    from ansible.utils.helpers import pct_to_int
    for serial in ([1, "25%", "100%"], ["10%"], [2, 3], ["34%", 1]):
        left, expect, k = list(HOSTS), [], 0
        while left:
            n = pct_to_int(serial[min(k, len(serial) - 1)], len(HOSTS))
            expect.append(left[:n])
            left, k = left[n:], k + 1
        assert waves(HOSTS, serial) == expect, serial
