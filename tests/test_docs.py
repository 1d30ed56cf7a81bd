"""README.md and docs/*.md parse (CommonMark, markdown-it-py) into the headings and code blocks
intended (issue 27).

The rules, each aimed at how a broken fence shows up:

* every fence closes: an unclosed fence swallows the rest of the file into one code block;
* each file has one level-1 heading, its first line: a shell comment (``# 7. ROS 2 node``) left
  outside its code block renders as a second ``#`` heading;
* no heading of level 2 or more reads like a comment: none starts with a numbered step
  (``7.``) or a plain lowercase word (``robot logs``; identifiers like ``desanet-hn`` pass);
* no fence line inside a fenced block: ```` ```python ```` can only open a block, so one
  inside a block means the fences paired up wrongly;
* in a ``bash`` block every line is blank, a ``#`` comment, a continuation, or starts with a
  command this project's docs run: prose or a heading swallowed by a block fails here;
* docs/benchmarks.md: no heading twice, every link of its contents list resolves, the list
  names its level-2 sections in document order, and every section a benchmark script
  writes (``write_section("name", ...)``) has its markers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py (the dev extra) parses the docs")

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The first word of a command line in the docs' bash blocks.
COMMANDS = {"edgeseg", "make", "torchrun", "tritonserver", "deepstream-app", "docker", "pip",
            "python", "python3", "source", "cd", "export", "ros2"}


def _tokens(text: str) -> list:
    return markdown_it.MarkdownIt("commonmark").parse(text)


def headings(text: str) -> list[tuple[int, str, int]]:
    """(level, inline text, source line) of every heading."""
    toks = _tokens(text)
    return [(int(t.tag[1]), toks[i + 1].content, t.map[0] + 1)
            for i, t in enumerate(toks) if t.type == "heading_open"]


def fence_problems(text: str) -> list[str]:
    """Fences whose block runs to the end of the file without a closing fence."""
    lines = text.splitlines()
    out = []
    for t in _tokens(text):
        if t.type != "fence":
            continue
        start, end = t.map
        closing = lines[end - 1].strip() if end - 1 > start else ""
        marker = t.markup
        if not (closing.startswith(marker) and set(closing) <= {marker[0]}):
            out.append(f"line {start + 1}: fence {marker}{t.info} is never closed")
        # A fence line inside a block (```python can only open, never close): the fences
        # paired up wrongly, so prose sits in the block and commands outside it.
        for i, line in enumerate(t.content.splitlines()):
            if line.lstrip().startswith(marker):
                out.append(f"line {start + 2 + i}: {line.strip()!r} inside a {marker} block")
    return out


def heading_problems(text: str) -> list[str]:
    hs = headings(text)
    out = []
    ones = [h for h in hs if h[0] == 1]
    if not hs or hs[0][0] != 1 or hs[0][2] != 1:
        out.append("the file does not open with its level-1 title")
    out += [f"line {line}: second level-1 heading {title!r} (a shell comment outside its "
            "code block?)" for _, title, line in ones[1:]]
    for level, title, line in hs:
        # a numbered step ("7. ROS 2 node") or a plain lowercase word ("robot logs, ...");
        # identifiers such as "desanet-hn (random-init)" are fine
        if level >= 2 and (re.match(r"\d+\.\s", title) or re.match(r"[a-z]+[ ,:]", title)):
            out.append(f"line {line}: heading {title!r} reads like a shell comment")
    return out


def bash_problems(text: str) -> list[str]:
    out = []
    for t in _tokens(text):
        if t.type != "fence" or t.info.strip() not in ("bash", "sh", "shell"):
            continue
        prev = ""
        for i, line in enumerate(t.content.splitlines()):
            s = line.strip()
            ok = (not s or s.startswith("#") or prev.endswith("\\")
                  or s.split()[0] in COMMANDS)
            if not ok:
                out.append(f"line {t.map[0] + 2 + i}: {s[:50]!r} in a bash block is no command")
            prev = s
    return out


def slug(title: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation other than '-' and '_' dropped, spaces
    to '-'."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_parses_into_intended_blocks(doc: Path) -> None:
    text = doc.read_text()
    problems = fence_problems(text) + heading_problems(text) + bash_problems(text)
    assert not problems, f"{doc.name}:\n" + "\n".join(problems)


def test_readme_opens_with_what_it_is_then_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    toks = _tokens(text)
    blocks = [t for t in toks if t.type in ("paragraph_open", "fence", "heading_open")]
    assert blocks[0].type == "heading_open"
    assert blocks[1].type == "paragraph_open"  # what edgeseg is, before any command
    assert blocks[2].type == "fence"
    assert [ln.split()[:2] for ln in blocks[2].content.splitlines()] == [
        ["make", "demo"], ["make", "test"]]
    assert "edgeseg doctor" in text
    assert "docs/benchmarks.md" in text
    # measured times live in docs/benchmarks.md, not on the first page
    assert not re.search(r"\d+(\.\d+)? (min|s)\b.*(clean clone|passed)", text)


def test_benchmarks_md_headings_contents_and_sections() -> None:
    text = (REPO / "docs" / "benchmarks.md").read_text()
    hs = headings(text)
    titles = [t for _, t, _ in hs]
    dupes = sorted({t for t in titles if titles.count(t) > 1})
    assert not dupes, f"headings used twice: {dupes}"
    anchors = {slug(t) for t in titles}
    toks = _tokens(text)
    start = next(i for i, t in enumerate(toks)
                 if t.type == "heading_open" and toks[i + 1].content == "Contents")
    end = next(i for i in range(start + 3, len(toks)) if toks[i].type == "heading_open")
    links = [c.attrGet("href") for t in toks[start:end] if t.type == "inline"
             for c in t.children or [] if c.type == "link_open"]
    assert links, "docs/benchmarks.md has no contents list"
    missing = [h for h in links if str(h).removeprefix("#") not in anchors]
    assert not missing, f"contents links with no heading: {missing}"
    sections = [slug(t) for level, t, _ in hs if level == 2 and t != "Contents"]
    assert [str(h).removeprefix("#") for h in links] == sections, \
        "the contents list names every section, in document order"
    # benchmarks/_docs.write_section finds its block by these markers, not by the heading
    names = set()
    for script in (REPO / "benchmarks").glob("*.py"):
        src = script.read_text()
        names |= set(re.findall(r"write_section\(\s*\"(\w+)\"", src))
        names |= set(re.findall(r"publish\(None if args\.no_write else \"(\w+)\"", src))
    assert len(names) >= 10
    for name in sorted(names):
        assert f"<!-- {name}:start -->" in text and f"<!-- {name}:end -->" in text, name


# The rules against the breakage of issue 27: each must fail on it.
BROKEN = """# edgeseg

## Workflow

```bash
edgeseg run --onnx model.onnx --source 0
```

### Watching a headless device

Prose.
# robot logs, no ROS needed
edgeseg run --onnx model.onnx --source rec.mcap
# 7. ROS 2 node

```
Triton: prose rendered as code.

### From Python

```python
import edgeseg
```
"""


def test_rules_catch_the_issue_27_readme() -> None:
    problems = fence_problems(BROKEN) + heading_problems(BROKEN)
    assert any("robot logs" in p for p in problems)
    assert any("7. ROS 2 node" in p for p in problems)
    assert any("'```python' inside" in p for p in problems)  # "### From Python" became code
    assert fence_problems("# t\n\n```bash\nedgeseg run\n") == [
        "line 3: fence ```bash is never closed"]


def test_bash_rule_catches_prose_in_a_block() -> None:
    text = "# t\n\n```bash\nedgeseg run \\\n  --source 0\n`--sink http://HOST` serves a page\n```\n"
    (problem,) = bash_problems(text)
    assert "--sink http://HOST" in problem


def test_slug_matches_github_anchors() -> None:
    assert slug("`edgeseg run`: end-to-end vs network-only FPS") == \
        "edgeseg-run-end-to-end-vs-network-only-fps"
    assert slug("Bags: bag -> Segmenter -> bag") == "bags-bag---segmenter---bag"


def test_write_section_replaces_its_block_only(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from _docs import write_section
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    doc = tmp_path / "b.md"
    doc.write_text("# B\n\n<!-- a:start -->\nold a\n<!-- a:end -->\n\n<!-- c:start -->\nc\n<!-- c:end -->\n")
    write_section("a", "## A\n\nnew a", doc)
    write_section("d", "## D", doc)
    assert doc.read_text() == ("# B\n\n<!-- a:start -->\n## A\n\nnew a\n<!-- a:end -->\n\n"
                               "<!-- c:start -->\nc\n<!-- c:end -->\n\n<!-- d:start -->\n## D\n"
                               "<!-- d:end -->\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.md"]  # no temp file left
