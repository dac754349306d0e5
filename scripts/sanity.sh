#!/usr/bin/env bash
# ansible-test sanity on the collection exactly as ansible-galaxy builds it:
#   - every default sanity test on the controller's Python, newest
#     ansible-core (.venv);
#   - compile and import for Python 2.7 and 3.6, the fleet's hosts, under
#     ansible-core 2.16 (.venv-legacy), the oldest release the collection
#     supports (meta/runtime.yml).
# Ignores live in tests/sanity/ignore-X.Y.txt, each line with its reason.
#
# ansible-test bootstraps pip into each virtualenv it makes with a script it
# downloads from a host this machine cannot reach. That script only runs
# pip from pip's own wheel; the stand-in written here does the same with the
# wheel of the version ansible-test asks for, from the configured index.
#
# Usage: scripts/sanity.sh   Env: DSR_BIN, DSR_LEGACY_BIN (virtualenv bins)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${DSR_BIN:-$root/.venv/bin}
legacy=${DSR_LEGACY_BIN:-$root/.venv-legacy/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== build and install the collection"
# Away from the checkout's ansible.cfg: its collections path holds the
# checkout itself as this collection, which ansible-galaxy would find
# "already installed".
: >"$work/empty.cfg"
export ANSIBLE_CONFIG=$work/empty.cfg
"$bin/ansible-galaxy" collection build "$root" --output-path "$work" >/dev/null
"$bin/ansible-galaxy" collection install --no-deps -p "$work/col" "$work"/dualstack-rollout-*.tar.gz >/dev/null
col=$work/col/ansible_collections/dualstack/rollout
# The ignore files are part of the test, not of the built collection.
mkdir -p "$col/tests"
cp -r "$root/tests/sanity" "$col/tests/"

cache=$HOME/.ansible/test/cache
mkdir -p "$cache/pip-wheels"
for at in "$bin" "$legacy"; do
  req=$("$at/python" -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py"))')
  for v in $(grep -oE "pip='[0-9.]+'" "$req" | grep -oE "[0-9][0-9.]*" | sort -u); do
    stand_in=$cache/get_pip_${v//./_}.py
    # Written anew unless it and the wheel it runs are both there.
    if [ -e "$stand_in" ] && ls "$cache/pip-wheels/pip-$v-"*.whl >/dev/null 2>&1; then continue; fi
    "$bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
      -d "$cache/pip-wheels" "pip==$v"
    wheel=$(ls "$cache/pip-wheels/pip-$v-"*.whl)
    cat >"$stand_in" <<EOF
# Written by dualstack-rollout's scripts/sanity.sh in place of get-pip.py:
# installs with pip $v run from its wheel. --no-setuptools and --no-wheel
# are get-pip.py's own options (install no more than asked): dropped.
import sys
sys.path.insert(0, "$wheel")
from pip._internal.cli.main import main
sys.exit(main(["install"] + [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]))
EOF
  done
done

cd "$col"
core() { "$1/python" -c 'from ansible.release import __version__ as v; print("ansible-core " + v)'; }
echo "== ansible-test sanity, $(core "$bin")"
"$bin/ansible-test" sanity --color no --python "$("$bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# The hosts' Pythons, from pyenv; each one missing is named, not skipped silently.
pyroot=$(pyenv root 2>/dev/null || true)
path=$PATH
for v in 2.7 3.6; do
  d=$(ls -d "$pyroot/versions/$v".* 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$d" ] || [ ! -x "$d/bin/python$v" ]; then
    echo "== NOTE: no CPython $v in this machine's pyenv: compile and import on $v NOT run"
    continue
  fi
  path=$d/bin:$path
  # ansible-test makes Python 2.7's virtualenvs with `virtualenv` (2.7 has no
  # venv); 20.15.1 is the newest release that runs on 2.7.
  if [ "$v" = 2.7 ] && ! "$d/bin/python2.7" -m virtualenv --version >/dev/null 2>&1; then
    "$d/bin/python2.7" -m pip install --quiet --user --disable-pip-version-check virtualenv==20.15.1
  fi
  echo "== ansible-test sanity compile and import on Python $v, $(core "$legacy")"
  PATH=$path "$legacy/ansible-test" sanity --color no --test compile --test import --python "$v"
done
echo "== sanity passed"
