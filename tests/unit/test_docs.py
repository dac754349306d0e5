"""The documentation points at things that exist: every `README, "Section"`
reference names a heading of the README, and every project variable the
READMEs name is defined or read somewhere in the project."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIP = {".git", ".venv", ".venv-legacy", ".ansible", "collections", ".cache", "node_modules", "journal", "reports"}
PREFIXES = ("dsr", "ipv6_kernel_", "gunicorn_dualstack_", "nginx_dualstack_", "lb_nginx_", "listener_verify_",
            "snapshot_", "sandbox_app_")
VAR = re.compile(r"\b((?:%s)_[a-z0-9_]+)\b" % "|".join(p.rstrip("_") for p in PREFIXES))


def files(exts):
    for d, subs, names in os.walk(ROOT):
        subs[:] = [s for s in subs if s not in SKIP and not s.startswith(".cache")]
        for n in names:
            if n.endswith(exts):
                yield os.path.join(d, n)


def read(p):
    with open(p, encoding="utf-8", errors="replace") as f:
        return f.read()


def headings():
    return [h.strip() for h in re.findall(r"^#+ (.+)$", read(os.path.join(ROOT, "README.md")), re.M)]


def test_every_readme_section_reference_exists():
    known = headings()
    refs = []
    for p in files((".yml", ".yaml", ".py", ".md", ".j2", ".cfg")):
        if p == os.path.abspath(__file__):
            continue
        for m in re.finditer(r'README, "([^"]+)"', read(p)):
            refs.append((os.path.relpath(p, ROOT), m.group(1)))
    assert refs, "no references found: the pattern is wrong"
    missing = [(f, s) for f, s in refs if not any(h == s or h.startswith(s) for h in known)]
    assert missing == [], missing


def test_every_variable_the_readmes_name_exists_in_the_code():
    code = "\n".join(read(p) for p in files((".yml", ".yaml", ".py", ".j2", ".cfg"))
                     if "/tests/" not in p and "/molecule/" not in p)
    docs = [p for p in files((".md",)) if os.path.basename(p) == "README.md"]
    named = set()
    for p in docs:
        named.update((v, os.path.relpath(p, ROOT)) for v in VAR.findall(read(p)))
    assert len(named) > 20
    # Filters and modules are named like variables; they exist as code or
    # as plugin files. `ipv6_kernel__*` names a family, not a variable.
    plugins = set(os.path.splitext(n)[0] for d in ("filter", "modules", "action")
                  for n in os.listdir(os.path.join(ROOT, "plugins", d)))
    missing = sorted((v, f) for v, f in named if not v.endswith("_") and v not in plugins
                     and not re.search(r"\b%s\b" % re.escape(v), code))
    assert missing == [], missing
