#!/usr/bin/python
# -*- coding: utf-8 -*-
# Runs on the managed host: Python 2.7 and 3.6+.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: dsr_snapshot
short_description: Keep the original bytes of every file a rollout changes, and restore them
description:
  - C(state=present) records each path not yet in the snapshot - its bytes, sha256, mode and
    owner, or the fact that it did not exist - under I(dir) with owner-only permissions.
    A path already recorded is left alone, so the snapshot always holds the state from before
    the first change, however many runs follow.
  - C(state=restored) puts every recorded path back byte for byte (or removes it when it
    did not exist before), verifies the checksums, and reports what it changed.
  - Supports check mode.
options:
  dir:
    description: Snapshot directory on the host.
    type: path
    required: true
  paths:
    description: Files about to be changed (state=present).
    type: list
    elements: path
    default: []
  data:
    description: Extra facts to keep in the manifest once (for example the kernel values before).
    type: dict
    default: {}
  state:
    description: present (take) or restored (put back).
    type: str
    choices: [present, restored]
    default: present
author: dualstack-rollout contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Snapshot the files about to change
  dsr_snapshot:
    dir: /var/lib/dualstack-rollout/snapshot
    paths: [/etc/nginx/sites-available/app]
"""

RETURN = r"""
manifest:
  description: The manifest after the call.
  returned: always
  type: dict
recorded:
  description: Paths recorded by this call (present), or restored / removed (restored).
  returned: always
  type: list
"""

import hashlib
import json
import os
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def load(manifest_path):
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            return json.load(f)
    return {"version": 1, "created": None, "files": {}, "data": {}}


def save(manifest_path, manifest):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(manifest_path))
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.rename(tmp, manifest_path)


def take(module, d, paths, data):
    manifest_path = os.path.join(d, "manifest.json")
    manifest = load(manifest_path)
    new = [p for p in paths if p not in manifest["files"]]
    new_data = dict((k, v) for k, v in data.items() if k not in manifest["data"])
    if not new and not new_data:
        return False, [], manifest
    if module.check_mode:
        return True, new, manifest
    if not os.path.isdir(os.path.join(d, "files")):
        os.makedirs(os.path.join(d, "files"), 0o700)
    os.chmod(d, 0o700)
    if manifest["created"] is None:
        manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for p in new:
        entry = {"existed": os.path.lexists(p)}
        if entry["existed"]:
            if os.path.islink(p) or not os.path.isfile(p):
                module.fail_json(msg="%s is not a regular file; refusing to snapshot it" % p)
            st = os.stat(p)
            stored = os.path.join(d, "files", hashlib.sha256(p.encode("utf-8")).hexdigest())
            shutil.copyfile(p, stored)
            os.chmod(stored, 0o600)
            entry.update({"sha256": sha256(p), "mode": "%04o" % (st.st_mode & 0o7777), "uid": st.st_uid,
                          "gid": st.st_gid, "stored": stored})
            if sha256(stored) != entry["sha256"]:
                module.fail_json(msg="snapshot copy of %s does not match the original" % p)
        manifest["files"][p] = entry
    manifest["data"].update(new_data)
    save(manifest_path, manifest)
    return True, new, manifest


def restore(module, d):
    manifest_path = os.path.join(d, "manifest.json")
    if not os.path.exists(manifest_path):
        return False, [], None
    manifest = load(manifest_path)
    changed = []
    for p, e in sorted(manifest["files"].items()):
        if e["existed"]:
            if os.path.isfile(p) and not os.path.islink(p) and sha256(p) == e["sha256"]:
                st = os.stat(p)
                if "%04o" % (st.st_mode & 0o7777) == e["mode"] and st.st_uid == e["uid"] and st.st_gid == e["gid"]:
                    continue
            changed.append(p)
            if module.check_mode:
                continue
            parent = os.path.dirname(p)
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            fd, tmp = tempfile.mkstemp(dir=parent)
            os.close(fd)
            shutil.copyfile(e["stored"], tmp)
            os.chmod(tmp, int(e["mode"], 8))
            os.chown(tmp, e["uid"], e["gid"])
            os.rename(tmp, p)
            if sha256(p) != e["sha256"]:
                module.fail_json(msg="restored %s does not match its snapshot checksum" % p)
        elif os.path.lexists(p):
            changed.append(p)
            if not module.check_mode:
                os.remove(p)
                parent = os.path.dirname(p)
                if parent.endswith(".d") and os.path.isdir(parent) and not os.listdir(parent):
                    os.rmdir(parent)
    return bool(changed), changed, manifest


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dir=dict(type="path", required=True),
            paths=dict(type="list", elements="path", default=[]),
            data=dict(type="dict", default={}),
            state=dict(type="str", choices=["present", "restored"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "present":
        changed, recorded, manifest = take(module, p["dir"], p["paths"], p["data"])
    else:
        changed, recorded, manifest = restore(module, p["dir"])
    module.exit_json(changed=changed, recorded=recorded, manifest=manifest)


if __name__ == "__main__":
    main()
