// The markdown → sanitise → highlight pipeline (static/js/chat/markdown.js), with the
// vendored marked and fakes for DOMPurify and highlight.js, which need a DOM.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

import {
  MARKED_OPTIONS, PURIFY, codeLanguage, highlightCode, markdownPipeline, openLinksApart,
} from "../../static/js/chat/markdown.js";

const require = createRequire(import.meta.url);
const { Marked } = require("../../static/vendor/marked.umd.js");

/** A DOMPurify that records what it was given and answers `output`. */
function fakePurify(output = "<p>clean</p>") {
  const purify = {
    calls: [],
    hooks: [],
    addHook(name, hook) { purify.hooks.push([name, hook]); },
    sanitize(html, options) { purify.calls.push([html, options]); return output; },
  };
  return purify;
}

function fakeElement(tagName, attributes = {}, className = "") {
  const attrs = new Map(Object.entries(attributes));
  const classes = new Set();
  return {
    tagName,
    className,
    classes,
    classList: { add: (name) => classes.add(name) },
    hasAttribute: (name) => attrs.has(name),
    getAttribute: (name) => attrs.get(name),
    setAttribute: (name, value) => attrs.set(name, value),
  };
}

test("what the sanitiser returns is what the page gets, never marked's own output", () => {
  const purify = fakePurify("<p>safe</p>");
  const toSafeHtml = markdownPipeline({ marked: new Marked(), DOMPurify: purify });
  assert.equal(toSafeHtml("hi <script>alert(1)</script>"), "<p>safe</p>");
  const [[html, options]] = purify.calls;
  assert.match(html, /<script>alert\(1\)<\/script>/); // marked lets it through: the sanitiser must see it
  assert.equal(options, PURIFY);
});

test("markdown is parsed first, then sanitised, with the libraries set up once before", () => {
  const log = [];
  const marked = {
    setOptions: (options) => log.push(["setOptions", options]),
    use: ({ extensions }) => log.push(["use", extensions.map((e) => e.name)]),
    parse: (text) => { log.push(["parse", text]); return `<p>${text}</p>`; },
  };
  const purify = {
    addHook: (name, hook) => log.push(["addHook", name, hook]),
    sanitize: (html) => { log.push(["sanitize", html]); return html; },
  };
  const toSafeHtml = markdownPipeline({ marked, DOMPurify: purify });
  toSafeHtml("one");
  toSafeHtml("two");
  assert.deepEqual(log, [
    ["setOptions", MARKED_OPTIONS],
    ["use", ["mathBlock", "mathInline"]],
    ["addHook", "afterSanitizeAttributes", openLinksApart],
    ["parse", "one"], ["sanitize", "<p>one</p>"],
    ["parse", "two"], ["sanitize", "<p>two</p>"],
  ]);
});

test("without marked or DOMPurify there is no pipeline (the page shows plain text)", () => {
  assert.equal(markdownPipeline({ marked: undefined, DOMPurify: fakePurify() }), null);
  assert.equal(markdownPipeline({ marked: new Marked(), DOMPurify: undefined }), null);
});

test("GitHub markdown: fenced code keeps its language, tables render, single newlines do not break", () => {
  const purify = fakePurify();
  markdownPipeline({ marked: new Marked(), DOMPurify: purify })("a\nb\n\n```python\nx = 1\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
  const [[html]] = purify.calls;
  assert.match(html, /<p>a\nb<\/p>/);
  assert.doesNotMatch(html, /<br>/);
  assert.match(html, /<pre><code class="language-python">x = 1\n<\/code><\/pre>/);
  assert.match(html, /<table>/);
});

test("the sanitiser forbids images, forms and inline styles", () => {
  for (const tag of ["img", "style", "form", "input", "button", "textarea", "select", "option"]) {
    assert.ok(PURIFY.FORBID_TAGS.includes(tag), tag);
  }
  assert.deepEqual(PURIFY.FORBID_ATTR, ["style"]);
  assert.deepEqual(PURIFY.USE_PROFILES, { html: true });
});

test("links in answers open in a new tab that cannot reach the page", () => {
  const link = fakeElement("A", { href: "https://example.com" });
  openLinksApart(link);
  assert.equal(link.getAttribute("target"), "_blank");
  assert.equal(link.getAttribute("rel"), "noopener noreferrer");
  const anchor = fakeElement("A");
  openLinksApart(anchor);
  assert.equal(anchor.hasAttribute("target"), false);
  const span = fakeElement("SPAN", { href: "x" });
  openLinksApart(span);
  assert.equal(span.hasAttribute("target"), false);
});

test("the language is read from the code's class", () => {
  assert.equal(codeLanguage("language-python"), "python");
  assert.equal(codeLanguage("hljs language-c++"), "c++");
  assert.equal(codeLanguage("language-c#"), "c#");
  assert.equal(codeLanguage("notlanguage-python"), "");
  assert.equal(codeLanguage(""), "");
});

function fakeHljs(known) {
  const hljs = { highlighted: [], getLanguage: (name) => (known.includes(name) ? {} : undefined) };
  hljs.highlightElement = (code) => hljs.highlighted.push(code);
  return hljs;
}

test("code in a known language, or in none, is highlighted", () => {
  const hljs = fakeHljs(["python"]);
  const python = fakeElement("CODE", {}, "language-python");
  const unnamed = fakeElement("CODE");
  assert.equal(highlightCode(python, hljs), "python");
  assert.equal(highlightCode(unnamed, hljs), "");
  assert.deepEqual(hljs.highlighted, [python, unnamed]);
});

test("code in a language highlight.js does not know stays plain but styled", () => {
  const hljs = fakeHljs(["python"]);
  const code = fakeElement("CODE", {}, "language-brainfuck");
  assert.equal(highlightCode(code, hljs), "brainfuck");
  assert.deepEqual(hljs.highlighted, []);
  assert.ok(code.classes.has("hljs"));
});

test("without highlight.js code is left as it is", () => {
  const code = fakeElement("CODE", {}, "language-python");
  assert.equal(highlightCode(code, undefined), "python");
  assert.equal(code.classes.size, 0);
});
