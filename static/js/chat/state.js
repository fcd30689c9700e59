/* What the page knows: the conversations, the chosen model, the messages shown and
 * the actions sent but not yet answered. Messages are held as entries:
 * `{msg, len, rlen, node, ...}`, `len` and `rlen` the code points of text and reasoning. */
import { boot } from "./page.js";
import { LIVE, codePoints } from "./merge.js";

export const state = {
  conversationId: boot.conversation_id,
  conversations: boot.conversations.slice(), // newest first
  searchResults: null, // null: not searching
  showArchived: false, // the sidebar's Archived section is open
  quota: boot.quota,
  model: boot.model,
  modelByConversation: new Map(), // choices made in this tab
  effort: "", // the reasoning effort picked (static/js/chat/controls.js)
  effortByConversation: new Map(), // efforts picked in this tab, per chat
  messages: [], // in order, as shown
  byId: new Map(), // id -> entry {msg, len, rlen, node, ...}
  loaded: !boot.conversation_id, // false until the first snapshot arrives
  pending: new Map(), // client_id -> optimistic action awaiting `sent` or `error`
  editing: null, // id of the user message being edited
  attachments: [], // files for the next message: the server's {id, name, size, kind, url}, or {uploading: true, name}
  stick: true, // keep the newest text in view
};
if (state.conversationId) state.modelByConversation.set(state.conversationId, boot.model);

export function lastOf(role) {
  for (let i = state.messages.length - 1; i >= 0; i--) {
    if (state.messages[i].msg.role === role) return state.messages[i];
  }
  return null;
}

export function liveReply() {
  const last = lastOf("assistant");
  return last && LIVE.has(last.msg.status) ? last : null;
}

export function anyPendingHere() {
  for (const action of state.pending.values()) {
    if (action.conversationId === state.conversationId) return true;
  }
  return false;
}

export function conversationById(id) {
  return state.conversations.find((c) => c.id === id) || null;
}

export function makeEntry(msg) {
  return {
    msg,
    len: codePoints(msg.text || ""),
    rlen: codePoints(msg.reasoning || ""),
    node: null,
    parts: null,
    renderedText: null,
    renderedReasoning: null,
    reasoningOpen: false,
    waiting: "",
    resyncing: false,
    wasLive: LIVE.has(msg.status),
  };
}

export function addEntry(msg) {
  if (state.byId.has(msg.id)) return state.byId.get(msg.id);
  const entry = makeEntry(msg);
  state.messages.push(entry);
  state.byId.set(msg.id, entry);
  return entry;
}

export function removeEntry(entry) {
  state.messages = state.messages.filter((e) => e !== entry);
  state.byId.delete(entry.msg.id);
  if (entry.node) entry.node.remove();
}

/** Swap one message for another in place (an optimistic one for the stored one, say). */
export function replaceEntry(oldEntry, msg) {
  if (state.byId.has(msg.id) && state.byId.get(msg.id) !== oldEntry) {
    removeEntry(oldEntry);
    return state.byId.get(msg.id);
  }
  const entry = makeEntry(msg);
  entry.wasLive = oldEntry.wasLive || entry.wasLive;
  const index = state.messages.indexOf(oldEntry);
  state.byId.delete(oldEntry.msg.id);
  if (index >= 0) state.messages[index] = entry;
  else state.messages.push(entry);
  state.byId.set(msg.id, entry);
  if (oldEntry.node) oldEntry.node.remove();
  return entry;
}

export function updateMessage(entry, msg) {
  const wasLive = LIVE.has(entry.msg.status);
  // `done` and `message` frames do not say which versions a message has; what we knew stands.
  if (!msg.versions && entry.msg.versions) msg.versions = entry.msg.versions;
  entry.msg = msg;
  entry.len = codePoints(msg.text || "");
  entry.rlen = codePoints(msg.reasoning || "");
  entry.waiting = "";
  entry.resyncing = false;
  if (wasLive) entry.wasLive = true;
}
