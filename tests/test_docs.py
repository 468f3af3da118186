"""The documentation's numbers and references, checked: docs/math.md's examples and the README's example.

- Every ``>>>`` session in docs/math.md runs as one doctest, in order and in one namespace, and every
  printed value must match: a change in the code that moves a printed number (a dropped ``- log k``, a
  softplus that overflows, a schedule off by one stage) fails here. ``docs/refresh_examples.py``, which
  writes intended changes back, leaves an up-to-date page unchanged.
- The README's "A short example" block runs, and what it prints must equal the README's "prints" block
  exactly: the numbers a new user reads are the numbers the code gives.
- Every relative link of docs/math.md points at a file that exists; a link to a module names an
  attribute the module has (a renamed or removed function fails); every ``#anchor`` link (in the page,
  and from the README into it) names a heading that exists. The README's "From the paper to the code"
  table names only functions that exist.
- The README's main-job table, its claims and the seed spread are what the committed
  ``docs/reproduction/results/main-seed*/results.json`` format to, and the committed ``table.md`` (what
  the command printed) says the same: a hand-edited number, or a formatter that changed since the run,
  fails here.
- No document or module cites "SPEC", a file users never receive.
"""
import contextlib
import doctest
import importlib
import importlib.util
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MATH = ROOT / "docs" / "math.md"
README = ROOT / "README.md"

#: numpy's default print options: a test elsewhere that changes them must not change what the docs print.
NUMPY_DEFAULTS = dict(precision=8, threshold=1000, edgeitems=3, linewidth=75, suppress=False, nanstr="nan",
                      infstr="inf", sign="-", floatmode="maxprec", legacy=False)

LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)")


def code_blocks(text, language):
    """``[(first line index of the content, [lines])]`` of the fenced blocks opened with ```` ```language ````."""
    lines, blocks, i = text.split("\n"), [], 0
    while i < len(lines):
        if lines[i].strip() == "```" + language:
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            assert j < len(lines), f"unclosed ```{language} block at line {i + 1}"
            blocks.append((i + 1, lines[i + 1:j]))
            i = j
        i += 1
    return blocks


def prose_lines(text):
    """The lines of a markdown text outside fenced code blocks (with their 1-based numbers)."""
    inside = False
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            yield number, line


def github_slug(heading):
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    """The anchors of the headings of a markdown file (GitHub's, with -1, -2 ... for repeats)."""
    seen, out = {}, set()
    for _, line in prose_lines(path.read_text()):
        match = re.match(r"#{1,6} (.+)$", line)
        if match:
            slug = github_slug(match.group(1))
            out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return out


# ---------------------------------------------------------------------------------------------
# docs/math.md: the doctests


def math_doctest():
    """docs/math.md as one DocTest: the ```python blocks kept in place, every other line blanked (so the
    line numbers of a failure are the file's)."""
    text = MATH.read_text()
    lines = [""] * len(text.split("\n"))
    for start, block in code_blocks(text, "python"):
        lines[start:start + len(block)] = block
    return doctest.DocTestParser().get_doctest("\n".join(lines), {"__name__": "docs_math"}, "docs/math.md",
                                               str(MATH), 0)


def test_every_python_block_of_math_md_is_a_doctest_session():
    # a plain code block would never run, and its numbers could rot unseen
    for start, block in code_blocks(MATH.read_text(), "python"):
        assert block and block[0].startswith(">>> "), f"docs/math.md line {start}: a python block that is not a doctest"


def test_math_md_examples():
    test = math_doctest()
    assert len(test.examples) >= 100, f"only {len(test.examples)} examples found in docs/math.md"
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.REPORT_NDIFF)
    with np.printoptions(**NUMPY_DEFAULTS):
        result = runner.run(test, out=report.append)
    assert result.attempted == len(test.examples)
    assert result.failed == 0, "docs/math.md examples failed:\n" + "".join(report)


def test_refresh_examples_leaves_an_up_to_date_page_unchanged(tmp_path):
    # docs/refresh_examples.py is how an intended change of a printed number gets into the page: run on
    # a page whose examples pass, it must write the page back byte for byte (a refresher that drops a
    # continuation line, an output or the closing fence would corrupt the page it is meant to update)
    spec = importlib.util.spec_from_file_location("refresh_examples", ROOT / "docs" / "refresh_examples.py")
    refresh_examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh_examples)
    page = tmp_path / "math.md"
    page.write_text(MATH.read_text())
    blocks, changed = refresh_examples.refresh(page)
    assert blocks == len(code_blocks(MATH.read_text(), "python")) and changed == []
    assert page.read_text() == MATH.read_text()


# ---------------------------------------------------------------------------------------------
# README: "A short example"


def readme_section(title):
    text = README.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def readme_example():
    """``(code, printed)``: the README example's python block and the block after "prints"."""
    section = readme_section("A short example")
    match = re.search(r"```python\n(.*?)```\s*\nprints\s*\n\s*```\n(.*?)```", section, flags=re.S)
    assert match, "the README's short example must be a ```python block, the word 'prints', then a ``` block"
    return match.group(1), match.group(2)


def test_readme_example_prints_what_the_readme_says():
    code, printed = readme_example()
    out = io.StringIO()
    with np.printoptions(**NUMPY_DEFAULTS), contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (A short example)", "exec"), {"__name__": "readme_example"})
    assert printed.strip(), "the README's 'prints' block is empty"
    assert out.getvalue() == printed, f"the README says it prints\n{printed}\nbut it prints\n{out.getvalue()}"


# ---------------------------------------------------------------------------------------------
# links and names


def resolve(dotted, package="iwae_np"):
    """``"experiments.training.train_step"`` -> the object: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join([package, *parts[:cut]]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)  # AttributeError names what is missing
        return obj
    raise ModuleNotFoundError(f"no module of {package} in {dotted!r}")


def module_name(path):
    """``.../iwae_np/experiments/evaluation.py`` -> ``iwae_np.experiments.evaluation``."""
    parts = path.resolve().relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def links(path):
    """``[(line number, text, target)]`` of the markdown links outside code blocks."""
    return [(number, text, target) for number, line in prose_lines(path.read_text())
            for text, target in LINK.findall(line)]


def test_math_md_links_point_at_files_functions_and_headings_that_exist():
    problems, checked = [], 0
    for number, text, target in links(MATH):
        if re.match(r"[a-z]+:", target):  # https: and the like
            continue
        file_part, _, anchor = target.partition("#")
        path = (MATH.parent / file_part) if file_part else MATH
        where = f"docs/math.md line {number}: [{text}]({target})"
        if not path.exists():
            problems.append(f"{where}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
            continue
        if anchor and anchor not in anchors(path):
            problems.append(f"{where}: no heading with the anchor #{anchor}")
        if path.suffix == ".py":
            name = re.fullmatch(r"`([\w.]+)`", text)
            if not name:
                problems.append(f"{where}: a link to a module must name what it points at, as `function`")
                continue
            module = importlib.import_module(module_name(path))
            if name.group(1) != module.__name__.rsplit(".", 1)[-1]:  # the module itself, or a name in it
                obj = module
                try:
                    for attr in name.group(1).split("."):
                        obj = getattr(obj, attr)
                except AttributeError:
                    problems.append(f"{where}: {module.__name__} has no {name.group(1)}")
        checked += 1
    assert checked >= 80, f"only {checked} relative links found in docs/math.md"
    assert not problems, "\n".join(problems)


def test_readme_links_into_math_md_name_headings_that_exist():
    targets = [(number, target) for number, _, target in links(README) if target.startswith("docs/math.md")]
    assert len(targets) >= 10, "the README's table should link its rows to docs/math.md"
    math_anchors = anchors(MATH)
    missing = [f"README line {n}: {t}" for n, t in targets if "#" in t and t.partition("#")[2] not in math_anchors]
    assert not missing, "links to headings docs/math.md does not have:\n" + "\n".join(missing)


def test_readme_table_names_functions_that_exist():
    rows = [line for line in readme_section("From the paper to the code").split("\n") if line.startswith("|")]
    cells = [re.split(r"(?<!\\)\|", row)[1:-1] for row in rows[2:]]  # GitHub splits cells at every unescaped |
    assert all(len(c) == 3 for c in cells), [row for row, c in zip(rows[2:], cells) if len(c) != 3]
    names = [name for c in cells for name in re.findall(r"`([\w.]+)`", c[2])]
    assert len(names) >= 20
    for name in names:
        resolve(name)  # raises naming the module or attribute that does not exist


def test_no_document_or_module_cites_spec():
    # users never receive a SPEC file: cite the paper (section, equation) or docs/math.md
    files = [README, *ROOT.glob("docs/*.md"), *ROOT.glob("iwae_np/**/*.py"), *ROOT.glob("examples/*.py"),
             *ROOT.glob("bench/*.py"), *ROOT.glob("bench/*.md")]
    cited = [f"{path.relative_to(ROOT)}:{n}" for path in files
             for n, line in enumerate(path.read_text().split("\n"), start=1) if re.search(r"\bSPEC\b", line)]
    assert not cited, "cites SPEC: " + ", ".join(cited)


@pytest.mark.parametrize("heading, slug", [
    ("The IWAE bound (eq. 8)", "the-iwae-bound-eq-8"),
    ("The paper, the authors' code and this code", "the-paper-the-authors-code-and-this-code"),
    ("log_mean_exp", "log_mean_exp"),
    ("More bounds: MIWAE, CIWAE, Renyi", "more-bounds-miwae-ciwae-renyi"),
])
def test_github_slug(heading, slug):
    # GitHub's rule (github-slugger): lowercase, drop everything but letters, digits, _, - and spaces, spaces to -
    assert github_slug(heading) == slug


# ---------------------------------------------------------------------------------------------
# README: the main job's printed table, claims and seed spread, against the committed results

MAIN_RUNS = ROOT / "docs" / "reproduction" / "results"


def main_results(seed):
    return json.loads((MAIN_RUNS / f"main-seed{seed}" / "results.json").read_text())


def test_readme_main_job_table_and_claims_are_what_the_committed_results_format_to():
    from iwae_np.experiments.claims import claims_report
    from iwae_np.experiments.table import markdown_table

    results = main_results(0)
    printed = (MAIN_RUNS / "main-seed0" / "table.md").read_text()
    table = markdown_table(results, "fashion-mnist", ks=[1, 50], layers=[1])
    claims = claims_report([r for r in results if r.get("status") == "finished"], "fashion-mnist")
    assert printed.startswith(table + "\n\n"), "table.md's table is not what results.json formats to"
    assert printed.rstrip("\n").endswith(claims), "table.md's claims are not what results.json formats to"
    assert "**reproduced**" in claims and "contradicted" not in claims.split("Verdicts:")[0]
    readme = README.read_text()
    assert printed.strip() in readme, "the README must show the main job's table.md verbatim"
    wall = re.search(r"Wall time (\d+) s", printed).group(1)
    assert f"wall time {wall} s" in readme


def test_readme_seed_spread_is_what_the_committed_results_give():
    from iwae_np.experiments.claims import seed_spread, table_claims

    lists = [table_claims(main_results(seed), 1, "MNIST") for seed in (0, 1, 2)]
    spread = seed_spread(lists)
    a = [c for claims in lists for c in claims if c.key == "a"]
    row_a = (" | ".join(f"{c.difference.mean:.2f} ± {c.difference.se:.2f}" for c in a)
             + f" | {spread['a']['mean']:.2f} | {spread['a']['sd']:.2f} |")
    row_c = (" | ".join(str(v) for v in (int(x) for x in spread["c"]["values"]))
             + f" | {spread['c']['mean']:.1f} | {spread['c']['sd']:.1f} |")
    readme = README.read_text()
    assert "| (a) VAE − IWAE at k = 50, nats | " + row_a in readme, row_a
    assert "| (c) IWAE − VAE active units at k = 50 | " + row_c in readme, row_c
