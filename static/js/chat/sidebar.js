/* The chat history: conversations grouped by age, search, rename and delete, and the
 * sidebar sliding over the page on a phone. */
import { showComposerError } from "./chrome.js";
import { h, icon } from "./dom.js";
import { postForm } from "./http.js";
import { announce, el, setTitle, urls } from "./page.js";
import { state } from "./state.js";
import { urlWith } from "./urls.js";

const SEARCH_DEBOUNCE_MS = 250;

// Opening a conversation and starting a new chat are navigation.js's; main.js hands them over.
let navigate = { open() {}, newChat() {} };

export function sidebarStart(handlers) {
  navigate = handlers;
}

export function upsertConversation(conversation, moveToTop) {
  const index = state.conversations.findIndex((c) => c.id === conversation.id);
  if (index >= 0) {
    if (moveToTop) state.conversations.splice(index, 1);
    else { state.conversations[index] = conversation; paintSidebar(); return; }
  }
  state.conversations.unshift(conversation);
  state.conversations.sort((a, b) => Date.parse(b.updated_at) - Date.parse(a.updated_at));
  if (state.searchResults) {
    const i = state.searchResults.findIndex((c) => c.id === conversation.id);
    if (i >= 0) state.searchResults[i] = conversation;
  }
  paintSidebar();
}

/** Forget a deleted conversation; leave it for a new chat if it was open. */
export function dropConversation(id) {
  state.conversations = state.conversations.filter((c) => c.id !== id);
  if (state.searchResults) state.searchResults = state.searchResults.filter((c) => c.id !== id);
  if (id === state.conversationId) navigate.newChat(true);
  else paintSidebar();
}

function groupLabel(iso) {
  const then = new Date(iso);
  const now = new Date();
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const day = 24 * 3600 * 1000;
  const t = then.getTime();
  if (t >= startOfToday) return "Today";
  if (t >= startOfToday - day) return "Yesterday";
  if (t >= startOfToday - 7 * day) return "Previous 7 days";
  if (t >= startOfToday - 30 * day) return "Previous 30 days";
  return "Older";
}

let renamingId = null;

export function paintSidebar() {
  const list = state.searchResults || state.conversations;
  el.groups.replaceChildren();
  const groups = [];
  if (state.searchResults) {
    groups.push({ label: "Search results", items: list });
  } else {
    for (const conversation of list) {
      const label = groupLabel(conversation.updated_at);
      if (!groups.length || groups[groups.length - 1].label !== label) groups.push({ label, items: [] });
      groups[groups.length - 1].items.push(conversation);
    }
  }
  groups.forEach((group, n) => {
    const headingId = `history-group-${n}`;
    const ul = h("ul", { className: "history-list", "aria-labelledby": headingId });
    for (const conversation of group.items) ul.append(conversationItem(conversation));
    el.groups.append(h("h2", { className: "history-heading", id: headingId, text: group.label }), ul);
  });
  el.historyEmpty.hidden = list.length > 0;
  el.historyEmpty.textContent = state.searchResults ? "No chats match your search." : "Your chats will appear here.";
}

function conversationItem(conversation) {
  const current = conversation.id === state.conversationId;
  const li = h("li", { className: current ? "history-item is-current" : "history-item" });
  if (renamingId === conversation.id) {
    const input = h("input", {
      type: "text", className: "rename-input", maxlength: "200", "aria-label": "New title",
    });
    input.value = conversation.title;
    let done = false;
    const finish = (save) => {
      if (done) return;
      done = true;
      renamingId = null;
      if (save && input.value.trim() && input.value.trim() !== conversation.title) {
        renameConversation(conversation, input.value.trim());
      }
      paintSidebar();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); finish(true); }
      if (event.key === "Escape") { event.preventDefault(); finish(false); focusConversation(conversation.id); }
    });
    input.addEventListener("blur", () => finish(true));
    li.append(input);
    requestAnimationFrame(() => { input.focus(); input.select(); });
    return li;
  }
  const link = h("a", {
    href: urlWith(urls.conversation, conversation.id), className: "history-link", title: conversation.title,
    "aria-current": current ? "page" : null,
  }, [h("span", { className: "history-title", text: conversation.title })]);
  link.addEventListener("click", (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate.open(conversation.id, true);
  });
  const rename = h("button", {
    type: "button", className: "icon-btn history-act", "aria-label": `Rename “${conversation.title}”`, title: "Rename",
    onclick: () => { renamingId = conversation.id; paintSidebar(); },
  }, [icon("edit")]);
  const remove = h("button", {
    type: "button", className: "icon-btn history-act", "aria-label": `Delete “${conversation.title}”`, title: "Delete",
    onclick: () => askDelete(conversation),
  }, [icon("trash")]);
  li.dataset.id = conversation.id;
  li.append(link, h("div", { className: "history-acts" }, [rename, remove]));
  return li;
}

function focusConversation(id) {
  requestAnimationFrame(() => {
    const link = el.groups.querySelector(`.history-item[data-id="${id}"] .history-link`);
    if (link) link.focus();
  });
}

async function renameConversation(conversation, title) {
  const previous = conversation.title;
  conversation.title = title; // optimistic
  paintSidebar();
  try {
    const data = await postForm(urlWith(urls.rename, conversation.id), { title });
    upsertConversation(data.conversation, false);
    if (data.conversation.id === state.conversationId) setTitle(data.conversation.title);
  } catch (error) {
    conversation.title = previous;
    paintSidebar();
    showComposerError(`Could not rename the chat: ${error.message}`);
  }
}

let deleting = null;

function askDelete(conversation) {
  deleting = conversation;
  el.deleteName.textContent = `“${conversation.title}”`;
  el.deleteDialog.returnValue = "";
  el.deleteDialog.showModal();
}

el.deleteDialog.addEventListener("close", async () => {
  const conversation = deleting;
  deleting = null;
  if (!conversation) return;
  if (el.deleteDialog.returnValue !== "delete") { focusConversation(conversation.id); return; }
  try {
    await postForm(urlWith(urls.delete, conversation.id));
  } catch (error) {
    showComposerError(`Could not delete the chat: ${error.message}`);
    return;
  }
  dropConversation(conversation.id);
  announce(`Deleted ${conversation.title}.`);
});

// Search: debounced; the newest request wins.
let searchTimer = 0;
let searchAbort = null;
el.search.addEventListener("input", () => {
  window.clearTimeout(searchTimer);
  searchTimer = window.setTimeout(runSearch, SEARCH_DEBOUNCE_MS);
});
el.search.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && el.search.value) { el.search.value = ""; runSearch(); }
});

async function runSearch() {
  const query = el.search.value.trim();
  if (searchAbort) searchAbort.abort();
  if (!query) {
    state.searchResults = null;
    paintSidebar();
    return;
  }
  searchAbort = new AbortController();
  try {
    const response = await fetch(`${urls.search}?q=${encodeURIComponent(query)}`, {
      credentials: "same-origin", signal: searchAbort.signal, headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(String(response.status));
    const data = await response.json();
    state.searchResults = data.conversations;
  } catch (error) {
    if (error.name === "AbortError") return;
    state.searchResults = [];
  }
  paintSidebar();
}

// Phone: the sidebar slides over the page.
export const narrow = window.matchMedia("(max-width: 767px)");

export function setSidebar(open) {
  el.app.classList.toggle("sidebar-open", open);
  el.menuButton.setAttribute("aria-expanded", open ? "true" : "false");
  el.scrim.hidden = !open;
  if (open) el.newChat.focus();
}

el.menuButton.addEventListener("click", () => setSidebar(!el.app.classList.contains("sidebar-open")));
el.sidebarClose.addEventListener("click", () => { setSidebar(false); el.menuButton.focus(); });
el.scrim.addEventListener("click", () => setSidebar(false));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && el.app.classList.contains("sidebar-open") && !el.deleteDialog.open) {
    setSidebar(false);
    el.menuButton.focus();
  }
});
narrow.addEventListener("change", () => { if (!narrow.matches) setSidebar(false); });
