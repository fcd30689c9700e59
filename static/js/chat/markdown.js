/* An answer's markdown on its way into the page: marked turns it into HTML (formulas into
 * placeholders, math.js), DOMPurify keeps only what is safe, then highlight.js colours the
 * code and KaTeX typesets the placeholders' text. The libraries are the
 * vendored globals of classic <script defer> tags (static/vendor); the pure steps take
 * them as parameters, so tests can give them fakes. */
import { copyButton, h } from "./dom.js";
import { mathExtensions, typesetMath } from "./math.js";

export const MARKED_OPTIONS = { gfm: true, breaks: false };

export const PURIFY = {
  USE_PROFILES: { html: true },
  // Images: the CSP blocks remote ones anyway, and same-origin ones would let an answer make requests.
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option", "img"],
  FORBID_ATTR: ["style"],
};

/** DOMPurify hook: a link in an answer opens in a new tab that cannot reach back to this page. */
export function openLinksApart(node) {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
}

/** Set the libraries up (once) and return markdown → safe HTML; null while marked or DOMPurify is missing. */
export function markdownPipeline({ marked, DOMPurify }) {
  if (!marked || !DOMPurify) return null;
  marked.setOptions(MARKED_OPTIONS);
  marked.use({ extensions: mathExtensions() });
  DOMPurify.addHook("afterSanitizeAttributes", openLinksApart);
  return (text) => DOMPurify.sanitize(marked.parse(text), PURIFY);
}

/** "python" from marked's `class="language-python"`; "" when the fence named none. */
export function codeLanguage(className) {
  const match = /(?:^|\s)language-([\w+#.-]+)/.exec(className);
  return match ? match[1] : "";
}

/** Colour a <code> with highlight.js; a language it does not know stays plain. Returns the language. */
export function highlightCode(code, hljs) {
  const language = codeLanguage(code.className);
  if (hljs) {
    if (language && !hljs.getLanguage(language)) code.classList.add("hljs");
    else hljs.highlightElement(code);
  }
  return language;
}

let toSafeHtml = null;

/** Replace `target`'s content with `text` rendered; plain text until the libraries have loaded. */
export function renderMarkdown(target, text) {
  toSafeHtml = toSafeHtml || markdownPipeline(window);
  if (!toSafeHtml) {
    target.textContent = text;
    target.classList.add("plain");
    return;
  }
  target.innerHTML = toSafeHtml(text);
  for (const table of target.querySelectorAll("table")) {
    const wrap = h("div", { className: "table-wrap" });
    table.replaceWith(wrap);
    wrap.append(table);
  }
  for (const code of target.querySelectorAll("pre > code")) decorateCode(code);
  typesetMath(target, window.katex);
}

function decorateCode(code) {
  const pre = code.parentElement;
  const language = highlightCode(code, window.hljs);
  const copy = copyButton("code-copy", language ? `Copy ${language} code` : "Copy code", () => code.textContent);
  const block = h("div", { className: "code-block" }, [
    h("div", { className: "code-head" }, [h("span", { className: "code-lang", text: language || "code" }), copy]),
  ]);
  pre.replaceWith(block);
  block.append(pre);
}
