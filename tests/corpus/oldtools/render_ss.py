"""Writes `ss -ltne` / `ss -ltnpe` of the README's app host the way iproute2
3.10, 4.9 and 4.11 lay it out (misc/ss.c; stdout not a terminal: 80
columns). Usage: python3 render_ss.py 3.10|4.9|4.11 p|n"""
import sys
version, with_p = sys.argv[1], sys.argv[2] == "p"
STATE_W = 10
if version == "3.10":
    addr_w, serv_w, pad_port = 20, 5, False
else:
    addr_w, serv_w, pad_port = 20 - 13, 5 + 13, True
# (addr, port, peer, rq, wq(backlog), uid, ino, sk, v6only, users)
kernel_ptr = version != "4.9"
def sk(n):
    return ("ffff8800%08x" % (0x3a1c0000 + n * 0x780)) if kernel_ptr else "%x" % (0x1a + n)
SOCKS = [
    ("*", "22", "*", 128, 0, 17623, [("sshd", 1117, 3)], None),
    ("127.0.0.1", "25", "*", 100, 0, 18164, [("master", 1890, 13)], None),
    ("*", "80", "*", 128, 0, 23410, [("nginx", 2301, 6), ("nginx", 2300, 6)], None),
    ("*", "111", "*", 128, 0, 14380, [("rpcbind", 640, 8)], None),
    ("*", "8000", "*", 2048, 996, 30117, [("gunicorn", 2412, 5), ("gunicorn", 2411, 5), ("gunicorn", 2405, 5)], None),
    ("127.0.0.1", "8001", "*", 2048, 996, 30240, [("gunicorn", 2520, 5), ("gunicorn", 2514, 5)], None),
    ("10.0.2.15", "8002", "*", 2048, 996, 30388, [("gunicorn", 2610, 5), ("gunicorn", 2601, 5)], None),
    ("::", "22", "::", 128, 0, 17625, [("sshd", 1117, 4)], 1),
    ("::1", "25", "::", 100, 0, 18165, [("master", 1890, 14)], 1),
    ("::", "80", "::", 128, 0, 23411, [("nginx", 2301, 7), ("nginx", 2300, 7)], 1),
    ("::", "111", "::", 128, 0, 14383, [("rpcbind", 640, 11)], 0),
    ("::", "8000", "::", 2048, 996, 30118, [("gunicorn", 2412, 6), ("gunicorn", 2411, 6), ("gunicorn", 2405, 6)], 0),
    ("::1", "8001", "::", 2048, 996, 30241, [("gunicorn", 2520, 6), ("gunicorn", 2514, 6)], 1),
    ("2001:db8:42::15", "8002", "::", 2048, 996, 30389, [("gunicorn", 2610, 6), ("gunicorn", 2601, 6)], 1),
    ("::", "8003", "::", 2048, 996, 30502, [("gunicorn", 2702, 5), ("gunicorn", 2700, 5)], 0),
    ("::ffff:127.0.0.1", "9000", "::", 128, 0, 31001, [("python", 2810, 3)], 0),
]
def addr(a, port):
    est = addr_w
    if ":" in a:
        est = len(a)
        est = addr_w if est <= addr_w else addr_w + ((est - addr_w + 3) // 4) * 4
    if pad_port:
        return "%*s:%-*s " % (est, a, serv_w, port)
    return "%*s:%s " % (est, a, port)
out = []
out.append("%-*s " % (STATE_W, "State") + "%-6s %-6s " % ("Recv-Q", "Send-Q")
           + "%*s:%-*s %*s:%-*s" % (addr_w, "Local Address", serv_w, "Port", addr_w, "Peer Address", serv_w, "Port"))
for n, (a, port, peer, backlog, uid, ino, users, v6only) in enumerate(SOCKS):
    line = "%-*s " % (STATE_W, "LISTEN") + "%-6d %-6d " % (0, backlog) + addr(a, port) + addr(peer, "*")
    if with_p:
        if version == "3.10":
            u = ",".join('("%s",%d,%d)' % x for x in users)
        else:
            u = ",".join('("%s",pid=%d,fd=%d)' % x for x in users)
        line += " users:(%s)" % u
    if uid:
        line += " uid:%d" % uid
    line += " ino:%d sk:%s" % (ino, sk(n))
    if version != "3.10" and v6only is not None:
        line += " v6only:%d" % v6only
    line += " <->"
    out.append(line)
print("\n".join(out))
