"""Run the >>> examples of a markdown file in one namespace and write each example's actual output back.

Usage: python3 docs/refresh_examples.py docs/math.md  (rewrites the file in place; prints a summary)

For an intended change of a printed number: run this, read the diff, commit. tests/test_docs.py checks the
file as it stands, so an unintended change fails the tests instead.
"""
import doctest
import sys

import numpy as np

path = sys.argv[1]
text = open(path).read()
lines = text.split("\n")

# find python code blocks
blocks = []  # (start_line_idx_of_content, end_line_idx_exclusive)
i = 0
while i < len(lines):
    if lines[i].strip() == "```python":
        j = i + 1
        while lines[j].strip() != "```":
            j += 1
        blocks.append((i + 1, j))
        i = j
    i += 1

globs = {"__name__": "docs_math"}
parser = doctest.DocTestParser()


class Recorder(doctest.DocTestRunner):
    def __init__(self):
        super().__init__(verbose=False, optionflags=0)
        self.got = {}

    def report_success(self, out, test, example, got):
        self.got[id(example)] = got

    def report_failure(self, out, test, example, got):
        self.got[id(example)] = got

    def report_unexpected_exception(self, out, test, example, exc_info):
        raise exc_info[1]


new_lines = list(lines)
replacements = []
with np.printoptions(precision=8, linewidth=75, threshold=1000, suppress=False, floatmode="maxprec", sign="-"):
    for start, end in blocks:
        body = "\n".join(lines[start:end])
        if ">>>" not in body:
            continue
        # strip existing outputs: keep only >>> and ... lines
        src_lines = [l for l in lines[start:end] if l.lstrip().startswith(">>>") or l.lstrip().startswith("...")]
        src = "\n".join(src_lines) + "\n"
        test = parser.get_doctest(src, globs, "block", path, start)
        test.globs = globs  # one namespace for the whole file (DocTest copies its globs)
        runner = Recorder()
        runner.run(test, clear_globs=False)
        out = []
        bounds = [ex.lineno for ex in test.examples] + [len(src_lines)]
        for n, ex in enumerate(test.examples):
            out += src_lines[bounds[n]:bounds[n + 1]]
            got = runner.got.get(id(ex), "")
            if got:
                out += got.rstrip("\n").split("\n")
        replacements.append((start, end, out))

for start, end, out in reversed(replacements):
    new_lines[start:end] = out
open(path, "w").write("\n".join(new_lines))
print(f"filled {len(replacements)} blocks")
