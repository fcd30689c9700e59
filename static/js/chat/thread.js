/* The conversation on screen (the branch shown): one node per message, painted from
 * its entry; the reasoning panel and its "Thinking… 12s" counter; editing a question;
 * the ‹1/2› versions of a message; Continue; keeping the newest text in view. */
import { attachmentList } from "./attachments.js";
import { copyButton, h, icon } from "./dom.js";
import { cutNote, effortLabel, formatWhen, numberFormat, secondsLabel } from "./format.js";
import { renderMarkdown } from "./markdown.js";
import { LIVE } from "./merge.js";
import { el } from "./page.js";
import { anyPendingHere, lastOf, liveReply, makeEntry, state } from "./state.js";
import { continuable, continues, versionPosition } from "./versions.js";
import { autoGrow, updateChrome } from "./chrome.js";

const NEAR_BOTTOM_PX = 80;

// What the buttons under the messages do is the composer's (composer.js); main.js hands it over.
let actions = { regenerate() {}, submitEdit() {}, continueAnswer() {}, switchTo() {} };

export function threadStart(handlers) {
  actions = handlers;
}

export function setMessages(messages) {
  state.messages = messages.map(makeEntry);
  state.byId = new Map(state.messages.map((e) => [e.msg.id, e]));
  rebuildThread();
}

function rebuildThread() {
  el.messages.replaceChildren();
  for (const entry of state.messages) {
    entry.node = null;
    entry.renderedText = entry.renderedReasoning = null;
  }
  refresh();
}

/** Put every message node in order and repaint them; cheap enough for any change of shape. */
export function refresh() {
  let previous = null;
  let before = null;
  for (const entry of state.messages) {
    if (!entry.node) buildNode(entry);
    // A continuation reads as the rest of the answer it continues.
    entry.node.classList.toggle("msg-continuation", continues(entry.msg, before?.msg));
    before = entry;
    const expected = previous ? previous.nextSibling : el.messages.firstChild;
    if (expected !== entry.node) el.messages.insertBefore(entry.node, expected);
    paint(entry);
    previous = entry.node;
  }
  while (previous && previous.nextSibling) previous.nextSibling.remove();
  if (!previous) el.messages.replaceChildren();
  updateChrome();
  keepBottom();
}

function buildNode(entry) {
  const role = entry.msg.role;
  if (role === "user") {
    const body = h("div", { className: "bubble" });
    const files = h("div", { className: "files-slot" });
    const actions = h("div", { className: "msg-actions" });
    entry.parts = { body, files, actions };
    entry.renderedFiles = null;
    entry.node = h("article", { className: "msg msg-user", "aria-label": "You said" }, [files, body, actions]);
  } else {
    const reasoning = h("div", { className: "reasoning-slot" });
    const body = h("div", { className: "md" });
    const note = h("div", { className: "msg-note" });
    const foot = h("div", { className: "msg-foot" });
    entry.parts = { reasoning, body, note, foot };
    entry.node = h("article", { className: "msg msg-assistant", "aria-label": "Answer" }, [reasoning, body, note, foot]);
  }
  entry.node.dataset.id = entry.msg.id;
}

function paint(entry) {
  if (entry.msg.role === "user") paintUser(entry);
  else paintAssistant(entry);
}

function paintUser(entry) {
  const { body, files, actions: buttons } = entry.parts;
  const msg = entry.msg;
  const attached = msg.attachments || [];
  if (entry.renderedFiles !== attached) {
    files.replaceChildren(...(attached.length ? [attachmentList(attached)] : []));
    entry.renderedFiles = attached;
  }
  entry.node.classList.toggle("is-editing", state.editing === msg.id);
  if (state.editing === msg.id) {
    body.hidden = false;
    if (!body.querySelector("textarea")) body.replaceChildren(editor(entry));
    buttons.replaceChildren();
    return;
  }
  if (body.textContent !== msg.text || body.firstChild?.nodeType !== Node.TEXT_NODE) body.textContent = msg.text;
  body.hidden = !msg.text;
  buttons.replaceChildren();
  const switcher = versionSwitcher(msg);
  if (switcher) buttons.append(switcher);
  buttons.append(copyButton("act", "Copy message", () => msg.text));
  if (typeof msg.id === "number" && !liveReply() && !anyPendingHere()) {
    buttons.append(h("button", {
      type: "button", className: "act", "aria-label": "Edit message",
      onclick: () => startEdit(entry),
    }, [icon("edit"), h("span", { className: "btn-text", text: "Edit" })]));
  }
}

/** ‹ 1/2 ›: which version of this message the branch on screen goes through; the arrows switch branch. */
function versionSwitcher(msg) {
  const at = versionPosition(msg);
  if (!at) return null;
  const busy = Boolean(liveReply() || anyPendingHere());
  const go = (label, text, id) => h("button", {
    type: "button", className: "act act-version", "aria-label": label, disabled: busy || id === null,
    onclick: () => actions.switchTo(id),
  }, [text]);
  return h("span", { className: "versions", role: "group", "aria-label": `Version ${at.index + 1} of ${at.count}` }, [
    go("Previous version", "‹", at.previous),
    h("span", { className: "versions-label", text: `${at.index + 1}/${at.count}` }),
    go("Next version", "›", at.next),
  ]);
}

function editor(entry) {
  const area = h("textarea", { className: "edit-area", "aria-label": "Edit your message", rows: "3" });
  area.value = entry.editText !== undefined ? entry.editText : entry.msg.text;
  area.addEventListener("input", () => { entry.editText = area.value; autoGrow(area, 320); });
  // The same keys as the message box (composer.js): Enter sends, Shift+Enter starts a new line.
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); cancelEdit(); }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      actions.submitEdit(entry, area.value);
    }
  });
  const save = h("button", { type: "button", className: "btn btn-primary", text: "Save & resend",
    onclick: () => actions.submitEdit(entry, area.value) });
  const cancel = h("button", { type: "button", className: "btn", text: "Cancel", onclick: cancelEdit });
  const keys = h("p", { className: "editor-keys", id: `edit-keys-${entry.msg.id}`,
    text: "Enter to send · Shift+Enter for a new line · Esc to cancel" });
  area.setAttribute("aria-describedby", keys.id);
  const wrap = h("div", { className: "editor" }, [area, h("div", { className: "editor-actions" }, [keys, cancel, save])]);
  requestAnimationFrame(() => { autoGrow(area, 320); area.focus(); area.setSelectionRange(area.value.length, area.value.length); });
  return wrap;
}

function startEdit(entry) {
  state.editing = entry.msg.id;
  entry.editText = entry.msg.text;
  refresh();
}

function cancelEdit() {
  const entry = state.byId.get(state.editing);
  state.editing = null;
  if (entry) { delete entry.editText; entry.parts.body.replaceChildren(); }
  refresh();
}

function thinkingSeconds(msg) {
  const started = Date.parse(msg.created_at);
  return Math.max(0, Math.floor((Date.now() - (Number.isNaN(started) ? Date.now() : started)) / 1000));
}

function paintReasoning(entry) {
  const slot = entry.parts.reasoning;
  const msg = entry.msg;
  const live = LIVE.has(msg.status);
  const thinking = live && entry.len === 0;
  const thoughtMs = live ? entry.thoughtMs : msg.thinking_ms;
  // A failure before any text has nothing to have thought about.
  const failedEmpty = msg.status === "failed" && !msg.text;
  // Only reasoning models "think"; a slow first token from another model is just latency.
  const reasons = msg.is_reasoning !== false;
  const showDone = !thinking && !failedEmpty && (msg.reasoning || (reasons && (thoughtMs || 0) >= 1000));
  if (!thinking && !showDone) {
    if (slot.firstChild) slot.replaceChildren();
    return;
  }
  let details = slot.querySelector("details");
  if (!details) {
    details = h("details", { className: "reasoning" }, [
      h("summary", null, [h("span", { className: "reasoning-label" }), icon("chevron")]),
      h("div", { className: "reasoning-text" }),
    ]);
    details.addEventListener("toggle", () => { entry.reasoningOpen = details.open; });
    details.open = entry.reasoningOpen;
    slot.replaceChildren(details);
  }
  const label = details.querySelector(".reasoning-label");
  let text;
  if (thinking && entry.waiting) text = entry.waiting;
  else if (thinking && !reasons) text = `Waiting for the answer… ${thinkingSeconds(msg)}s`;
  else if (thinking) text = `Thinking… ${thinkingSeconds(msg)}s`;
  else if ((thoughtMs || 0) >= 500) text = `Thought for ${secondsLabel(Math.round(thoughtMs / 1000))}`; // rounds to 1 s or more, as exports say
  else text = "Reasoning";
  if (label.textContent !== text) label.textContent = text;
  details.classList.toggle("is-thinking", thinking);
  const body = details.querySelector(".reasoning-text");
  if (entry.renderedReasoning !== msg.reasoning) {
    // Summaries are markdown (OpenAI's start each part with a **bold heading**): sanitised like answers.
    if (msg.reasoning) renderMarkdown(body, msg.reasoning);
    else body.textContent = thinking ? "" : "No reasoning summary was returned for this answer.";
    body.classList.toggle("is-markdown", Boolean(msg.reasoning));
    entry.renderedReasoning = msg.reasoning;
  }
  details.classList.toggle("no-summary", !msg.reasoning);
}

function paintAssistant(entry) {
  const msg = entry.msg;
  const { body, note, foot } = entry.parts;
  const live = LIVE.has(msg.status);
  entry.node.classList.toggle("is-live", live);
  entry.node.classList.toggle("is-failed", msg.status === "failed");
  entry.node.setAttribute("aria-busy", live ? "true" : "false");
  paintReasoning(entry);

  if (entry.renderedText !== msg.text) {
    renderMarkdown(body, msg.text || "");
    entry.renderedText = msg.text;
  }
  body.hidden = !msg.text;
  body.classList.toggle("streaming", live && entry.len > 0);

  // Notes: waiting, failure, cut off, stopped.
  const notes = [];
  if (live && entry.waiting && entry.len > 0) notes.push(h("p", { className: "note note-wait", text: entry.waiting }));
  if (msg.status === "failed") {
    notes.push(h("p", { className: "note note-error" }, [icon("warn"),
      h("span", { text: msg.error ? `The answer failed: ${msg.error}` : "The answer failed." })]));
  }
  if (msg.incomplete) notes.push(h("p", { className: "note", text: cutNote(msg) }));
  if (msg.status === "stopped") notes.push(h("p", { className: "note", text: msg.text ? "You stopped this answer." : "You stopped this answer before it began." }));
  note.replaceChildren(...notes);
  note.hidden = !notes.length;

  // Footer: model, time, tokens; then actions.
  foot.replaceChildren();
  if (live) { foot.hidden = true; return; }
  foot.hidden = false;
  const meta = [msg.model_name || msg.model, effortLabel(msg.reasoning_effort), formatWhen(msg.finished_at || msg.created_at)];
  if (msg.prompt_tokens !== null && msg.prompt_tokens !== undefined && msg.completion_tokens !== null && msg.completion_tokens !== undefined) {
    let tokens = `${numberFormat.format(msg.prompt_tokens)} in · ${numberFormat.format(msg.completion_tokens)} out`;
    if (msg.reasoning_tokens) tokens += ` (${numberFormat.format(msg.reasoning_tokens)} reasoning)`;
    meta.push(tokens);
  }
  const buttons = h("div", { className: "msg-actions" });
  const switcher = versionSwitcher(msg);
  if (switcher) buttons.append(switcher);
  if (msg.text) buttons.append(copyButton("act", "Copy answer", () => msg.text));
  const last = lastOf("assistant") === entry && typeof msg.id === "number" && !anyPendingHere();
  if (last && continuable(msg)) {
    buttons.append(h("button", {
      type: "button", className: "act act-strong", "aria-label": "Continue answer",
      onclick: () => actions.continueAnswer(entry),
    }, [icon("chevron"), h("span", { className: "btn-text", text: "Continue" })]));
  }
  if (last) {
    const failed = msg.status === "failed";
    buttons.append(h("button", {
      type: "button", className: failed ? "act act-strong" : "act", "aria-label": failed ? "Retry" : "Regenerate answer",
      onclick: () => actions.regenerate(entry),
    }, [icon("regenerate"), h("span", { className: "btn-text", text: failed ? "Retry" : "Regenerate" })]));
  }
  foot.append(buttons, h("p", { className: "msg-meta", text: meta.filter(Boolean).join(" · ") }));
}

/** The counter of "Thinking… 12s" ticks without any frame from the server. */
window.setInterval(() => {
  for (const entry of state.messages) {
    if (entry.msg.role === "assistant" && LIVE.has(entry.msg.status) && entry.len === 0) paintReasoning(entry);
  }
}, 1000);

// Deltas arrive up to ~20 times a second; render at most once per frame.
const dirty = new Set();
let frameQueued = false;

export function schedulePaint(entry) {
  dirty.add(entry);
  if (frameQueued) return;
  frameQueued = true;
  requestAnimationFrame(() => {
    frameQueued = false;
    const entries = [...dirty];
    dirty.clear();
    let shapeChanged = false;
    for (const entry of entries) {
      if (!state.byId.has(entry.msg.id)) continue;
      const wasLive = entry.node && entry.node.classList.contains("is-live");
      paint(entry);
      if (wasLive !== LIVE.has(entry.msg.status)) shapeChanged = true;
    }
    if (shapeChanged) refresh();
    else { updateChrome(); keepBottom(); }
  });
}

// ------------------------------------------------------------------ scrolling

function nearBottom() {
  const s = el.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
}

export function keepBottom(force) {
  if (force) state.stick = true;
  if (state.stick) el.scroller.scrollTop = el.scroller.scrollHeight;
  el.toBottom.hidden = state.stick || nearBottom();
}

el.scroller.addEventListener("scroll", () => {
  state.stick = nearBottom();
  el.toBottom.hidden = state.stick;
}, { passive: true });
el.toBottom.addEventListener("click", () => {
  el.scroller.scrollTo({ top: el.scroller.scrollHeight, behavior: "smooth" });
  state.stick = true;
});

