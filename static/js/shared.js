/* A shared conversation's page (templates/chat/shared.html): each answer's markdown, which the
 * page holds as escaped text, rendered through the chat's pipeline (sanitised, code, formulas). */
import { renderMarkdown } from "./chat/markdown.js";

for (const node of document.querySelectorAll("[data-markdown]")) {
  const text = node.textContent;
  node.classList.remove("plain");
  renderMarkdown(node, text);
}
