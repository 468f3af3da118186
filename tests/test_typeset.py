"""Every formula of the documentation typesets with MathJax 3, the engine GitHub renders math with.

``tools/typeset/typeset_check.mjs`` (Node) finds the formulas as GitHub does (```` ```math ```` blocks,
``$`...`$`` spans), typesets each with MathJax (TeX packages ``base`` and ``ams``, errors raised, unknown
macros errors) and reports any ``$`` left bare, where GitHub's Markdown would eat ``\\,``, ``\\|`` and ``\\\\``
before MathJax sees them. It needs ``node`` and ``npm ci --prefix tools/typeset`` (the README's test
command; .ci/run installs both); without them the tests skip, except under IWAE_NP_REQUIRE_OPTIONAL=1 (CI).

The checker is tested on broken input too: a test that only ever sees good formulas cannot tell a checker
that typesets them from one that typesets nothing.
"""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REQUIRE_OPTIONAL

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "typeset"
SCRIPT = TOOL / "typeset_check.mjs"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def need_node():
    missing = None
    if shutil.which("node") is None:
        missing = "node is not installed (apt-get install nodejs npm)"
    elif not (TOOL / "node_modules" / "mathjax-full").is_dir():
        missing = "MathJax is not installed (npm ci --prefix tools/typeset)"
    if missing:
        if REQUIRE_OPTIONAL:
            pytest.fail(f"{missing}, and IWAE_NP_REQUIRE_OPTIONAL=1 (CI) requires it")
        pytest.skip(missing)


def typeset(*paths):
    """``(exit code, {file: (display, inline)}, [problem lines])`` of the checker run on ``paths``."""
    need_node()
    run = subprocess.run(["node", str(SCRIPT), *map(str, paths)], capture_output=True, text=True, timeout=120)
    counts, problems = {}, []
    for line in run.stdout.splitlines():
        count = re.fullmatch(r"(.+): (\d+) formulas \((\d+) display, (\d+) inline\)", line)
        if count:
            counts[count.group(1)] = (int(count.group(3)), int(count.group(4)))
        elif not line.startswith("typeset "):
            problems.append(line)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    return run.returncode, counts, problems


def expected_counts(text):
    """``(display, inline)`` counted independently of the checker: ```` ```math ```` openings, and ``$`` +
    backtick pairs outside fenced blocks (the docs write no other code span next to a ``$``)."""
    display = inline = 0
    inside = False
    for line in text.split("\n"):
        if line.strip().startswith("```"):
            display += (not inside) and line.strip() == "```math"
            inside = not inside
        elif not inside:
            inline += line.count("$`")
    return display, inline


def test_every_formula_of_the_docs_typesets():
    code, counts, problems = typeset(*DOCS)
    assert problems == [] and code == 0, "\n".join(problems)
    for path in DOCS:
        assert counts[str(path)] == expected_counts(path.read_text()), path
    display, inline = counts[str(ROOT / "docs" / "math.md")]
    assert display >= 30 and inline >= 250, "docs/math.md should have its formulas found"


#: Markdown that renders wrongly on GitHub (an error box, a red macro, eaten escapes, a literal backslash,
#: a split table cell), with the message the checker must give for it.
BROKEN = [
    ("a broken $`\\frac{a}{`$ formula", "Missing close brace"),
    ("```math\n\\frac{a}{b\n```", "Missing close brace"),
    ("an unknown $`\\foo x`$ macro", "Undefined control sequence \\foo"),
    ("```math\n\\begin{aligned} a &= b \\\\ &= \\nosuchmacro \\end{aligned}\n```", "\\nosuchmacro"),
    ("a bare $x^2$ formula", "bare $"),
    ("a bare display\n\n$$\nx^2\n$$\n", "bare $"),
    ("```math\nx = \\text{pass\\_scale}\n```", "\\text{...}"),
    ("| a | $`\\lvert g|`$ |\n|---|---|", "splits the cell"),
]


def test_the_check_fails_on_a_broken_formula(tmp_path):
    # one page per case, checked in one run of the checker: a checker that passes any of them checks nothing
    pages = []
    for n, (markdown, message) in enumerate(BROKEN):
        page = tmp_path / f"page{n}.md"
        page.write_text("# A page\n\nSome prose, and a good $`\\tilde w_i`$.\n\n" + markdown + "\n")
        pages.append((page, markdown, message))
    code, counts, problems = typeset(*(page for page, _, _ in pages))
    assert code == 1
    for page, markdown, message in pages:
        found = [p for p in problems if p.startswith(f"{page}:")]
        assert len(found) == 1 and message in found[0], (markdown, found)


def test_the_check_passes_what_github_renders_and_skips_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "Inline $`D_{KL}\\big(q \\,\\|\\, p\\big)`$, prices of \\$5 and <span>$</span>6, `$HOME` in code, ``a ` $`x`$ ``.",
        "",
        "```math",
        "\\begin{aligned} a &= b \\\\ &= \\operatorname{softplus}(l) && \\tfrac12 \\lVert x \\rVert \\end{aligned}",
        "```",
        "",
        "```python",
        ">>> cost = '$5 and $x$'",
        "```",
        "",
        "| estimator | weight |",
        "|---|---|",
        "| DReG | $`\\tilde w_i^2 \\lvert g \\rvert`$ |",
    ]))
    code, counts, problems = typeset(page)
    assert (code, problems) == (0, [])
    assert counts[str(page)] == (1, 2)
