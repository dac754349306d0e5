#!/usr/bin/python
# -*- coding: utf-8 -*-
# Runs on the managed host: Python 2.7 and 3.6+.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: dsr_read_files
short_description: Read several files, following symlinks, in one round trip
description:
  - For each path returns where it really is (C(real_path), symlinks followed
    as M(ansible.builtin.stat)'s C(lnk_source) does), whether it exists, and its
    bytes base64-encoded (C(content)), as M(ansible.builtin.slurp) would.
  - One task instead of a looped stat and a looped slurp, so one connection
    round trip per host instead of two per file. Never changes anything.
  - C(files) keeps the order of I(paths); paths that resolve to the same file
    are read once.
options:
  paths:
    description: Files to read.
    type: list
    elements: path
    required: true
  missing_ok:
    description: Report a missing path (C(exists=false)) instead of failing.
    type: bool
    default: false
author: dualstack-rollout contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Read the files that hold server blocks
  dsr_read_files:
    paths: [/etc/nginx/nginx.conf, /etc/nginx/sites-enabled/default]
  register: files
"""

RETURN = r"""
files:
  description: Per path, in order, C(path), C(real_path), C(exists) and C(content) (base64).
  returned: always
  type: list
  elements: dict
"""

import base64
import os

from ansible.module_utils.basic import AnsibleModule


def read_all(paths, missing_ok):
    """Return ([{path, real_path, exists, content}], error)."""
    files = []
    cache = {}
    for path in paths:
        real = os.path.realpath(path)
        if not os.path.isfile(real):
            if not missing_ok:
                return files, "%s does not exist or is not a regular file" % path
            files.append({"path": path, "real_path": real, "exists": False, "content": None})
            continue
        if real not in cache:
            with open(real, "rb") as f:
                cache[real] = base64.b64encode(f.read()).decode("ascii")
        files.append({"path": path, "real_path": real, "exists": True, "content": cache[real]})
    return files, None


def main():
    module = AnsibleModule(
        argument_spec=dict(paths=dict(type="list", elements="path", required=True),
                           missing_ok=dict(type="bool", default=False)),
        supports_check_mode=True)
    try:
        files, error = read_all(module.params["paths"], module.params["missing_ok"])
    except (IOError, OSError) as e:
        module.fail_json(msg="cannot read: %s" % e)
    if error:
        module.fail_json(msg=error, files=files)
    module.exit_json(changed=False, files=files)


if __name__ == "__main__":
    main()
