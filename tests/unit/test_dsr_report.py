from dsr_report import journal_entry, preflight_failures, preflight_table

HV = {"a": {"dsr_preflight": {"ok": True, "services": ["webapp.service"], "binds": "0.0.0.0:8000 [::]:8000"}},
      "b": {"dsr_preflight": {"ok": False, "reason": "host b, service x.service: bind ... malformed"}},
      "c": {}}


def test_failures_include_unreachable():
    assert preflight_failures(["a", "b", "c"], HV) == [
        "b: host b, service x.service: bind ... malformed", "c: unreachable or not checked"]


def test_table_has_a_line_per_host():
    t = preflight_table(["a", "b", "c"], HV)
    assert len(t) == 4 and "webapp.service -> 0.0.0.0:8000 [::]:8000" in t[1] and "NO" in t[2] and "NO" in t[3]


def test_journal_entry_step_seconds():
    e = journal_entry("a", 2, {"start": "2026-01-01T00:00:00+00:00", "kernel_done": "2026-01-01T00:00:01.5+00:00",
                               "end": "2026-01-01T00:00:04+00:00"}, ["x"], ["y"], False, "")
    assert e["wave"] == 2 and e["result"] == "migrated"
    assert e["step_seconds"] == {"start..kernel_done": 1.5, "kernel_done..end": 2.5}
    assert e["total_seconds"] == 4.0
