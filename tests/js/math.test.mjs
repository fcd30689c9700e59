// Formulas in answers (static/js/chat/math.js): marked's extension with the vendored marked,
// the vendored KaTeX for what the options allow, and a fake element for typesetting.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

import { KATEX_OPTIONS, mathExtensions, typesetMath } from "../../static/js/chat/math.js";

const require = createRequire(import.meta.url);
const { Marked } = require("../../static/vendor/marked.umd.js");
const katex = require("../../static/vendor/katex/katex.min.js");

function render(markdown) {
  const marked = new Marked({ gfm: true, breaks: false });
  marked.use({ extensions: mathExtensions() });
  return marked.parse(markdown);
}

test("the four delimiters become inline or display placeholders", () => {
  assert.match(render("Area $\\pi r^2$ here"), /Area <span class="math" data-math="inline">\\pi r\^2<\/span> here/);
  assert.match(render("Inline \\(a+b\\) too"), /<span class="math" data-math="inline">a\+b<\/span>/);
  assert.match(render("$$\nE = mc^2\n$$"), /<div class="math" data-math="display">E = mc\^2<\/div>/);
  assert.match(render("\\[\n\\int_0^1 x\\,dx\n\\]"), /<div class="math" data-math="display">\\int_0\^1 x\\,dx<\/div>/);
  assert.match(render("so $$x^2$$ inline"), /so <span class="math" data-math="display">x\^2<\/span> inline/);
});

test("code spans and code blocks keep their dollars and backslashes as code", () => {
  const html = render("Use `$x$` and `\\(y\\)`\n\n```latex\n$$z$$\n\\[w\\]\n```\n\n    $$indented$$\n");
  assert.doesNotMatch(html, /data-math/);
  assert.match(html, /<code>\$x\$<\/code>/);
  assert.match(html, /<pre><code class="language-latex">\$\$z\$\$\n\\\[w\\\]\n<\/code><\/pre>/);
});

test("prices and escaped dollars stay text", () => {
  for (const text of ["It costs $5 and $10.", "between $ 3 $ and", "from $x $ y", "escaped \\$x\\$ here", "$20-$30"]) {
    assert.doesNotMatch(render(text), /data-math/, text);
  }
});

test("TeX is escaped in the placeholder, so markup in a formula stays text for the sanitiser", () => {
  const html = render("$a<b>c</b>$ and $\"x\"&'y'$");
  assert.match(html, /data-math="inline">a&lt;b&gt;c&lt;\/b&gt;<\/span>/);
  assert.match(html, /data-math="inline">&quot;x&quot;&amp;&#39;y&#39;<\/span>/);
});

test("KaTeX runs untrusted: no links, classes, ids or styles from a formula, and errors throw", () => {
  assert.equal(KATEX_OPTIONS.trust, false);
  assert.equal(KATEX_OPTIONS.throwOnError, true);
  const html = katex.renderToString("\\href{javascript:alert(1)}{x} \\htmlStyle{color:red}{y} \\htmlClass{evil}{z}", KATEX_OPTIONS);
  assert.doesNotMatch(html, /<a |href=|class="evil"|style="color:red/);
  assert.match(html, /<annotation encoding="application\/x-tex">/); // the source is kept only as text
  assert.throws(() => katex.renderToString("\\frac{1}{", KATEX_OPTIONS), /ParseError/);
});

function fakePlaceholder(tex, math) {
  const classes = new Set(["math"]);
  return { textContent: tex, dataset: { math }, title: "", classes, classList: { add: (name) => classes.add(name) } };
}

test("placeholders are typeset in their mode; a formula KaTeX cannot read stays as its TeX, marked", () => {
  const inline = fakePlaceholder("x^2", "inline");
  const display = fakePlaceholder("\\sum_i i", "display");
  const broken = fakePlaceholder("\\frac{1}{", "inline");
  const root = { querySelectorAll: (selector) => (selector === ".math[data-math]" ? [inline, display, broken] : []) };
  const calls = [];
  typesetMath(root, {
    render(tex, node, options) {
      calls.push([tex, node, options.displayMode, options.trust]);
      if (tex.startsWith("\\frac")) throw new Error("KaTeX parse error: Expected '}'");
    },
  });
  assert.deepEqual(calls, [["x^2", inline, false, false], ["\\sum_i i", display, true, false], ["\\frac{1}{", broken, false, false]]);
  assert.equal(broken.textContent, "\\frac{1}{");
  assert.ok(broken.classes.has("math-error"));
  assert.match(broken.title, /Expected/);
});

test("without KaTeX the placeholders keep their TeX", () => {
  const node = fakePlaceholder("x", "inline");
  typesetMath({ querySelectorAll: () => [node] }, undefined);
  assert.equal(node.textContent, "x");
});
