#!/bin/bash
# Regenerate the captured outputs of the firewall rule-set corpus.
#
# Each case directory holds what an administrator or a tool loads:
#   ipsets      `ipset restore` input (created first)
#   rules.v4    `iptables-restore` input    rules.v6  `ip6tables-restore` input
#   ruleset.nft `nft -f` input
#   legacy      present: the host uses the legacy iptables backend
# and this script loads them into a throwaway network namespace (never the
# controller's own rules) and writes what the exposure check reads on a host:
#   iptables-save.txt   `iptables-save -t filter`
#   ip6tables-save.txt  `ip6tables-save -t filter`
#   nft.json            `nft -j list ruleset`
# The namespace ends with the command, with everything loaded in it.
#
# Needs root, iptables (nft and legacy), nftables and ipset.
# Usage: tests/corpus/firewall/capture.sh [CASE_DIR...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
cases=("$@")
[ ${#cases[@]} -gt 0 ] || mapfile -t cases < <(find . -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)

for c in "${cases[@]}"; do
    c=${c%/}
    c=${c##*/}
    unshare -n bash -euo pipefail -c '
        cd "$1"
        if [ -e legacy ]; then ipt=iptables-legacy; ip6t=ip6tables-legacy; else ipt=iptables-nft; ip6t=ip6tables-nft; fi
        [ ! -e ipsets ] || ipset restore < ipsets
        [ ! -e rules.v4 ] || $ipt-restore < rules.v4
        [ ! -e rules.v6 ] || $ip6t-restore < rules.v6
        [ ! -e ruleset.nft ] || nft -f ruleset.nft
        $ipt-save -t filter > iptables-save.txt
        $ip6t-save -t filter > ip6tables-save.txt
        nft -j list ruleset > nft.json
    ' capture "$c"
    echo "captured $c"
done
