"""Writes the `ip -o addr show` lines of iproute2 3.10 and 4.9/4.11 for the
host state captured in ip-j-addr-iproute2-6.1.json (README.md says how
each release orders its flag words). Usage: python3 render_ip_o.py 3.10|4.9"""
import json, os, re, sys
HERE = os.path.dirname(os.path.abspath(__file__))
j = json.load(open(os.path.join(HERE, 'ip-j-addr-iproute2-6.1.json')))
text = open(os.path.join(HERE, 'ip-o-addr-iproute2-6.1.txt')).read().splitlines()
NEW_WORDS = {"secondary","temporary","tentative","deprecated","home","nodad","mngtmpaddr","noprefixroute","dynamic","dadfailed","optimistic","autojoin","stable-privacy"}
def old_words(a, version):
    w = []
    if a.get("secondary") or a.get("temporary"):
        w.append("temporary" if a["family"] == "inet6" else "secondary")
    for f in ("tentative", "deprecated", "home", "nodad"):
        if a.get(f): w.append(f)
    if version != "3.10":
        for f in ("mngtmpaddr", "noprefixroute"):
            if a.get(f): w.append(f)
    if a.get("dynamic"): w.append("dynamic")
    if a.get("dadfailed"): w.append("dadfailed")
    left = 0
    if a.get("optimistic"): left |= 0x04
    if version != "3.10":
        if a.get("autojoin"): left |= 0x400
        if a.get("stable-privacy"): left |= 0x800
    if left: w.append("flags %02x" % left)
    return w
addrs = [(l["ifindex"], a) for l in j for a in l["addr_info"]]
assert len(addrs) == len(text)
version = sys.argv[1]
for (idx, a), line in zip(addrs, text):
    head, tail = line.split("\\", 1)
    m = re.match(r"^(.*? scope \S+ )(.*)$", head)
    pre, rest = m.group(1), m.group(2).split()
    label = [x for x in rest if x not in NEW_WORDS]
    assert a["local"] in pre
    words = old_words(a, version)
    out = pre + "".join(x + " " for x in words) + "".join(label)
    print(out + "\\" + tail)
