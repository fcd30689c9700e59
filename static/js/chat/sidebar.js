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

// Painted nodes are kept and reused while what they show is unchanged, so a repaint keeps
// focus and hover where they are, and never swaps the node under a pointer.
const painted = { items: new Map(), groups: new Map() };

// While a button is held on the list, repaints wait until its click has happened: a rename
// ends on blur (the mousedown of a click elsewhere), and rows swapped or moved between
// mousedown and mouseup (the renamed chat moving to the top) would drop or divert the click.
const press = { held: false, repaintWaiting: false };

el.groups.addEventListener("pointerdown", () => { press.held = true; });
for (const type of ["pointerup", "pointercancel"]) {
  window.addEventListener(type, () => {
    if (!press.held) return;
    // The click comes in the same task as pointerup: release after it.
    window.setTimeout(() => {
      press.held = false;
      if (press.repaintWaiting) { press.repaintWaiting = false; paintSidebar(); }
    }, 0);
  });
}

export function paintSidebar() {
  if (press.held) { press.repaintWaiting = true; return; }
  const list = state.searchResults || state.conversations;
  const groups = [];
  let archived = [];
  if (state.searchResults) {
    groups.push({ label: "Search results", items: list });
  } else {
    // Pinned chats on top; archived ones only under the Archived toggle, at the foot of the list.
    const pinned = list.filter((c) => c.pinned && !c.archived);
    if (pinned.length) groups.push({ label: "Pinned", items: pinned });
    for (const conversation of list.filter((c) => !c.pinned && !c.archived)) {
      const label = groupLabel(conversation.updated_at);
      if (!groups.length || groups[groups.length - 1].label !== label) groups.push({ label, items: [] });
      groups[groups.length - 1].items.push(conversation);
    }
    archived = list.filter((c) => c.archived);
    if (archived.length && state.showArchived) groups.push({ label: "Archived", items: archived });
  }
  const items = new Map();
  const groupNodes = new Map();
  const sections = [];
  for (const group of groups) {
    const nodes = painted.groups.get(group.label) || groupNode(group.label);
    placeChildren(nodes.list, group.items.map((conversation) => {
      const li = itemNode(conversation);
      items.set(conversation.id, painted.items.get(conversation.id));
      return li;
    }));
    groupNodes.set(group.label, nodes);
    sections.push(...(group.label === "Archived" ? [nodes.list] : [nodes.heading, nodes.list]));
  }
  if (archived.length) {
    archivedToggle.textContent = `${state.showArchived ? "Hide" : "Show"} archived (${archived.length})`;
    archivedToggle.setAttribute("aria-expanded", state.showArchived ? "true" : "false");
    sections.splice(sections.length - (state.showArchived ? 1 : 0), 0, archivedToggle);
  }
  placeChildren(el.groups, sections);
  painted.items = items;
  painted.groups = groupNodes;
  el.historyEmpty.hidden = list.length > 0;
  el.historyEmpty.textContent = state.searchResults ? "No chats match your search." : "Your chats will appear here.";
}

const archivedToggle = h("button", {
  type: "button", className: "archived-toggle", id: "history-group-archived",
  onclick: () => { state.showArchived = !state.showArchived; paintSidebar(); },
});

/** Make `nodes` the children of `parent`, in order, moving only those out of place. */
function placeChildren(parent, nodes) {
  let previous = null;
  for (const node of nodes) {
    const expected = previous ? previous.nextSibling : parent.firstChild;
    if (expected !== node) parent.insertBefore(node, expected);
    previous = node;
  }
  let extra = previous ? previous.nextSibling : parent.firstChild;
  while (extra) {
    const next = extra.nextSibling;
    extra.remove();
    extra = next;
  }
}

function groupNode(label) {
  const headingId = `history-group-${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return {
    heading: h("h2", { className: "history-heading", id: headingId, text: label }),
    list: h("ul", { className: "history-list", "aria-labelledby": headingId }),
  };
}

/** The conversation's list item: the painted one if it still shows the same, else a new one. */
function itemNode(conversation) {
  const key = JSON.stringify([conversation.title, conversation.id === state.conversationId, renamingId === conversation.id]);
  const known = painted.items.get(conversation.id);
  if (known && known.key === key) return known.li;
  const li = conversationItem(conversation);
  painted.items.set(conversation.id, { key, li });
  return li;
}

function conversationItem(conversation) {
  const id = conversation.id;
  const current = id === state.conversationId;
  const li = h("li", { className: current ? "history-item is-current" : "history-item" });
  li.dataset.id = id;
  if (renamingId === id) {
    const input = h("input", {
      type: "text", className: "rename-input", maxlength: "200", "aria-label": "New title",
    });
    input.value = conversation.title;
    let done = false;
    const finish = (save) => {
      if (done) return;
      done = true;
      renamingId = null;
      const title = input.value.trim();
      if (save && title && title !== conversation.title) renameConversation(latest(conversation), title);
      else paintSidebar();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); finish(true); }
      if (event.key === "Escape") { event.preventDefault(); finish(false); focusConversation(id); }
    });
    // A click elsewhere ends the rename too; it still does what it says (see `painted`).
    input.addEventListener("blur", () => finish(true));
    li.append(input);
    requestAnimationFrame(() => { input.focus(); input.select(); });
    return li;
  }
  const link = h("a", {
    href: urlWith(urls.conversation, id), className: "history-link", title: conversation.title,
    "aria-current": current ? "page" : null,
  }, [h("span", { className: "history-title", text: conversation.title })]);
  link.addEventListener("click", (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate.open(id, true);
  });
  const rename = h("button", {
    type: "button", className: "icon-btn history-act", "aria-label": `Rename “${conversation.title}”`, title: "Rename",
    onclick: () => { renamingId = id; paintSidebar(); },
  }, [icon("edit")]);
  const remove = h("button", {
    type: "button", className: "icon-btn history-act", "aria-label": `Delete “${conversation.title}”`, title: "Delete",
    onclick: () => askDelete(latest(conversation)),
  }, [icon("trash")]);
  li.append(link, h("div", { className: "history-acts" }, [rename, remove]));
  return li;
}

/** A kept node's conversation may since have been replaced by a newer copy of it. */
function latest(conversation) {
  return state.conversations.find((c) => c.id === conversation.id)
    || (state.searchResults || []).find((c) => c.id === conversation.id)
    || conversation;
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
