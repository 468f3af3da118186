"""Run the >>> examples of a markdown file in one namespace and write each example's actual output back.

Usage, from anywhere: python3 docs/refresh_examples.py docs/math.md  (rewrites the file in place; prints
a summary and the line of every example whose output changed)

For an intended change of a printed number: run this, read the diff (``git diff docs/math.md``), check
that every changed number still shows what the prose around it says, commit. tests/test_docs.py checks
the file as it stands, so an unintended change fails the tests instead. The examples run against this
checkout's ``iwae_np`` (not an installed copy), with the numpy print options the test uses.
"""
import doctest
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's iwae_np, and tests.test_docs

from tests.test_docs import NUMPY_DEFAULTS, code_blocks  # noqa: E402  (one definition of both)


class Recorder(doctest.DocTestRunner):
    """Records what every example printed; an exception stops the refresh (fix the example first)."""

    def __init__(self):
        super().__init__(verbose=False, optionflags=0)
        self.got = {}

    def report_success(self, out, test, example, got):
        self.got[id(example)] = got

    def report_failure(self, out, test, example, got):
        self.got[id(example)] = got  # every example with output lands here: its source has no expected output

    def report_unexpected_exception(self, out, test, example, exc_info):
        raise SystemExit(f"{test.filename}: the example\n    {example.source.strip()}\nraised "
                         f"{exc_info[0].__name__}: {exc_info[1]}")


def refresh(path):
    """Rewrite ``path``'s python blocks with what their examples print; return (number of blocks, the first
    line of every block that now reads differently)."""
    lines = path.read_text().split("\n")
    globs = {"__name__": "docs_math"}
    parser, runner, replacements = doctest.DocTestParser(), Recorder(), []
    with np.printoptions(**NUMPY_DEFAULTS):
        for start, block in code_blocks("\n".join(lines), "python"):
            # keep only the source (>>> and ... lines); the outputs are what the run prints
            src_lines = [line for line in block if line.lstrip().startswith((">>>", "..."))]
            if not src_lines:
                continue
            test = parser.get_doctest("\n".join(src_lines) + "\n", globs, "block", str(path), start)
            test.globs = globs  # one namespace for the whole file (DocTest copies its globs)
            runner.run(test, clear_globs=False)
            out = []
            bounds = [ex.lineno for ex in test.examples] + [len(src_lines)]
            for n, example in enumerate(test.examples):
                out += src_lines[bounds[n]:bounds[n + 1]]
                got = runner.got.get(id(example), "")
                if got:
                    out += got.rstrip("\n").split("\n")
            replacements.append((start, start + len(block), out))
    changed = [start + 1 for start, end, out in replacements if lines[start:end] != out]
    for start, end, out in reversed(replacements):
        lines[start:end] = out
    path.write_text("\n".join(lines))
    return len(replacements), changed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 docs/refresh_examples.py FILE.md")
    blocks, changed = refresh(Path(sys.argv[1]))
    print(f"filled {blocks} blocks; {len(changed)} changed" + (f", starting at lines {changed}" if changed else ""))
