/* Mathematics in answers: $…$ and \(…\) inline, $$…$$ and \[…\] displayed.
 *
 * Two steps around the sanitiser. Before it, a marked extension turns each formula into a
 * placeholder (`<span class="math" data-math="inline">` holding the TeX as escaped text), so
 * code spans and code blocks, which marked reads first, never hold math. After it, KaTeX
 * typesets each placeholder's text through DOM calls (no HTML string is parsed, styles go
 * through the CSSOM, which the CSP's `style-src 'self'` allows), with `trust: false`, so no
 * formula can make a link, an id, a class or a style. Pure but for `typesetMath`'s element. */

// A formula that does not parse is shown as its TeX (throwOnError), never in KaTeX's
// red error span, whose inline style attribute the CSP would block.
export const KATEX_OPTIONS = Object.freeze({
  throwOnError: true,
  trust: false,
  strict: "ignore",
  output: "htmlAndMathml",
  maxSize: 20,
  maxExpand: 200,
});

// $x$ as in pandoc: no space just inside either dollar, and no digit right after the closing one,
// so "between $5 and $10" stays text.
const INLINE_RULES = [
  { display: true, re: /^\$\$(?!\$)([\s\S]+?)\$\$/ },
  { display: true, re: /^\\\[([\s\S]+?)\\\]/ },
  { display: false, re: /^\\\(([\s\S]+?)\\\)/ },
  { display: false, re: /^\$(?![\s$])((?:\\[\s\S]|[^\\$\n])+?)(?<![\s\\])\$(?!\d)/ },
];
const BLOCK_RULES = [
  { display: true, re: /^\$\$([\s\S]+?)\$\$[ \t]*(?:\n+|$)/ },
  { display: true, re: /^\\\[([\s\S]+?)\\\][ \t]*(?:\n+|$)/ },
];

export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** The placeholder a formula becomes in marked's HTML; `typesetMath` finds it after sanitising. */
export function mathPlaceholder(tex, display, block = false) {
  const tag = block ? "div" : "span";
  return `<${tag} class="math" data-math="${display ? "display" : "inline"}">${escapeHtml(tex.trim())}</${tag}>`;
}

function tokenizerFor(rules, type) {
  return (src) => {
    for (const { display, re } of rules) {
      const match = re.exec(src);
      if (match && match[1].trim()) return { type, raw: match[0], text: match[1], display };
    }
    return undefined;
  };
}

/** marked extensions (`marked.use({ extensions })`) for inline and block formulas. */
export function mathExtensions() {
  return [
    {
      name: "mathBlock",
      level: "block",
      start: (src) => src.match(/^(?:\$\$|\\\[)/m)?.index,
      tokenizer: tokenizerFor(BLOCK_RULES, "mathBlock"),
      renderer: (token) => `${mathPlaceholder(token.text, true, true)}\n`,
    },
    {
      name: "mathInline",
      level: "inline",
      start: (src) => src.match(/\$|\\[([]/)?.index,
      tokenizer: tokenizerFor(INLINE_RULES, "mathInline"),
      renderer: (token) => mathPlaceholder(token.text, token.display),
    },
  ];
}

/** Typeset every placeholder under `root` with KaTeX; without KaTeX (not loaded yet) the TeX stays. */
export function typesetMath(root, katex) {
  if (!katex) return;
  for (const node of root.querySelectorAll(".math[data-math]")) {
    const tex = node.textContent;
    const displayMode = node.dataset.math === "display";
    try {
      katex.render(tex, node, { ...KATEX_OPTIONS, displayMode });
    } catch (error) {
      node.textContent = tex;
      node.classList.add("math-error");
      node.title = error && error.message ? error.message : "This formula could not be read.";
    }
  }
}
