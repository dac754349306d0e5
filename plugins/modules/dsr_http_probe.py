#!/usr/bin/python
# -*- coding: utf-8 -*-
# Runs on the managed host: Python 2.7 and 3.6+.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: dsr_http_probe
short_description: Send several real HTTP requests from this host and judge the answers
description:
  - Requests each URL in turn (IPv4 or IPv6 literals, C(http://[::1]:80/)) and
    compares the outcome with what the caller expects - a 200 answer, a 200
    answer whose JSON body holds given keys and values, or no answer at all
    (for a service that must stay private).
  - One task instead of a looped M(ansible.builtin.uri), so one connection round
    trip per host instead of one per request.
  - Never fails on an unexpected answer itself; it returns C(problems), one
    line per request that did not answer as expected, so the play can name the
    host in its own message. Never changes anything; runs in check mode.
options:
  requests:
    description:
      - The requests. Each has C(url), and optionally C(expect) (C(answer), the
        default, or C(no_answer)) and C(json) (a dict the answer's JSON body
        must contain).
    type: list
    elements: dict
    required: true
  timeout:
    description: Seconds to wait for each answer.
    type: int
    default: 5
author: dualstack-rollout contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Request through nginx over IPv4 and IPv6 loopback
  dsr_http_probe:
    requests:
      - {url: "http://127.0.0.1:80/", json: {scheme: https}}
      - {url: "http://[::1]:80/"}
      - {url: "http://192.0.2.10:8001/", expect: no_answer}
  register: probe
"""

RETURN = r"""
results:
  description: Per request C(url), C(status) (-1 when nothing answered), C(json) when the body was JSON, C(error), C(ok).
  returned: always
  type: list
  elements: dict
problems:
  description: One line per request whose outcome was not the expected one.
  returned: always
  type: list
  elements: str
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError  # urllib.error's, urllib2's on 2.7
from ansible.module_utils.urls import open_url

import socket


def fetch(url, timeout):
    """(status, body text, error): status -1 when nothing answered."""
    try:
        resp = open_url(url, timeout=timeout, follow_redirects="none", validate_certs=False,
                        use_proxy=False)
        return resp.getcode(), resp.read().decode("utf-8", "replace"), None
    except HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), "HTTP %d" % e.code
    except (URLError, socket.error, socket.timeout, IOError) as e:
        reason = getattr(e, "reason", e)
        return -1, "", str(reason)


def judge(req, status, body, error):
    """The problem with this outcome, or None."""
    url = req["url"]
    expect = req.get("expect") or "answer"
    if expect not in ("answer", "no_answer", "any"):
        return "%s: expect must be answer, any or no_answer, not %r" % (url, expect)
    if expect == "any":
        return None if status != -1 else "%s did not answer: %s" % (url, error)
    if expect == "no_answer":
        return None if status == -1 else "%s answered HTTP %d but must not answer" % (url, status)
    if status != 200:
        return "%s: %s" % (url, error or "HTTP %d" % status)
    want = req.get("json") or {}
    if want:
        try:
            got = json.loads(body)
        except ValueError:
            return "%s answered %r, expected JSON with %s" % (url, body[:200], json.dumps(want, sort_keys=True))
        if not isinstance(got, dict) or any(k not in got or got[k] != v for k, v in want.items()):
            return "%s answered %s, expected %s" % (url, json.dumps(got, sort_keys=True),
                                                    json.dumps(want, sort_keys=True))
    return None


def probe_all(requests, timeout, get=fetch):
    results, problems = [], []
    for req in requests:
        status, body, error = get(req["url"], timeout)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        problem = judge(req, status, body, error)
        entry = {"url": req["url"], "status": status, "error": error, "ok": problem is None}
        if parsed is not None:
            entry["json"] = parsed
        results.append(entry)
        if problem:
            problems.append(problem)
    return results, problems


def main():
    module = AnsibleModule(
        argument_spec=dict(requests=dict(type="list", elements="dict", required=True),
                           timeout=dict(type="int", default=5)),
        supports_check_mode=True)
    for req in module.params["requests"]:
        if not req.get("url"):
            module.fail_json(msg="every request needs a url: %r" % (req,))
    results, problems = probe_all(module.params["requests"], module.params["timeout"])
    module.exit_json(changed=False, results=results, problems=problems)


if __name__ == "__main__":
    main()
