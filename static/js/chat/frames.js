/* What the server says (docs/protocol.md, "Server → browser"), one handler per frame type. */
import { paintControls } from "./controls.js";
import { showComposerError, showPageNotice, updateChrome } from "./chrome.js";
import { rollBack, showQuotaBanner } from "./composer.js";
import { LIVE, applyDelta, isNewer, keepLonger } from "./merge.js";
import { newChat } from "./navigation.js";
import { announce, setTitle, urls } from "./page.js";
import { quotaExhausted, quotaUpdate, selectModel } from "./picker.js";
import { dropConversation, paintSidebar, upsertConversation } from "./sidebar.js";
import { sendFrame } from "./socket.js";
import { addEntry, anyPendingHere, conversationById, removeEntry, replaceEntry, state, updateMessage } from "./state.js";
import { keepBottom, refresh, schedulePaint, setMessages } from "./thread.js";
import { urlWith } from "./urls.js";

// As the page says it when its URL names such a chat (chat/views.py).
const MISSING_CONVERSATION = "This chat does not exist or was deleted.";

export function handle(frame) {
  switch (frame.type) {
    case "snapshot": return onSnapshot(frame);
    case "sent": return onSent(frame);
    case "messages": return onMessages(frame);
    case "delta": return onDelta(frame);
    case "status": return onStatus(frame);
    case "done": return onDone(frame);
    case "message": return onResynced(frame);
    case "quota": return quotaUpdate(frame);
    case "conversation": return onConversation(frame);
    case "branch": return onBranch(frame);
    case "error": return onError(frame);
    default: return undefined;
  }
}

function resubscribe() {
  if (state.conversationId) sendFrame({ type: "subscribe", conversation_id: state.conversationId });
}

export function onSnapshot(frame) {
  const conversation = frame.conversation;
  upsertConversation(conversation, false);
  if (conversation.id !== state.conversationId) return; // the user has moved on
  const firstLoad = !state.loaded;
  // Optimistic messages of actions still in flight stay after the stored ones.
  const keep = [];
  for (const action of state.pending.values()) {
    if (action.conversationId === conversation.id) keep.push(...action.locals.map((e) => e.msg));
  }
  const previous = state.byId;
  setMessages(frame.messages.concat(keep));
  for (const entry of state.messages) {
    const before = previous.get(entry.msg.id);
    if (before) { entry.reasoningOpen = before.reasoningOpen; entry.wasLive = before.wasLive || entry.wasLive; }
  }
  state.loaded = true;
  setTitle(conversation.title);
  if (firstLoad && !state.modelByConversation.has(conversation.id)) selectModel(conversation.model);
  refresh();
  if (firstLoad) keepBottom(true);
}

function takeAction(frame) {
  if (frame.client_id && state.pending.has(frame.client_id)) {
    const action = state.pending.get(frame.client_id);
    state.pending.delete(frame.client_id);
    return action;
  }
  // The server answers frames in order; a refusal without our id belongs to the oldest action of its kind.
  if (frame.request) {
    for (const [id, action] of state.pending) {
      if (action.kind === frame.request) { state.pending.delete(id); return action; }
    }
  }
  return null;
}

function onSent(frame) {
  const action = takeAction(frame);
  const conversation = frame.conversation;
  upsertConversation(conversation, true);
  const here = action ? action.conversationId === state.conversationId : conversation.id === state.conversationId;
  if (!here) return;
  if (state.conversationId === null) {
    state.conversationId = conversation.id;
    state.modelByConversation.set(conversation.id, frame.reply.model);
    history.pushState({ conversationId: conversation.id }, "", urlWith(urls.conversation, conversation.id));
    setTitle(conversation.title);
    paintSidebar();
  }
  const locals = action ? action.locals : [];
  const real = [frame.user_message, frame.reply].filter(Boolean);
  for (const msg of real) {
    const local = locals.find((e) => e.msg.role === msg.role);
    if (local && state.byId.get(local.msg.id) === local) replaceEntry(local, msg);
    else if (!state.byId.has(msg.id)) addEntry(msg);
    else updateIfNewer(state.byId.get(msg.id), msg);
  }
  for (const local of locals) if (state.byId.get(local.msg.id) === local) removeEntry(local);
  refresh();
}

function updateIfNewer(entry, msg) {
  if (isNewer(msg, entry.len)) updateMessage(entry, msg);
}

function onMessages(frame) {
  const conversation = frame.conversation;
  upsertConversation(conversation, true);
  if (conversation.id !== state.conversationId) return;
  if (anyPendingHere()) return; // our own `sent` brings these
  const unknown = frame.messages.filter((m) => !state.byId.has(m.id));
  if (!unknown.length) return;
  for (const msg of unknown) addEntry(msg);
  refresh();
  // Another tab sent, edited or regenerated: the snapshot says which older messages were replaced.
  resubscribe();
}

function requestResync(entry) {
  if (entry.resyncing) return;
  entry.resyncing = true;
  sendFrame({ type: "resync", message_id: entry.msg.id });
}

/** What an entry holds of its reply, in merge.js's terms, and back. */
function held(entry) {
  return { text: entry.msg.text || "", len: entry.len, reasoning: entry.msg.reasoning || "", rlen: entry.rlen };
}

function hold(entry, merged) {
  entry.msg.text = merged.text;
  entry.len = merged.len;
  entry.msg.reasoning = merged.reasoning;
  entry.rlen = merged.rlen;
}

function onDelta(frame) {
  const entry = state.byId.get(frame.message_id);
  if (!entry || !LIVE.has(entry.msg.status)) return;
  const merged = applyDelta(held(entry), frame);
  if (merged.gap) {
    requestResync(entry);
    return;
  }
  const hadText = entry.len > 0;
  hold(entry, merged);
  if (entry.msg.status === "pending") entry.msg.status = "streaming";
  if (!hadText && entry.len > 0 && entry.thoughtMs === undefined) {
    const started = Date.parse(entry.msg.created_at);
    entry.thoughtMs = Number.isNaN(started) ? 0 : Math.max(0, Date.now() - started);
  }
  entry.waiting = "";
  entry.wasLive = true;
  schedulePaint(entry);
}

function onResynced(frame) {
  const msg = frame.message;
  const entry = state.byId.get(msg.id);
  if (!entry) return;
  entry.resyncing = false;
  if (!LIVE.has(msg.status)) {
    updateMessage(entry, msg);
  } else {
    hold(entry, keepLonger(held(entry), msg));
    entry.msg.status = msg.status;
  }
  schedulePaint(entry);
}

function onStatus(frame) {
  const entry = state.byId.get(frame.message_id);
  if (!entry || !LIVE.has(entry.msg.status)) return;
  entry.waiting = frame.detail || (frame.status === "waiting" ? "Waiting for capacity…" : "");
  schedulePaint(entry);
}

function onDone(frame) {
  const msg = frame.message;
  const entry = state.byId.get(msg.id);
  if (!entry) {
    if (msg.conversation_id === state.conversationId && !anyPendingHere()) resubscribe();
    return;
  }
  const wasLive = LIVE.has(entry.msg.status);
  updateMessage(entry, msg);
  if (wasLive && msg.role === "assistant") {
    if (msg.status === "failed") announce(`The answer failed. ${msg.error || ""}`);
    else if (msg.status === "stopped") announce("The answer was stopped.");
    else announce(`${msg.model_name || "The model"} finished answering.`);
  }
  refresh();
}

// A tab (this one or another) switched to another branch: show it here too.
function onBranch(frame) {
  if (frame.conversation_id !== state.conversationId || anyPendingHere()) return;
  const last = state.messages[state.messages.length - 1];
  if (!last || last.msg.id !== frame.leaf_id) resubscribe();
}

// Another tab created, renamed, moved or deleted a conversation.
function onConversation(frame) {
  const conversation = frame.conversation;
  if (frame.deleted) {
    dropConversation(conversation.id);
    return;
  }
  const known = conversationById(conversation.id);
  upsertConversation(conversation, !known || known.updated_at !== conversation.updated_at);
  if (conversation.id === state.conversationId) paintControls(); // its instructions may have changed in another tab
}

function onError(frame) {
  const action = ["send", "regenerate", "edit", "continue"].includes(frame.request) || frame.client_id ? takeAction(frame) : null;
  if (action) rollBack(action);
  if (frame.code === "quota_exhausted") {
    // The banner says "limit reached": the hint and the model button say so at once too.
    if (frame.model) quotaExhausted(frame.model);
    showQuotaBanner(frame, action);
    return;
  }
  if (frame.request === "subscribe" && frame.code === "not_found") {
    state.conversations = state.conversations.filter((c) => c.id !== state.conversationId);
    newChat(true);
    showPageNotice(MISSING_CONVERSATION);
    return;
  }
  if (frame.request === "resync") return; // the done frame will settle it
  showComposerError(frame.message || "Something went wrong.");
  updateChrome();
}
