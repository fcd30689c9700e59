/* The chat page: sidebar, model picker, conversation, composer and the live
 * WebSocket (docs/protocol.md). One vanilla file, no build step. Markdown is
 * rendered with the vendored marked, sanitised with DOMPurify and highlighted
 * with highlight.js before it touches the DOM. */
(function () {
  "use strict";

  const boot = JSON.parse(document.getElementById("bootstrap").textContent);
  const $ = (id) => document.getElementById(id);
  const LIVE = new Set(["pending", "streaming"]);
  const NEAR_BOTTOM_PX = 80;
  const SEARCH_DEBOUNCE_MS = 250;
  const PING_EVERY_MS = 25000;

  const el = {
    app: $("app"),
    sidebar: $("sidebar"),
    scrim: $("scrim"),
    menuButton: $("menu-button"),
    sidebarClose: $("sidebar-close"),
    newChat: $("new-chat"),
    search: $("search"),
    groups: $("conversation-groups"),
    historyEmpty: $("history-empty"),
    modelPicker: $("model-picker"),
    modelButton: $("model-button"),
    modelButtonName: $("model-button-name"),
    modelList: $("model-list"),
    connection: $("connection-banner"),
    connectionText: $("connection-text"),
    scroller: $("thread-scroll"),
    empty: $("empty-state"),
    emptySub: $("empty-sub"),
    loading: $("loading-state"),
    messages: $("messages"),
    toBottom: $("to-bottom"),
    quotaBanner: $("quota-banner"),
    quotaBannerText: $("quota-banner-text"),
    switchButton: $("switch-button"),
    quotaBannerClose: $("quota-banner-close"),
    composerError: $("composer-error"),
    composer: $("composer"),
    prompt: $("prompt"),
    sendButton: $("send-button"),
    stopButton: $("stop-button"),
    quotaHint: $("quota-hint"),
    deleteDialog: $("delete-dialog"),
    deleteName: $("delete-name"),
    announcer: $("announcer"),
  };

  // ---------------------------------------------------------------- state

  const state = {
    conversationId: boot.conversation_id,
    conversations: boot.conversations.slice(), // newest first
    searchResults: null, // null: not searching
    quota: boot.quota,
    model: boot.model,
    modelByConversation: new Map(), // choices made in this tab
    messages: [], // in order, as shown
    byId: new Map(), // id -> entry {msg, len, rlen, node, ...}
    loaded: !boot.conversation_id, // false until the first snapshot arrives
    pending: new Map(), // client_id -> optimistic action awaiting `sent` or `error`
    editing: null, // id of the user message being edited
    stick: true, // keep the newest text in view
  };
  if (state.conversationId) state.modelByConversation.set(state.conversationId, boot.model);

  // ------------------------------------------------------------ utilities

  function h(tag, attrs, children) {
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
  };

  function icon(name) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", "icon");
    svg.setAttribute("aria-hidden", "true");
    svg.innerHTML = ICONS[name];
    return svg;
  }

  function codePoints(text) {
    return [...text].length;
  }

  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  const numberFormat = new Intl.NumberFormat("en-US");
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
    day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
  });

  function formatWhen(iso) {
    if (!iso) return "";
    const when = new Date(iso);
    const today = new Date();
    return when.toDateString() === today.toDateString() ? timeFormat.format(when) : dateTimeFormat.format(when);
  }

  function secondsLabel(seconds) {
    return seconds === 1 ? "1 second" : `${seconds} seconds`;
  }

  async function copyText(text) {
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

  function flashCopied(button, label) {
    const original = button.dataset.label || label;
    button.dataset.label = original;
    button.classList.add("copied");
    button.replaceChildren(icon("check"), h("span", { className: "btn-text", text: "Copied" }));
    window.setTimeout(() => {
      button.classList.remove("copied");
      button.replaceChildren(icon("copy"), h("span", { className: "btn-text", text: original }));
    }, 1500);
  }

  function announce(text) {
    el.announcer.textContent = "";
    window.setTimeout(() => { el.announcer.textContent = text; }, 50);
  }

  // ------------------------------------------------------------- markdown

  const md = { ready: false };

  function setUpMarkdown() {
    if (md.ready || !window.marked || !window.DOMPurify) return md.ready;
    window.marked.setOptions({ gfm: true, breaks: false });
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A" && node.hasAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer");
      }
    });
    md.ready = true;
    return true;
  }

  const PURIFY = {
    USE_PROFILES: { html: true },
    // Images: the CSP blocks remote ones anyway, and same-origin ones would let an answer make requests.
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option", "img"],
    FORBID_ATTR: ["style"],
  };

  function renderMarkdown(target, text) {
    if (!setUpMarkdown()) {
      target.textContent = text;
      target.classList.add("plain");
      return;
    }
    const html = window.marked.parse(text);
    target.innerHTML = window.DOMPurify.sanitize(html, PURIFY);
    for (const table of target.querySelectorAll("table")) {
      const wrap = h("div", { className: "table-wrap" });
      table.replaceWith(wrap);
      wrap.append(table);
    }
    for (const code of target.querySelectorAll("pre > code")) decorateCode(code);
  }

  function decorateCode(code) {
    const pre = code.parentElement;
    const match = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className);
    const language = match ? match[1] : "";
    if (window.hljs) {
      if (language && !window.hljs.getLanguage(language)) code.classList.add("hljs");
      else window.hljs.highlightElement(code);
    }
    const copy = h("button", {
      type: "button",
      className: "code-copy",
      "aria-label": language ? `Copy ${language} code` : "Copy code",
    }, [icon("copy"), h("span", { className: "btn-text", text: "Copy" })]);
    copy.addEventListener("click", async () => {
      if (await copyText(code.textContent)) flashCopied(copy, "Copy");
    });
    const block = h("div", { className: "code-block" }, [
      h("div", { className: "code-head" }, [h("span", { className: "code-lang", text: language || "code" }), copy]),
    ]);
    pre.replaceWith(block);
    block.append(pre);
  }

  // ------------------------------------------------------------- messages

  function lastOf(role) {
    for (let i = state.messages.length - 1; i >= 0; i--) {
      if (state.messages[i].msg.role === role) return state.messages[i];
    }
    return null;
  }

  function liveReply() {
    const last = lastOf("assistant");
    return last && LIVE.has(last.msg.status) ? last : null;
  }

  function makeEntry(msg) {
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

  function setMessages(messages) {
    state.messages = messages.map(makeEntry);
    state.byId = new Map(state.messages.map((e) => [e.msg.id, e]));
    rebuildThread();
  }

  function addEntry(msg) {
    if (state.byId.has(msg.id)) return state.byId.get(msg.id);
    const entry = makeEntry(msg);
    state.messages.push(entry);
    state.byId.set(msg.id, entry);
    return entry;
  }

  function removeEntry(entry) {
    state.messages = state.messages.filter((e) => e !== entry);
    state.byId.delete(entry.msg.id);
    if (entry.node) entry.node.remove();
  }

  /** Swap one message for another in place (an optimistic one for the stored one, say). */
  function replaceEntry(oldEntry, msg) {
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

  function updateMessage(entry, msg) {
    const wasLive = LIVE.has(entry.msg.status);
    entry.msg = msg;
    entry.len = codePoints(msg.text || "");
    entry.rlen = codePoints(msg.reasoning || "");
    entry.waiting = "";
    entry.resyncing = false;
    if (wasLive) entry.wasLive = true;
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
  function refresh() {
    let previous = null;
    for (const entry of state.messages) {
      if (!entry.node) buildNode(entry);
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
      const actions = h("div", { className: "msg-actions" });
      entry.parts = { body, actions };
      entry.node = h("article", { className: "msg msg-user", "aria-label": "You said" }, [body, actions]);
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
    const { body, actions } = entry.parts;
    const msg = entry.msg;
    entry.node.classList.toggle("is-editing", state.editing === msg.id);
    if (state.editing === msg.id) {
      if (!body.querySelector("textarea")) body.replaceChildren(editor(entry));
      actions.replaceChildren();
      return;
    }
    if (body.textContent !== msg.text || body.firstChild?.nodeType !== Node.TEXT_NODE) body.textContent = msg.text;
    actions.replaceChildren();
    const copy = h("button", { type: "button", className: "act", "aria-label": "Copy message" },
      [icon("copy"), h("span", { className: "btn-text", text: "Copy" })]);
    copy.addEventListener("click", async () => { if (await copyText(msg.text)) flashCopied(copy, "Copy"); });
    actions.append(copy);
    const isLastUser = lastOf("user") === entry;
    if (isLastUser && typeof msg.id === "number" && !liveReply() && !anyPendingHere()) {
      actions.append(h("button", {
        type: "button", className: "act", "aria-label": "Edit message",
        onclick: () => startEdit(entry),
      }, [icon("edit"), h("span", { className: "btn-text", text: "Edit" })]));
    }
  }

  function editor(entry) {
    const area = h("textarea", { className: "edit-area", "aria-label": "Edit your message", rows: "3" });
    area.value = entry.editText !== undefined ? entry.editText : entry.msg.text;
    area.addEventListener("input", () => { entry.editText = area.value; autoGrow(area, 320); });
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { event.preventDefault(); cancelEdit(); }
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        submitEdit(entry, area.value);
      }
    });
    const save = h("button", { type: "button", className: "btn btn-primary", text: "Save & resend",
      onclick: () => submitEdit(entry, area.value) });
    const cancel = h("button", { type: "button", className: "btn", text: "Cancel", onclick: cancelEdit });
    const wrap = h("div", { className: "editor" }, [area, h("div", { className: "editor-actions" }, [cancel, save])]);
    requestAnimationFrame(() => { autoGrow(area, 320); area.focus(); area.setSelectionRange(area.value.length, area.value.length); });
    return wrap;
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
    else if ((thoughtMs || 0) >= 1000) text = `Thought for ${secondsLabel(Math.round(thoughtMs / 1000))}`;
    else text = "Reasoning";
    if (label.textContent !== text) label.textContent = text;
    details.classList.toggle("is-thinking", thinking);
    const body = details.querySelector(".reasoning-text");
    if (entry.renderedReasoning !== msg.reasoning) {
      body.textContent = msg.reasoning || (thinking ? "" : "No reasoning summary was returned for this answer.");
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
    if (msg.incomplete) notes.push(h("p", { className: "note", text: "This answer was cut off." }));
    if (msg.status === "stopped") notes.push(h("p", { className: "note", text: msg.text ? "You stopped this answer." : "You stopped this answer before it began." }));
    note.replaceChildren(...notes);
    note.hidden = !notes.length;

    // Footer: model, time, tokens; then actions.
    foot.replaceChildren();
    if (live) { foot.hidden = true; return; }
    foot.hidden = false;
    const meta = [msg.model_name || msg.model, formatWhen(msg.finished_at || msg.created_at)];
    if (msg.prompt_tokens !== null && msg.prompt_tokens !== undefined && msg.completion_tokens !== null && msg.completion_tokens !== undefined) {
      let tokens = `${numberFormat.format(msg.prompt_tokens)} in · ${numberFormat.format(msg.completion_tokens)} out`;
      if (msg.reasoning_tokens) tokens += ` (${numberFormat.format(msg.reasoning_tokens)} reasoning)`;
      meta.push(tokens);
    }
    const actions = h("div", { className: "msg-actions" });
    if (msg.text) {
      const copy = h("button", { type: "button", className: "act", "aria-label": "Copy answer" },
        [icon("copy"), h("span", { className: "btn-text", text: "Copy" })]);
      copy.addEventListener("click", async () => { if (await copyText(msg.text)) flashCopied(copy, "Copy"); });
      actions.append(copy);
    }
    if (lastOf("assistant") === entry && typeof msg.id === "number" && !anyPendingHere()) {
      const failed = msg.status === "failed";
      actions.append(h("button", {
        type: "button", className: failed ? "act act-strong" : "act", "aria-label": failed ? "Retry" : "Regenerate answer",
        onclick: () => regenerate(entry),
      }, [icon("regenerate"), h("span", { className: "btn-text", text: failed ? "Retry" : "Regenerate" })]));
    }
    foot.append(actions, h("p", { className: "msg-meta", text: meta.filter(Boolean).join(" · ") }));
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

  function schedulePaint(entry) {
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

  // -------------------------------------------------------------- scrolling

  function nearBottom() {
    const s = el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  function keepBottom(force) {
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

  // ------------------------------------------------------------ the chrome

  function anyPendingHere() {
    for (const action of state.pending.values()) {
      if (action.conversationId === state.conversationId) return true;
    }
    return false;
  }

  function updateChrome() {
    const hasMessages = state.messages.length > 0;
    el.loading.hidden = state.loaded || hasMessages;
    el.empty.hidden = hasMessages || !state.loaded;
    const live = liveReply();
    const busy = Boolean(live) || anyPendingHere();
    el.stopButton.hidden = !busy;
    el.stopButton.disabled = !(live && typeof live.msg.id === "number");
    el.sendButton.hidden = busy;
    el.sendButton.disabled = !el.prompt.value.trim();
    el.composer.classList.toggle("is-busy", busy);
    el.app.classList.toggle("is-empty", !hasMessages && state.loaded);
  }

  function autoGrow(area, max) {
    area.style.height = "auto";
    area.style.height = Math.min(area.scrollHeight + 2, max) + "px";
    area.style.overflowY = area.scrollHeight + 2 > max ? "auto" : "hidden";
  }

  function promptMax() {
    return Math.max(160, Math.round(window.innerHeight * 0.4));
  }

  function showComposerError(text) {
    el.composerError.textContent = text;
    el.composerError.hidden = !text;
  }

  function hideBanners() {
    showComposerError("");
    el.quotaBanner.hidden = true;
  }

  function setConnectionBanner(show, text) {
    el.connection.hidden = !show;
    if (text) el.connectionText.textContent = text;
  }

  // ------------------------------------------------------------ model picker

  // A partial update carries only the models whose numbers changed.
  function quotaUpdate(frame) {
    if (frame.partial) {
      const changed = new Map(frame.models.map((q) => [q.model, q]));
      state.quota = state.quota.map((q) => changed.get(q.model) || q);
    } else {
      state.quota = frame.models;
    }
    paintPicker();
  }

  function quotaFor(slug) {
    return state.quota.find((q) => q.model === slug) || null;
  }

  function modelName(slug) {
    const q = quotaFor(slug);
    return q ? q.name : slug || "Model";
  }

  function quotaLine(q) {
    if (q.disabled) return "Not available on your plan";
    if (q.exhausted) return q.resets_label ? `Limit reached · resets ${q.resets_label}` : "Limit reached";
    if (q.limit === null || q.limit === undefined) return "Unlimited";
    return q.resets_label ? `${q.left} left · resets ${q.resets_label}` : `${q.left} left`;
  }

  function selectModel(slug) {
    state.model = slug;
    if (state.conversationId) state.modelByConversation.set(state.conversationId, slug);
    paintPicker();
  }

  let paintedPicker = "";

  function paintPicker() {
    const current = quotaFor(state.model);
    el.modelButtonName.textContent = modelName(state.model);
    el.modelButton.classList.toggle("is-exhausted", Boolean(current && current.exhausted));
    el.prompt.placeholder = `Message ${modelName(state.model)}`;
    el.quotaHint.replaceChildren();
    if (current) {
      el.quotaHint.append(h("span", {
        className: current.exhausted ? "hint-quota is-exhausted" : current.few_left ? "hint-quota is-few" : "hint-quota",
        text: `${current.name} · ${quotaLine(current)}`,
      }));
    }
    el.emptySub.textContent = current ? `${current.name} · ${current.description || ""}`.replace(/ · $/, "") : "";

    // Rebuild the list only when its numbers changed: an open list is not swapped under the pointer.
    const key = JSON.stringify([state.model, state.quota]);
    if (key === paintedPicker) return;
    paintedPicker = key;
    const active = el.modelList.querySelector(".is-active");
    const activeModel = active ? active.dataset.model : null;
    el.modelList.replaceChildren();
    for (const q of state.quota) {
      const unavailable = q.exhausted || q.disabled;
      const selected = q.model === state.model;
      const classes = ["model-option"];
      if (unavailable) classes.push("is-disabled");
      else if (q.few_left) classes.push("is-few");
      const option = h("li", {
        id: `model-option-${q.model}`,
        role: "option",
        className: classes.join(" "),
        "aria-selected": selected ? "true" : "false",
        "aria-disabled": unavailable ? "true" : null,
        "data-model": q.model,
      }, [
        h("div", { className: "model-option-main" }, [
          h("span", { className: "model-option-name", text: q.name }),
          h("span", { className: "model-option-desc", text: q.description || "" }),
          h("span", { className: "model-option-quota", text: quotaLine(q) }),
        ]),
        h("span", { className: "model-option-check", "aria-hidden": "true", text: selected ? "✓" : "" }),
      ]);
      option.addEventListener("click", () => chooseOption(option));
      option.addEventListener("mousemove", () => setActiveOption(option));
      el.modelList.append(option);
      if (q.model === activeModel) setActiveOption(option);
    }
  }

  function pickerOpen() {
    return !el.modelList.hidden;
  }

  function options() {
    return [...el.modelList.querySelectorAll("[role=option]")];
  }

  function setActiveOption(option) {
    for (const o of options()) o.classList.toggle("is-active", o === option);
    if (option) {
      el.modelList.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    } else {
      el.modelList.removeAttribute("aria-activedescendant");
    }
  }

  function openPicker() {
    paintPicker();
    el.modelList.hidden = false;
    el.modelButton.setAttribute("aria-expanded", "true");
    const selected = options().find((o) => o.getAttribute("aria-selected") === "true") || options()[0];
    setActiveOption(selected);
    el.modelList.focus();
    // Ask for fresh numbers; the list repaints when the `quota` frame comes.
    sendFrame({ type: "quota" });
  }

  function closePicker(returnFocus) {
    if (!pickerOpen()) return;
    el.modelList.hidden = true;
    el.modelButton.setAttribute("aria-expanded", "false");
    if (returnFocus) el.modelButton.focus();
  }

  function chooseOption(option) {
    if (!option || option.getAttribute("aria-disabled") === "true") return;
    selectModel(option.dataset.model);
    closePicker(true);
    el.quotaBanner.hidden = true;
  }

  el.modelButton.addEventListener("click", () => (pickerOpen() ? closePicker(true) : openPicker()));
  el.modelButton.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") { event.preventDefault(); openPicker(); }
  });
  el.modelList.addEventListener("keydown", (event) => {
    const all = options();
    const active = el.modelList.querySelector(".is-active");
    let index = all.indexOf(active);
    if (event.key === "ArrowDown") index = Math.min(all.length - 1, index + 1);
    else if (event.key === "ArrowUp") index = Math.max(0, index - 1);
    else if (event.key === "Home") index = 0;
    else if (event.key === "End") index = all.length - 1;
    else if (event.key === "Enter" || event.key === " ") { event.preventDefault(); chooseOption(active); return; }
    else if (event.key === "Escape") { event.preventDefault(); closePicker(true); return; }
    else if (event.key === "Tab") { closePicker(false); return; }
    else return;
    event.preventDefault();
    setActiveOption(all[index]);
  });
  document.addEventListener("pointerdown", (event) => {
    if (pickerOpen() && !el.modelPicker.contains(event.target)) closePicker(false);
  });

  // --------------------------------------------------------------- sidebar

  function conversationById(id) {
    return state.conversations.find((c) => c.id === id) || null;
  }

  function upsertConversation(conversation, moveToTop) {
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

  function paintSidebar() {
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
      href: `/c/${conversation.id}/`, className: "history-link", title: conversation.title,
      "aria-current": current ? "page" : null,
    }, [h("span", { className: "history-title", text: conversation.title })]);
    link.addEventListener("click", (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      openConversation(conversation.id, true);
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

  async function postForm(url, fields) {
    const body = new URLSearchParams(fields || {});
    const response = await fetch(url, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "X-Requested-With": "fetch" },
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      throw new Error((data && data.message) || `The server said ${response.status}.`);
    }
    return data;
  }

  async function renameConversation(conversation, title) {
    const previous = conversation.title;
    conversation.title = title; // optimistic
    paintSidebar();
    try {
      const data = await postForm(`/api/conversations/${conversation.id}/rename/`, { title });
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
      await postForm(`/api/conversations/${conversation.id}/delete/`);
    } catch (error) {
      showComposerError(`Could not delete the chat: ${error.message}`);
      return;
    }
    state.conversations = state.conversations.filter((c) => c.id !== conversation.id);
    if (state.searchResults) state.searchResults = state.searchResults.filter((c) => c.id !== conversation.id);
    if (conversation.id === state.conversationId) newChat(true);
    else paintSidebar();
    announce(`Deleted ${conversation.title}.`);
  });

  // Another tab created, renamed, moved or deleted a conversation.
  function onConversation(frame) {
    const conversation = frame.conversation;
    if (!frame.deleted) {
      const known = conversationById(conversation.id);
      upsertConversation(conversation, !known || known.updated_at !== conversation.updated_at);
      return;
    }
    state.conversations = state.conversations.filter((c) => c.id !== conversation.id);
    if (state.searchResults) state.searchResults = state.searchResults.filter((c) => c.id !== conversation.id);
    if (conversation.id === state.conversationId) newChat(true);
    else paintSidebar();
  }

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
      const response = await fetch(`/api/conversations/?q=${encodeURIComponent(query)}`, {
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
  const narrow = window.matchMedia("(max-width: 767px)");

  function setSidebar(open) {
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

  // ------------------------------------------------------------ navigation

  function setTitle(title) {
    document.title = `${title || "New chat"} · Chat`;
  }

  function openConversation(id, push) {
    if (push && id === state.conversationId) { if (narrow.matches) setSidebar(false); return; }
    state.conversationId = id;
    state.editing = null;
    state.loaded = false;
    state.stick = true;
    setMessages([]);
    hideBanners();
    const conversation = conversationById(id);
    setTitle(conversation ? conversation.title : "Chat");
    const remembered = state.modelByConversation.get(id) || (conversation && conversation.model);
    if (remembered) selectModel(remembered);
    if (push) history.pushState({ conversationId: id }, "", `/c/${id}/`);
    paintSidebar();
    if (narrow.matches) setSidebar(false);
    sendFrame({ type: "subscribe", conversation_id: id });
  }

  function newChat(push) {
    state.conversationId = null;
    state.editing = null;
    state.loaded = true;
    state.stick = true;
    setMessages([]);
    hideBanners();
    setTitle(null);
    if (push) history.pushState({ conversationId: null }, "", "/");
    paintSidebar();
    if (narrow.matches) setSidebar(false);
    paintPicker();
    if (!narrow.matches) el.prompt.focus();
  }

  el.newChat.addEventListener("click", (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    newChat(true);
  });

  window.addEventListener("popstate", () => {
    const match = /^\/c\/(\d+)\/$/.exec(location.pathname);
    if (match) openConversation(Number(match[1]), false);
    else newChat(false);
  });

  // -------------------------------------------------------------- actions

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
    if (!text.trim()) { showComposerError("Type a message first."); return false; }
    const length = codePoints(text);
    if (length > boot.max_chars) {
      showComposerError(`The message is ${numberFormat.format(length)} characters; the limit is ${numberFormat.format(boot.max_chars)}.`);
      return false;
    }
    if (!canAct()) return false;
    hideBanners();
    const clientId = newClientId();
    const user = addEntry(localMessage("user", { text, model }));
    const reply = addEntry(localMessage("assistant", { model, model_name: modelName(model) }));
    state.pending.set(clientId, {
      kind: "send", clientId, text, model, conversationId: state.conversationId, locals: [user, reply], removed: [],
    });
    sendAction({ type: "send", conversation_id: state.conversationId, model, text, client_id: clientId });
    refresh();
    keepBottom(true);
    return true;
  }

  function regenerate(entry, model) {
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
    sendAction({ type: "regenerate", message_id: entry.msg.id, model: chosen, client_id: clientId });
    refresh();
    keepBottom(true);
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

  function submitEdit(entry, text, model) {
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
    sendAction({ type: "edit", message_id: entry.msg.id, text, model: chosen, client_id: clientId });
    refresh();
    keepBottom(true);
  }

  /** Undo an optimistic action the server refused; nothing typed is lost. */
  function rollBack(action) {
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
      if (!el.prompt.value.trim()) return;
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

  function showQuotaBanner(frame, action) {
    refused = { frame, action };
    el.quotaBannerText.textContent = frame.message;
    const target = frame.switch_to && quotaFor(frame.switch_to);
    el.switchButton.hidden = !frame.switch_to;
    el.switchButton.textContent = `Switch to ${target ? target.name : frame.switch_to}`;
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

  // ------------------------------------------------------------- the socket

  // outbox: actions made while (re)connecting; the server has not seen them, so they go out on open.
  const socket = { ws: null, attempt: 0, timer: 0, ping: 0, everOpened: false, outbox: [] };

  function socketOpen() {
    return socket.ws && socket.ws.readyState === WebSocket.OPEN;
  }

  function sendFrame(frame) {
    if (!socketOpen()) return false;
    socket.ws.send(JSON.stringify(frame));
    return true;
  }

  function sendAction(frame) {
    const action = state.pending.get(frame.client_id);
    if (socketOpen()) {
      sendFrame(frame);
      if (action) action.sent = true;
    } else {
      socket.outbox.push(frame);
    }
  }

  function flushOutbox() {
    const frames = socket.outbox.splice(0);
    for (const frame of frames) {
      if (state.pending.has(frame.client_id)) sendAction(frame);
    }
  }

  function connect() {
    window.clearTimeout(socket.timer);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(`${scheme}${location.host}/ws/chat/`);
    socket.ws = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      socket.everOpened = true;
      socket.attempt = 0;
      setConnectionBanner(false);
      if (state.conversationId) sendFrame({ type: "subscribe", conversation_id: state.conversationId });
      sendFrame({ type: "quota" });
      flushOutbox();
      window.clearInterval(socket.ping);
      socket.ping = window.setInterval(() => sendFrame({ type: "ping" }), PING_EVERY_MS);
      updateChrome();
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (_) { return; }
      handle(frame);
    });
    ws.addEventListener("close", (event) => {
      if (socket.ws !== ws) return;
      window.clearInterval(socket.ping);
      abandonPending();
      if (event.code === 4401) {
        setConnectionBanner(true, "You have been logged out. Taking you to the login page…");
        location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`);
        return;
      }
      setConnectionBanner(true, "Reconnecting…");
      if (!opened) checkStillLoggedIn();
      const base = Math.min(10000, 500 * 2 ** socket.attempt);
      socket.attempt += 1;
      const delay = base / 2 + Math.random() * base / 2;
      socket.timer = window.setTimeout(connect, delay);
      updateChrome();
    });
  }

  /** A refused handshake looks like any network error; a redirect from the API tells us the session is gone. */
  async function checkStillLoggedIn() {
    try {
      const response = await fetch("/api/quota/", { credentials: "same-origin", redirect: "manual" });
      if (response.type === "opaqueredirect" || response.status === 401 || response.status === 403) {
        location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`);
      }
    } catch (_) {
      // The server is down: keep retrying.
    }
  }

  /** Actions sent but unanswered when the socket dropped: we cannot know if they were stored. */
  function abandonPending() {
    for (const [clientId, action] of [...state.pending]) {
      if (!action.sent) continue; // still in the outbox: it goes out on reconnect
      state.pending.delete(clientId);
      rollBack(action);
      if (action.conversationId === state.conversationId) {
        showComposerError("The connection dropped before the server confirmed your message. Check the conversation once reconnected; your text is kept.");
      }
    }
  }

  window.addEventListener("online", () => {
    if (!socketOpen()) { socket.attempt = 0; connect(); }
  });

  // -------------------------------------------------------------- frames

  function handle(frame) {
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
      case "error": return onError(frame);
      default: return undefined;
    }
  }

  function resubscribe() {
    if (state.conversationId) sendFrame({ type: "subscribe", conversation_id: state.conversationId });
  }

  function onSnapshot(frame) {
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
      history.pushState({ conversationId: conversation.id }, "", `/c/${conversation.id}/`);
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

  /** Keep whichever copy has more text: a frame may carry an older state than deltas already applied. */
  function updateIfNewer(entry, msg) {
    if (!LIVE.has(msg.status) || codePoints(msg.text || "") >= entry.len) updateMessage(entry, msg);
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

  /** Apply `text` at `offset` to a string we hold `n` code points of; see docs/protocol.md. */
  function applyAt(current, n, offset, text) {
    if (!text) return { text: current, n, gap: offset > n };
    if (offset > n) return { text: current, n, gap: true };
    const chars = [...text];
    const skip = n - offset;
    if (skip >= chars.length) return { text: current, n, gap: false };
    const added = skip ? chars.slice(skip).join("") : text;
    return { text: current + added, n: n + chars.length - skip, gap: false };
  }

  function onDelta(frame) {
    const entry = state.byId.get(frame.message_id);
    if (!entry || !LIVE.has(entry.msg.status)) return;
    const t = applyAt(entry.msg.text || "", entry.len, frame.offset, frame.text);
    const r = applyAt(entry.msg.reasoning || "", entry.rlen, frame.reasoning_offset || 0, frame.reasoning || "");
    if (t.gap || r.gap) {
      requestResync(entry);
      return;
    }
    const hadText = entry.len > 0;
    entry.msg.text = t.text;
    entry.len = t.n;
    entry.msg.reasoning = r.text;
    entry.rlen = r.n;
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
      // Take the longer of what we have and what the server stored, separately for text and reasoning.
      const n = codePoints(msg.text || "");
      if (n >= entry.len) { entry.msg.text = msg.text; entry.len = n; }
      const rn = codePoints(msg.reasoning || "");
      if (rn >= entry.rlen) { entry.msg.reasoning = msg.reasoning; entry.rlen = rn; }
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

  function onError(frame) {
    const action = ["send", "regenerate", "edit"].includes(frame.request) || frame.client_id ? takeAction(frame) : null;
    if (action) rollBack(action);
    if (frame.code === "quota_exhausted") {
      showQuotaBanner(frame, action);
      return;
    }
    if (frame.request === "subscribe" && frame.code === "not_found") {
      state.conversations = state.conversations.filter((c) => c.id !== state.conversationId);
      newChat(true);
      showComposerError("That conversation does not exist any more.");
      return;
    }
    if (frame.request === "resync") return; // the done frame will settle it
    showComposerError(frame.message || "Something went wrong.");
    updateChrome();
  }

  // ------------------------------------------------------------- start up

  paintSidebar();
  paintPicker();
  if (boot.snapshot) onSnapshot(boot.snapshot); // the socket's snapshot refreshes it
  else setMessages([]);
  autoGrow(el.prompt, promptMax());
  if (!state.conversationId && !narrow.matches) el.prompt.focus();
  // A first connect that fails should say so; a quick one should not flash a banner.
  window.setTimeout(() => { if (!socketOpen() && !socket.everOpened) setConnectionBanner(true, "Connecting…"); }, 1500);
  connect();
})();
