"""Reading systemd's own dumps of a command line, for the tests that let
systemd judge what the rewrite and the discovery wrote (systemd-analyze
verify prints ExecStart with shell_maybe_quote + cescape)."""


def unquote_dump(line):
    """Words of systemd's quoted dump of a command line (shell_maybe_quote + cescape)."""
    words, i, n = [], 0, len(line)
    simple = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        w = []
        if line[i] == '"':
            i += 1
            while line[i] != '"':
                c = line[i]
                if c == "\\":
                    e = line[i + 1]
                    if e in simple:
                        w.append(simple[e])
                        i += 2
                    elif e == "x":
                        w.append(chr(int(line[i + 2:i + 4], 16)))
                        i += 4
                    else:
                        w.append(e)
                        i += 2
                else:
                    w.append(c)
                    i += 1
            i += 1
        else:
            while i < n and line[i] != " ":
                w.append(line[i])
                i += 1
        words.append("".join(w))
    return words
