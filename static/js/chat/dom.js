/* Building DOM nodes, icons and the copy buttons. Touches `document` only when called. */

export function h(tag, attrs, children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
  }
  for (const child of [].concat(children || [])) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

const ICONS = {
  copy: '<rect x="9" y="9" width="12" height="12" rx="2"/><path d="M5 15H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1h10a1 1 0 0 1 1 1v1"/>',
  check: '<path d="M20 6 9 17l-5-5"/>',
  regenerate: '<path d="M21 12a9 9 0 1 1-3-6.7L21 8"/><path d="M21 3v5h-5"/>',
  edit: '<path d="M12 20h9"/><path d="M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4Z"/>',
  trash: '<path d="M3 6h18M8 6V4h8v2M19 6l-1 14H6L5 6"/>',
  chevron: '<path d="m9 6 6 6-6 6"/>',
  warn: '<circle cx="12" cy="12" r="9"/><path d="M12 8v4M12 16h.01"/>',
  file: '<path d="M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8Z"/><path d="M14 3v5h5M9 13h6M9 17h6"/>',
  close: '<path d="M18 6 6 18M6 6l12 12"/>',
};

export function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  svg.innerHTML = ICONS[name];
  return svg;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_) {
    // Not a secure context, or permission refused: the old way still works.
    const area = h("textarea", { className: "clipboard-helper", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (_) {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

export function flashCopied(button, label) {
  const original = button.dataset.label || label;
  button.dataset.label = original;
  button.classList.add("copied");
  button.replaceChildren(icon("check"), h("span", { className: "btn-text", text: "Copied" }));
  window.setTimeout(() => {
    button.classList.remove("copied");
    button.replaceChildren(icon("copy"), h("span", { className: "btn-text", text: original }));
  }, 1500);
}

/** A "Copy" button; `text()` gives what it copies when clicked. */
export function copyButton(className, ariaLabel, text) {
  const button = h("button", { type: "button", className, "aria-label": ariaLabel },
    [icon("copy"), h("span", { className: "btn-text", text: "Copy" })]);
  button.addEventListener("click", async () => { if (await copyText(text())) flashCopied(button, "Copy"); });
  return button;
}
