"""The documentation points at things that exist.

- Every section reference anywhere in the project, `README, "Section"` (or
  `README "Section"`) and `docs/FILE.md, "Section"` / `bench/README.md,
  "Section"` (any repository-relative Markdown path), names an existing file
  with that heading.
- Every relative link in the Markdown files points at an existing file, and
  an anchor at one of that file's headings.
- Every project variable the documentation names is defined or read
  somewhere in the project's code.
- Headings are unique within each Markdown file (references name them).
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIP = {".git", ".venv", ".venv-legacy", ".ansible", "collections", ".cache", "node_modules", "journal", "reports",
        ".pytest_cache", "__pycache__", "demo-logs"}
PREFIXES = ("dsr", "ipv6_kernel", "gunicorn_dualstack", "nginx_dualstack", "lb_nginx", "lb_haproxy",
            "listener_verify", "snapshot", "sandbox")
VAR = re.compile(r"\b((?:%s)_[a-z0-9_]+)\b" % "|".join(PREFIXES))
# A section reference: the document (README, the project's front page, or a
# repository-relative Markdown path), an optional comma, the heading quoted.
# The quoted name may be wrapped over lines (Markdown text is reflowed).
REF = re.compile(r'(?<![\w/.-])(README|(?:[\w-]+/)*[\w-]+\.md),?\s+"([^"]{1,120})"')
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# Named in the documentation, legitimately absent from the code.
NOT_IN_CODE = {
    # CHANGELOG.md records its removal ("`dsr_audit_port` is gone").
    "dsr_audit_port",
}


def walk():
    for d, subs, names in os.walk(ROOT):
        subs[:] = [s for s in subs if s not in SKIP and not s.startswith(".cache")]
        for n in names:
            yield os.path.join(d, n)


def files(exts):
    return [p for p in walk() if p.endswith(exts)]


def read(p):
    with open(p, encoding="utf-8", errors="replace") as f:
        return f.read()


def markdown_files():
    return sorted(files((".md",)))


def text_files():
    """Every file a reference could be written in: source, configuration,
    documentation, corpus cases (binary files are left out)."""
    for p in walk():
        if p == os.path.abspath(__file__) or os.path.getsize(p) > 2000000:
            continue
        with open(p, "rb") as f:
            data = f.read()
        if b"\0" not in data:
            yield p, data.decode("utf-8", errors="replace")


def without_code(text):
    """Markdown without fenced code blocks (a `# comment` in a shell example
    is no heading); inline code is kept."""
    out, fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            out.append("")
        else:
            out.append("" if fence else line)
    return "\n".join(out)


def headings(path):
    return [h.strip().rstrip("#").strip() for h in re.findall(r"^#+ (.+)$", without_code(read(path)), re.M)]


def slug(heading):
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def names(known, section):
    """A reference may name a heading in full or its leading words
    ("Platforms" for "Platforms: tested for real, tested through shims")."""
    return any(h == section or (h.startswith(section) and not h[len(section)].isalnum()) for h in known)


def references():
    refs = []
    for p, text in text_files():
        for m in REF.finditer(text):
            doc = "README.md" if m.group(1) == "README" else m.group(1)
            refs.append((os.path.relpath(p, ROOT), doc, " ".join(m.group(2).split())))
    return refs


def test_every_section_reference_names_an_existing_heading():
    refs = references()
    readme = [r for r in refs if r[1] == "README.md"]
    moved = [r for r in refs if r[1].startswith("docs/")]
    assert readme and moved, "no references found: the pattern is wrong"
    missing = [r for r in refs if not os.path.isfile(os.path.join(ROOT, r[1]))
               or not names(headings(os.path.join(ROOT, r[1])), r[2])]
    assert missing == [], missing


def test_the_reference_pattern_sees_every_form_the_project_writes():
    text = ('see README, "A"; README "B"; (docs/x.md, "C\n  D"); bench/README.md "E"; '
            'roles/r/README.md, "F"; not a reference: foo/README, "G"')
    assert REF.findall(text) == [("README", "A"), ("README", "B"), ("docs/x.md", "C\n  D"),
                                 ("bench/README.md", "E"), ("roles/r/README.md", "F")]
    # References are found in every kind of file that holds them.
    kinds = set(os.path.splitext(f)[1] for f, _, _ in references())
    assert {".yml", ".py", ".md", ".txt"} <= kinds, kinds


def test_every_relative_markdown_link_resolves():
    bad = []
    for p in markdown_files():
        text = re.sub(r"`[^`\n]*`", "", without_code(read(p)))
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(p), path)) if path else p
            if not os.path.exists(dest):
                bad.append((os.path.relpath(p, ROOT), target, "no such file"))
            elif anchor and dest.endswith(".md") and anchor not in [slug(h) for h in headings(dest)]:
                bad.append((os.path.relpath(p, ROOT), target, "no such heading"))
    assert bad == [], bad


def test_links_are_checked_in_the_pages_that_have_them():
    linked = [os.path.relpath(p, ROOT) for p in markdown_files() if LINK.search(without_code(read(p)))]
    for page in ("README.md", "docs/rules.md", "docs/safety.md", "docs/testing.md"):
        assert page in linked


def test_headings_are_unique_within_each_markdown_file():
    dups = []
    for p in markdown_files():
        hs = headings(p)
        dups += [(os.path.relpath(p, ROOT), h) for h in set(hs) if hs.count(h) > 1]
    assert dups == [], dups


def test_every_variable_the_docs_name_exists_in_the_code():
    code = "\n".join(read(p) for p in files((".yml", ".yaml", ".py", ".j2", ".cfg"))
                     if "/tests/" not in p and "/molecule/" not in p)
    docs = [p for p in markdown_files() if os.path.basename(p) == "README.md"
            or os.path.relpath(p, ROOT).startswith("docs" + os.sep) or p == os.path.join(ROOT, "CHANGELOG.md")]
    assert os.path.join(ROOT, "docs", "safety.md") in docs
    named = set()
    for p in docs:
        named.update((v, os.path.relpath(p, ROOT)) for v in VAR.findall(read(p)))
    assert len(named) > 100
    # Filters and modules are named like variables; they exist as code or
    # as plugin files. `ipv6_kernel__*` names a family, not a variable.
    plugins = set(os.path.splitext(n)[0] for d in ("filter", "modules", "action")
                  for n in os.listdir(os.path.join(ROOT, "plugins", d)))
    missing = sorted((v, f) for v, f in named if not v.endswith("_") and v not in plugins
                     and v not in NOT_IN_CODE and not re.search(r"\b%s\b" % re.escape(v), code))
    assert missing == [], missing
    # The allow-list holds only names the documentation still uses.
    assert NOT_IN_CODE <= set(v for v, _ in named)
