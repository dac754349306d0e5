from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_sysctl import sysctl_overrides, sysctl_values, sysctl_winners

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
    from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_sysctl import sysctl_mismatch, sysctl_wanted
    import pytest
    w = sysctl_wanted(["eth0"], 1)
    assert w == {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.default.disable_ipv6": "0",
                 "net.ipv6.conf.lo.disable_ipv6": "0", "net.ipv6.conf.eth0.disable_ipv6": "0",
                 "net.ipv6.bindv6only": "1"}
    assert "net.ipv6.bindv6only" not in sysctl_wanted([], "keep")
    with pytest.raises(ValueError):
        sysctl_wanted([], "2")
    assert sysctl_mismatch({"a": "0", "b": "1"}, {"a": "0", "b": "0"}) == ["b is 0 after applying, expected 1"]


# Hosts without `systemd-analyze cat-config` (systemd < 239: CentOS 7,
# Debian 9, Ubuntu 18.04): sysctl_d_command lists the same files itself.
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

from ansible_collections.dualstack.rollout.plugins.plugin_utils.dsr_sysctl import SYSCTL_D_DIRS, sysctl_d_command  # noqa: E402

TREE = {
    "usr/lib/sysctl.d/50-default.conf": "net.ipv6.conf.all.disable_ipv6 = 0\n",
    "lib/sysctl.d/50-default.conf": "net.ipv6.conf.all.disable_ipv6 = 1\n",   # hidden by /usr/lib
    "lib/sysctl.d/10-lib.conf": "net.ipv6.bindv6only = 1\n",
    "run/sysctl.d/60-dualstack-rollout.conf": "net.ipv6.bindv6only = 1\n",   # hidden by /etc
    "etc/sysctl.d/60-dualstack-rollout.conf": "net.ipv6.bindv6only = 0\nnet.ipv6.conf.all.disable_ipv6 = 0\n",
    "usr/lib/sysctl.d/30-masked.conf": "net.ipv6.bindv6only = 1\n",          # masked by /etc -> /dev/null
    "usr/local/lib/sysctl.d/70-local.conf": "net.ipv6.conf.lo.disable_ipv6 = 1",  # no final newline
    "usr/lib/sysctl.d/99-protect-links.conf": "fs.protected_symlinks = 1\n",
    "etc/sysctl.d/.hidden.conf": "net.ipv6.bindv6only = 1\n",                # skipped: hidden
    "etc/sysctl.d/README": "net.ipv6.bindv6only = 1\n",                      # skipped: not *.conf
    "etc/sysctl.d/55 with space.conf": "net.ipv6.conf.default.disable_ipv6 = 1\n",
    "etc/sysctl.conf": "# /etc/sysctl.conf - Configuration file for setting system variables\n"
                       "net.ipv6.conf.default.disable_ipv6 = 0\n",
}
LINKS = {"etc/sysctl.d/30-masked.conf": "/dev/null", "etc/sysctl.d/99-sysctl.conf": "../sysctl.conf"}
KEYS6 = ["net.ipv6.bindv6only", "net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6",
         "net.ipv6.conf.lo.disable_ipv6"]


@pytest.fixture
def root(tmp_path):
    for path, text in TREE.items():
        p = tmp_path / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for path, target in LINKS.items():
        os.symlink(target, str(tmp_path / path))
    (tmp_path / "usr/local/lib/sysctl.d/40-not-a-file.conf").mkdir()
    return str(tmp_path)


def run(argv, root, path=None):
    env = dict(os.environ, PATH=path or os.environ["PATH"])
    return subprocess.run(argv + ["sh", root], capture_output=True, text=True, env=env)


def tools_without_systemd_analyze(tmp_path):
    """A PATH with what the scripts use and no systemd-analyze."""
    d = tmp_path / "bin"
    d.mkdir()
    for tool in ("sh", "sort", "cat", "mktemp", "rm", "head", "tail"):
        os.symlink(shutil.which(tool), str(d / tool))
    return str(d)


def shim(tmp_path, stderr, rc):
    d = tmp_path / "shim"
    d.mkdir()
    p = d / "systemd-analyze"
    p.write_text("#!/bin/sh\necho %s >&2\nexit %d\n" % (stderr, rc))
    p.chmod(0o755)
    return str(d) + os.pathsep + os.environ["PATH"]


def test_fallback_follows_systemd_sysctl_order(root):
    r = run(sysctl_d_command("fallback"), root)
    assert r.returncode == 0, r.stderr
    headers = [l[2:] for l in r.stdout.splitlines() if l.startswith("# " + root)]
    assert headers == [root + p for p in (
        "/lib/sysctl.d/10-lib.conf", "/etc/sysctl.d/30-masked.conf", "/usr/lib/sysctl.d/50-default.conf",
        "/etc/sysctl.d/55 with space.conf", "/etc/sysctl.d/60-dualstack-rollout.conf",
        "/usr/local/lib/sysctl.d/70-local.conf", "/usr/lib/sysctl.d/99-protect-links.conf",
        "/etc/sysctl.d/99-sysctl.conf")]
    w = sysctl_winners(r.stdout, KEYS6)
    assert w["net.ipv6.bindv6only"] == {"value": "0", "file": root + "/etc/sysctl.d/60-dualstack-rollout.conf"}
    assert w["net.ipv6.conf.lo.disable_ipv6"]["file"] == root + "/usr/local/lib/sysctl.d/70-local.conf"
    # /etc/sysctl.conf comes in through the 99-sysctl.conf link, after everything else
    assert w["net.ipv6.conf.default.disable_ipv6"] == {"value": "0", "file": root + "/etc/sysctl.d/99-sysctl.conf"}
    msgs = sysctl_overrides(w, {"net.ipv6.conf.lo.disable_ipv6": 0}, root + "/etc/sysctl.d/60-dualstack-rollout.conf")
    assert "70-local.conf" in msgs[0]


def test_fallback_prints_what_cat_config_prints(root):
    """The same tree through systemd-analyze (>= 239) on this controller."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("no systemd-analyze on this machine")
    os.rmdir(os.path.join(root, "usr/local/lib/sysctl.d/40-not-a-file.conf"))  # cat-config fails on it
    real = subprocess.run(["systemd-analyze", "cat-config", "sysctl.d", "--root=" + root],
                          capture_output=True, text=True)
    if real.returncode != 0 or "/lib/sysctl.d/" not in real.stdout.replace("/usr/lib/sysctl.d/", ""):
        pytest.skip("this systemd-analyze has no --root for cat-config or no /lib/sysctl.d (merged /usr)")
    assert run(sysctl_d_command("fallback"), root).stdout == real.stdout
    assert run(sysctl_d_command("auto"), root).stdout == real.stdout


@pytest.mark.parametrize("message", [
    "Unknown operation 'cat-config'.",                      # systemd 219 (CentOS 7), 232 (Debian 9)
    "Unknown operation cat-config.",                        # systemd 237 (Ubuntu 18.04)
    "Failed to create bus connection: No such file or directory",  # < 239 without a running systemd
])
def test_auto_falls_back_when_cat_config_is_missing(root, tmp_path, message):
    r = run(sysctl_d_command("auto"), root, shim(tmp_path, '"%s"' % message, 1))
    assert r.returncode == 0
    assert r.stdout == run(sysctl_d_command("fallback"), root).stdout
    assert "systemd-sysctl's order" in r.stderr and message.split(" ")[0] in r.stderr


def test_auto_falls_back_without_systemd_analyze(root, tmp_path):
    r = run(sysctl_d_command("auto"), root, tools_without_systemd_analyze(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == run(sysctl_d_command("fallback"), root).stdout
    assert "no systemd-analyze" in r.stderr


def test_auto_reports_other_failures(root, tmp_path):
    r = run(sysctl_d_command("auto"), root, shim(tmp_path, '"Failed to read: Permission denied"', 2))
    assert r.returncode == 2 and "Permission denied" in r.stderr and r.stdout == ""


def test_directories_are_systemds():
    assert SYSCTL_D_DIRS == ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d",
                             "/lib/sysctl.d")
    with pytest.raises(ValueError):
        sysctl_d_command("procps")


def test_header_with_spaces_and_sysctl_conf_comment():
    text = ("# /etc/sysctl.d/55 with space.conf\nnet.ipv6.bindv6only = 1\n\n"
            "# /etc/sysctl.d/99-sysctl.conf\n# /etc/sysctl.conf - Configuration file for setting system variables\n"
            "net.ipv6.conf.all.disable_ipv6 = 1\n")
    w = sysctl_winners(text, KEYS6)
    assert w["net.ipv6.bindv6only"]["file"] == "/etc/sysctl.d/55 with space.conf"
    assert w["net.ipv6.conf.all.disable_ipv6"]["file"] == "/etc/sysctl.d/99-sysctl.conf"
