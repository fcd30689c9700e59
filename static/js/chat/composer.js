/* What the user asks for: send, regenerate, edit, continue, switch branch and stop. Each action shows at once
 * (optimistic messages) and is undone, keeping what was typed, if the server refuses
 * it; a refusal for quota offers another model in the banner. */
import { attachmentProblem, restoreAttachments, stillUploading, takeAttachments } from "./attachments.js";
import { autoGrow, hideBanners, promptMax, showComposerError, updateChrome } from "./chrome.js";
import { numberFormat } from "./format.js";
import { codePoints } from "./merge.js";
import { boot, el } from "./page.js";
import { effortFor } from "./controls.js";
import { modelName, quotaFor, selectModel } from "./picker.js";
import { switchLabel } from "./quota.js";
import { sendAction, sendFrame } from "./socket.js";
import { addEntry, anyPendingHere, liveReply, removeEntry, state } from "./state.js";
import { keepBottom, refresh } from "./thread.js";

function newClientId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

function localMessage(role, fields) {
  return Object.assign({
    id: `local-${role}-${newClientId()}`,
    conversation_id: state.conversationId,
    role,
    model: state.model,
    model_name: modelName(state.model),
    text: "",
    reasoning: "",
    status: role === "user" ? "done" : "pending",
    incomplete: false,
    error: "",
    prompt_tokens: null,
    completion_tokens: null,
    reasoning_tokens: null,
    thinking_ms: null,
    created_at: new Date().toISOString(),
    finished_at: null,
    attachments: [],
    local: true,
  }, fields);
}

function canAct() {
  if (liveReply() || anyPendingHere()) {
    showComposerError("Wait for the answer to finish, or stop it first.");
    return false;
  }
  return true;
}

function sendMessage(text, model) {
  const attached = state.attachments.filter((a) => !a.uploading);
  if (stillUploading()) { showComposerError("Wait for the files to finish uploading."); return false; }
  if (!text.trim() && !attached.length) { showComposerError("Type a message first."); return false; }
  const problem = attachmentProblem(attached, model);
  if (problem) { showComposerError(problem); return false; }
  const length = codePoints(text);
  if (length > boot.max_chars) {
    showComposerError(`The message is ${numberFormat.format(length)} characters; the limit is ${numberFormat.format(boot.max_chars)}.`);
    return false;
  }
  if (!canAct()) return false;
  hideBanners();
  takeAttachments();
  const clientId = newClientId();
  const effort = effortFor(model);
  // The question follows the branch on screen (docs/protocol.md, "Branches").
  const shown = state.messages[state.messages.length - 1];
  const parentId = shown && typeof shown.msg.id === "number" ? shown.msg.id : null;
  const user = addEntry(localMessage("user", { text, model, attachments: attached, parent_id: parentId }));
  const reply = addEntry(localMessage("assistant", { model, model_name: modelName(model), reasoning_effort: effort || "" }));
  state.pending.set(clientId, {
    kind: "send", clientId, text, model, files: attached, conversationId: state.conversationId, locals: [user, reply], removed: [],
  });
  const ids = attached.map((f) => f.id);
  sendAction({
    type: "send", conversation_id: state.conversationId, parent_id: parentId, model, effort, text, attachments: ids, client_id: clientId,
  });
  refresh();
  keepBottom(true);
  return true;
}

export function regenerate(entry, model) {
  if (!canAct()) return;
  hideBanners();
  const clientId = newClientId();
  const index = state.messages.indexOf(entry);
  const removed = state.messages.slice(index);
  for (const e of removed) removeEntry(e);
  const chosen = model || state.model;
  const reply = addEntry(localMessage("assistant", { model: chosen, model_name: modelName(chosen) }));
  state.pending.set(clientId, {
    kind: "regenerate", clientId, messageId: entry.msg.id, model: chosen,
    conversationId: state.conversationId, locals: [reply], removed,
  });
  sendAction({ type: "regenerate", message_id: entry.msg.id, model: chosen, effort: effortFor(chosen), client_id: clientId });
  refresh();
  keepBottom(true);
}

export function submitEdit(entry, text, model) {
  if (!text.trim()) { showComposerError("Type a message first."); return; }
  if (!canAct()) return;
  hideBanners();
  const clientId = newClientId();
  const chosen = model || state.model;
  const index = state.messages.indexOf(entry);
  const removed = state.messages.slice(index);
  state.editing = null;
  delete entry.editText;
  for (const e of removed) removeEntry(e);
  for (const e of removed) { e.node = null; e.renderedText = e.renderedReasoning = null; }
  const user = addEntry(localMessage("user", { text, model: chosen }));
  const reply = addEntry(localMessage("assistant", { model: chosen, model_name: modelName(chosen) }));
  state.pending.set(clientId, {
    kind: "edit", clientId, messageId: entry.msg.id, text, model: chosen,
    conversationId: state.conversationId, locals: [user, reply], removed,
  });
  sendAction({ type: "edit", message_id: entry.msg.id, text, model: chosen, effort: effortFor(chosen), client_id: clientId });
  refresh();
  keepBottom(true);
}

/** Go on with a stopped or cut-off answer: a new answer after it, shown joined to it. */
export function continueAnswer(entry) {
  if (!canAct()) return;
  hideBanners();
  const clientId = newClientId();
  const model = entry.msg.model;
  const reply = addEntry(localMessage("assistant", { model, model_name: entry.msg.model_name, parent_id: entry.msg.id }));
  state.pending.set(clientId, {
    kind: "continue", clientId, messageId: entry.msg.id, model,
    conversationId: state.conversationId, locals: [reply], removed: [],
  });
  sendAction({ type: "continue", message_id: entry.msg.id, client_id: clientId });
  refresh();
  keepBottom(true);
}

/** Show the branch through another version of a message; the server answers with the branch (`snapshot`). */
export function switchTo(messageId) {
  if (!canAct()) return;
  if (!sendFrame({ type: "switch", message_id: messageId })) {
    showComposerError("Not connected to the server, so the other version cannot be shown yet. Reconnecting…");
  }
}

/** Undo an optimistic action the server refused; nothing typed is lost. */
export function rollBack(action) {
  if (action.kind === "send" && action.files.length) restoreAttachments(action.files);
  if (action.conversationId !== state.conversationId) {
    // The user has moved to another chat; still never lose what they typed.
    if (action.kind !== "regenerate" && !el.prompt.value.trim()) {
      el.prompt.value = action.text;
      autoGrow(el.prompt, promptMax());
    }
    return;
  }
  for (const local of action.locals) if (state.byId.get(local.msg.id) === local) removeEntry(local);
  for (const e of action.removed) {
    if (!state.byId.has(e.msg.id)) {
      e.node = null;
      e.renderedText = e.renderedReasoning = null;
      state.messages.push(e);
      state.byId.set(e.msg.id, e);
    }
  }
  if (action.kind === "send" && !el.prompt.value.trim()) {
    el.prompt.value = action.text;
    autoGrow(el.prompt, promptMax());
  }
  if (action.kind === "edit") {
    const original = state.byId.get(action.messageId);
    if (original) { state.editing = original.msg.id; original.editText = action.text; }
  }
  refresh();
}

/** Actions sent but unanswered when the socket dropped: we cannot know if they were stored. */
export function abandonPending() {
  for (const [clientId, action] of [...state.pending]) {
    if (!action.sent) continue; // still in the outbox: it goes out on reconnect
    state.pending.delete(clientId);
    rollBack(action);
    if (action.conversationId === state.conversationId) {
      showComposerError("The connection dropped before the server confirmed your message. Check the conversation once reconnected; your text is kept.");
    }
  }
}

function stop() {
  const live = liveReply();
  if (!live || typeof live.msg.id !== "number") return;
  if (!sendFrame({ type: "stop", message_id: live.msg.id })) {
    showComposerError("Not connected to the server, so the answer cannot be stopped yet. Reconnecting…");
  }
}

el.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = el.prompt.value;
  if (sendMessage(text, state.model)) {
    el.prompt.value = "";
    autoGrow(el.prompt, promptMax());
    updateChrome();
  }
});
el.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    if (!el.prompt.value.trim() && !state.attachments.length) return;
    if (liveReply() || anyPendingHere()) return; // Enter never interrupts an answer
    el.composer.requestSubmit();
  }
});
el.prompt.addEventListener("input", () => {
  autoGrow(el.prompt, promptMax());
  if (!el.composerError.hidden && el.prompt.value.trim()) showComposerError("");
  updateChrome();
});
el.stopButton.addEventListener("click", stop);
el.quotaBannerClose.addEventListener("click", () => { el.quotaBanner.hidden = true; el.prompt.focus(); });
window.addEventListener("resize", () => autoGrow(el.prompt, promptMax()));

// The refused action, to redo with another model from the banner.
let refused = null;

export function showQuotaBanner(frame, action) {
  refused = { frame, action };
  el.quotaBannerText.textContent = frame.message;
  // A continuation is the same model's: another model cannot take it over.
  el.switchButton.hidden = !frame.switch_to || action?.kind === "continue";
  el.switchButton.textContent = switchLabel(frame.switch_to, frame.switch_to && quotaFor(frame.switch_to));
  el.quotaBanner.hidden = false;
  keepBottom();
}

el.switchButton.addEventListener("click", () => {
  if (!refused) return;
  const { frame, action } = refused;
  const model = frame.switch_to;
  refused = null;
  selectModel(model);
  el.quotaBanner.hidden = true;
  if (!action || action.kind === "send") {
    const text = action ? action.text : el.prompt.value;
    // The refused send's files were given back to the chips (rollBack): they go with it again.
    if (sendMessage(text, model) && el.prompt.value === text) {
      el.prompt.value = "";
      autoGrow(el.prompt, promptMax());
    }
  } else if (action.kind === "regenerate") {
    const entry = state.byId.get(action.messageId);
    if (entry) regenerate(entry, model);
  } else if (action.kind === "edit") {
    const entry = state.byId.get(action.messageId);
    if (entry) submitEdit(entry, action.text, model);
  }
  updateChrome();
});
