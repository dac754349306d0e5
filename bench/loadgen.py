#!/usr/bin/env python3
"""Bounded HTTP load against one or more URLs, alternating between them.

Runs until the stop file appears or --max-seconds pass, never more than
--max-requests requests, at most --rate requests per second per URL. Prints
one JSON object: requests sent, failed (per URL), p50/p99 latency in ms.

A URL that has never answered yet (the balancer's IPv6 address before the
rollout makes the balancer listen on IPv6) is "not up": its refusals are
counted apart (not_up), and `failed` counts only failures after the URL
first answered, i.e. requests a working service dropped.

--slow URL (repeatable) adds requests that take a while (the sandbox app's
/slow?s=N): --slow-concurrency of them per URL always in flight, each with
a time-out of N + 10 s, counted apart (slow_sent, slow_failed), so that a
drain that does not wait for requests in flight shows as slow failures.
Python 3 standard library only, so it runs inside a test host.
"""
import argparse
import json
import os
import threading
import time
import urllib.request


def worker(url, args, stats, lock, stop):
    interval = 1.0 / args.rate
    while not stop.is_set():
        t0 = time.monotonic()
        ok = False
        try:
            with urllib.request.urlopen(url, timeout=args.timeout) as r:
                r.read()
                ok = r.status == 200
        except Exception:  # noqa: BLE001 - every failure counts the same
            ok = False
        dt = time.monotonic() - t0
        with lock:
            count(stats[url], ok)
            if ok:
                stats[url]["lat"].append(dt)
            if sum(v["sent"] for v in stats.values()) >= args.max_requests:
                stop.set()
        time.sleep(max(0.0, interval - dt))


def count(s, ok):
    """One request's outcome in its URL's stats: a failure before the URL
    first answered is "not up", after it "failed"."""
    s["sent"] += 1
    if ok:
        s["up"] = True
    elif s["up"]:
        s["failed"] += 1
    else:
        s["not_up"] += 1


def slow_worker(url, args, slow, lock, stop):
    """One slow request after another on `url` until stop; every one that
    does not end in a 200 (cut, reset, timed out) after the URL first
    answered is a slow failure."""
    while not stop.is_set():
        ok = False
        try:
            with urllib.request.urlopen(url, timeout=args.slow_timeout) as r:
                r.read()
                ok = r.status == 200
        except Exception:  # noqa: BLE001 - every failure counts the same
            ok = False
        with lock:
            count(slow[url], ok)
        if not ok:
            time.sleep(0.5)


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return round(1000 * v[min(len(v) - 1, int(p / 100.0 * len(v)))], 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--max-requests", type=int, default=200000)
    ap.add_argument("--stop-file", default="/tmp/loadgen.stop")
    ap.add_argument("--out", default="/tmp/loadgen.json")
    ap.add_argument("--slow", action="append", default=[], help="a slow URL (repeatable)")
    ap.add_argument("--slow-concurrency", type=int, default=2)
    ap.add_argument("--slow-timeout", type=float, default=20.0)
    args = ap.parse_args()
    if os.path.exists(args.stop_file):
        os.remove(args.stop_file)
    stats = {u: {"sent": 0, "failed": 0, "not_up": 0, "up": False, "lat": []} for u in args.urls}
    lock, stop = threading.Lock(), threading.Event()
    slow = {u: {"sent": 0, "failed": 0, "not_up": 0, "up": False} for u in args.slow}
    threads = [threading.Thread(target=worker, args=(u, args, stats, lock, stop), daemon=True) for u in args.urls]
    threads += [threading.Thread(target=slow_worker, args=(u, args, slow, lock, stop), daemon=True)
                for u in args.slow for _ in range(args.slow_concurrency)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + args.max_seconds
    while not stop.is_set() and time.monotonic() < deadline and not os.path.exists(args.stop_file):
        time.sleep(0.2)
    stop.set()
    # Slow requests in flight are let finish (they count once they end).
    for t in threads:
        t.join(timeout=max(args.timeout, args.slow_timeout if args.slow else 0) + 1)
    lat = [x for s in stats.values() for x in s["lat"]]
    result = {
        "sent": sum(s["sent"] for s in stats.values()),
        "failed": sum(s["failed"] for s in stats.values()),
        "not_up": sum(s["not_up"] for s in stats.values()),
        "per_url": {u: {"sent": s["sent"], "failed": s["failed"], "not_up": s["not_up"]} for u, s in stats.items()},
        "slow_sent": sum(s["sent"] for s in slow.values()),
        "slow_failed": sum(s["failed"] for s in slow.values()),
        "slow_per_url": {u: {"sent": s["sent"], "failed": s["failed"], "not_up": s["not_up"]} for u, s in slow.items()},
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
