"""dsr_probe_clients: through the balancer, the app must name the sending
host as the client in the family the request used, never the balancer."""
from dsr_http import probe_clients

SENDER = {"ipv4": ["172.30.30.11"], "ipv6": ["fd42:d5a:30::11"]}


def answer(url, client, status=200, key="client"):
    return {"url": url, "status": status, "json": {key: client, "scheme": "https"} if client is not None else {}}


def test_the_sender_in_each_family_passes():
    results = [answer("http://172.30.30.2:80/", "172.30.30.11"),
               answer("http://[fd42:d5a:30::2]:80/", "fd42:d5a:30::11"),
               # written uncompressed or IPv4-mapped by an app: the same address
               answer("http://[fd42:d5a:30::2]:80/", "fd42:d5a:30:0:0:0:0:11"),
               answer("http://172.30.30.2:80/", "::ffff:172.30.30.11")]
    assert probe_clients(results, "client", SENDER) == []


def test_the_balancer_seen_as_the_client_is_named():
    results = [answer("http://[fd42:d5a:30::2]:80/", "fd42:d5a:30::2"),
               answer("http://172.30.30.2:80/", "fd42:d5a:30::11"),  # the other family
               answer("http://172.30.30.2:80/", None),
               answer("http://172.30.30.2:80/", "unknown")]
    problems = probe_clients(results, "client", SENDER, {"where": "from app1"})
    assert len(problems) == 4
    assert problems[0] == ("from app1: http://[fd42:d5a:30::2]:80/: the app saw the client as fd42:d5a:30::2, "
                           "not as the client's own IPv6 address (fd42:d5a:30::11)")
    assert "no 'client' in its answer" in problems[2]


def test_failed_requests_are_left_to_the_probe():
    assert probe_clients([answer("http://172.30.30.2:80/", None, status=502)], "client", SENDER) == []


def test_a_new_ipv6_listener_must_answer_as_the_ipv4_one():
    from dsr_http import same_answers
    same = [{"url": "http://127.0.0.1:80/", "status": 403}, {"url": "http://[::1]:80/", "status": 403},
            {"url": "http://127.0.0.1:8080/", "status": 200}, {"url": "http://[::1]:8080/", "status": 200}]
    assert same_answers(same) == []
    other = [{"url": "http://127.0.0.1:80/", "status": 200}, {"url": "http://[::1]:80/", "status": 502},
             {"url": "http://127.0.0.1:8080/x", "status": 200}, {"url": "http://[::1]:8080/x", "status": -1}]
    assert same_answers(other) == ["http://[::1]:80/ answered 502, but http://127.0.0.1:80/ answered 200",
                                   "http://[::1]:8080/x answered -1, but http://127.0.0.1:8080/x answered 200"]
    assert same_answers([{"url": "http://127.0.0.1:80/", "status": 200}]) == []
