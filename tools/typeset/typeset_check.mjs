// Typeset every formula of the given markdown files with MathJax 3, the engine GitHub renders math
// with, and fail on the first problem of each formula. Usage (from the repository root):
//
//     node tools/typeset/typeset_check.mjs README.md docs/*.md
//
// Prints each file's count of formulas, then one line per problem, "file:line: what", and exits 1 if
// there is any (2 on bad usage).
// Run by tests/test_typeset.py; `npm ci --prefix tools/typeset` installs MathJax (.ci/run does).
//
// Formulas are found the way GitHub finds them, restricted to the two forms GitHub documents as safe
// from Markdown's escapes:
//   - display math: a fenced code block whose info string is `math`;
//   - inline math: a code span written $`...`$ (the code span keeps backslashes verbatim).
// Any other `$` in prose (a bare $...$ or $$...$$, where GitHub's Markdown may eat `\,` `\|` `\\`
// before MathJax sees them) is reported; write a literal dollar sign as <span>$</span>, as GitHub's
// documentation advises, or as `\$`.
//
// MathJax is configured strictly: TeX packages `base` and `ams` only (everything the docs need), no
// `noundefined` (which would typeset an unknown macro in red instead of failing), and a `formatError`
// that throws instead of typesetting the error message.  `\text{...}` may not contain a backslash: base
// MathJax typesets its argument literally, so `\text{pass\_scale}` would show the backslash.

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const { mathjax } = require('mathjax-full/js/mathjax.js');
const { TeX } = require('mathjax-full/js/input/tex.js');
const { SVG } = require('mathjax-full/js/output/svg.js');
const { liteAdaptor } = require('mathjax-full/js/adaptors/liteAdaptor.js');
const { RegisterHTMLHandler } = require('mathjax-full/js/handlers/html.js');
require('mathjax-full/js/input/tex/base/BaseConfiguration.js');
require('mathjax-full/js/input/tex/ams/AmsConfiguration.js');

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/;

/** The formulas of a markdown text: [{line, tex, display}], and the problems found while extracting. */
export function extract(text) {
  const lines = text.split('\n');
  const formulas = [];
  const problems = [];
  let paragraph = [];  // [{number, text}] of the prose block being read

  const flush = () => {
    if (paragraph.length) scanProse(paragraph, formulas, problems);
    paragraph = [];
  };

  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(FENCE);
    if (open) {
      flush();
      const [, fence, info] = open;
      let j = i + 1;
      const body = [];
      while (j < lines.length && !closes(lines[j], fence)) body.push(lines[j++]);
      if (j === lines.length) problems.push({ line: i + 1, what: `unclosed ${fence} block` });
      if (info === 'math') {
        const tex = body.join('\n');
        if (!tex.trim()) problems.push({ line: i + 1, what: 'empty ```math block' });
        else formulas.push({ line: i + 2, tex, display: true });
      }
      i = j;
      continue;
    }
    if (!lines[i].trim()) flush();
    else if (/^\s*\|/.test(lines[i])) {  // a table row is a block of its own: GitHub splits it into cells first
      flush();
      scanProse([{ number: i + 1, text: lines[i] }], formulas, problems, true);
    } else paragraph.push({ number: i + 1, text: lines[i] });
  }
  flush();
  return { formulas, problems };
}

function closes(line, fence) {
  const m = line.match(/^ {0,3}(`{3,}|~{3,})\s*$/);
  return m !== null && m[1][0] === fence[0] && m[1].length >= fence.length;
}

/** Code spans (CommonMark: a run of n backticks up to the next run of exactly n) and $`...`$ math. */
function scanProse(block, formulas, problems, tableRow = false) {
  const text = block.map((l) => l.text).join('\n');
  const starts = [];  // offset of each line in text
  let offset = 0;
  for (const l of block) { starts.push(offset); offset += l.text.length + 1; }
  const lineAt = (pos) => {
    let k = 0;
    while (k + 1 < starts.length && starts[k + 1] <= pos) k++;
    return block[k].number;
  };

  let outside = '';  // the text outside code spans, where a `$` is a bare dollar
  const outsideAt = [];
  let pos = 0;
  while (pos < text.length) {
    if (text[pos] === '\\' && pos + 1 < text.length) {  // a backslash escape, e.g. \$ or \`
      pos += 2;
      continue;
    }
    if (text[pos] === '`') {
      let n = 0;
      while (text[pos + n] === '`') n++;
      const close = findClosing(text, pos + n, n);
      if (close < 0) { pos += n; continue; }  // no closing run: literal backticks
      const content = text.slice(pos + n, close);
      const isMath = text[pos - 1] === '$' && text[close + n] === '$';
      if (isMath) {
        let tex = content.replace(/\n/g, ' ');
        if (/^ .* $/s.test(tex) && tex.trim()) tex = tex.slice(1, -1);
        if (tableRow) {
          if (/(^|[^\\])\|/.test(tex)) {
            problems.push({ line: lineAt(pos), what: `\`|\` in a table cell's formula splits the cell: write \\vert or \\mid (${content})` });
          }
          tex = tex.replace(/\\\|/g, '|');  // GitHub unescapes \| in table cells, also in code spans
        }
        formulas.push({ line: lineAt(pos), tex, display: false });
        outside = outside.slice(0, -1);  // the opening $ belongs to the formula
        outsideAt.pop();
        pos = close + n + 1;  // past the closing $
      } else {
        pos = close + n;
      }
      continue;
    }
    outside += text[pos];
    outsideAt.push(pos);
    pos++;
  }
  for (let k = 0; k < outside.length; k++) {
    if (outside[k] === '$') {
      const at = outsideAt[k];
      const escaped = (at > 0 && text[at - 1] === '\\') || text.slice(at - 6, at + 8) === '<span>$</span>';
      if (!escaped) {
        problems.push({
          line: lineAt(at),
          what: 'bare $ outside a code span: GitHub applies Markdown escapes inside $...$ and $$...$$; '
            + 'write inline math as $`...`$ and display math in a ```math block (a literal dollar as <span>$</span>)',
        });
        break;  // one report per block is enough
      }
    }
  }
}

function findClosing(text, from, n) {
  let p = from;
  while (p < text.length) {
    if (text[p] === '`') {
      let m = 0;
      while (text[p + m] === '`') m++;
      if (m === n) return p;
      p += m;
    } else p++;
  }
  return -1;
}

/** A MathJax document that throws on any TeX error or unknown macro. */
export function makeTypesetter() {
  const adaptor = liteAdaptor();
  RegisterHTMLHandler(adaptor);
  const tex = new TeX({
    packages: ['base', 'ams'],
    formatError: (jax, err) => { throw err; },
  });
  const svg = new SVG({ fontCache: 'none' });
  const doc = mathjax.document('', { InputJax: tex, OutputJax: svg });
  return (formula, display) => {
    if (/\\text\s*\{[^}]*\\/.test(formula)) {
      throw new Error('a backslash inside \\text{...} is typeset literally: use \\mathrm{...} (with \\_ there) instead');
    }
    doc.convert(formula, { display });
  };
}

function main(files) {
  if (!files.length) {
    console.error('usage: node tools/typeset/typeset_check.mjs FILE.md ...');
    process.exit(2);
  }
  const typeset = makeTypesetter();
  let count = 0;
  const problems = [];
  for (const file of files) {
    let text;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      console.error(`${file}: cannot read (${err.code || err.message})`);
      process.exit(2);
    }
    const found = extract(text);
    const display = found.formulas.filter((f) => f.display).length;
    console.log(`${file}: ${found.formulas.length} formulas (${display} display, ${found.formulas.length - display} inline)`);
    for (const p of found.problems) problems.push(`${file}:${p.line}: ${p.what}`);
    for (const f of found.formulas) {
      count++;
      try {
        typeset(f.tex, f.display);
      } catch (err) {
        const message = (err && err.message) || String(err);
        const shown = f.tex.length > 80 ? f.tex.slice(0, 77) + '...' : f.tex;
        problems.push(`${file}:${f.line}: ${message} in ${JSON.stringify(shown)}`);
      }
    }
  }
  for (const p of problems) console.log(p);
  console.log(`typeset ${count} formulas in ${files.length} files: ${problems.length} problems`);
  process.exit(problems.length ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) main(process.argv.slice(2));
