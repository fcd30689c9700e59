/* The page around the thread: the empty and loading states, the send and stop
 * buttons, the composer's error line, the quota banner and the page's notice. */
import { el } from "./page.js";
import { anyPendingHere, liveReply, state } from "./state.js";

// Other parts of the page that follow the chat on screen (organise.js's menu).
const followers = [];

export function onChromeUpdate(paint) {
  followers.push(paint);
}

export function updateChrome() {
  const hasMessages = state.messages.length > 0;
  el.loading.hidden = state.loaded || hasMessages;
  el.empty.hidden = hasMessages || !state.loaded;
  const live = liveReply();
  const busy = Boolean(live) || anyPendingHere();
  el.stopButton.hidden = !busy;
  el.stopButton.disabled = !(live && typeof live.msg.id === "number");
  el.sendButton.hidden = busy;
  const files = state.attachments.length > 0;
  el.sendButton.disabled = !el.prompt.value.trim() && !files;
  el.composer.classList.toggle("is-busy", busy);
  el.app.classList.toggle("is-empty", !hasMessages && state.loaded);
  for (const paint of followers) paint();
}

/** Fit a textarea to its text, up to `max` pixels. */
export function autoGrow(area, max) {
  area.style.height = "auto";
  area.style.height = Math.min(area.scrollHeight + 2, max) + "px";
  area.style.overflowY = area.scrollHeight + 2 > max ? "auto" : "hidden";
}

export function promptMax() {
  return Math.max(160, Math.round(window.innerHeight * 0.4));
}

export function showComposerError(text) {
  el.composerError.textContent = text;
  el.composerError.hidden = !text;
}

/** A notice above the thread, such as "This chat does not exist or was deleted." */
export function showPageNotice(text) {
  el.pageNotice.textContent = text;
  el.pageNotice.hidden = !text;
}

export function hideBanners() {
  showComposerError("");
  showPageNotice("");
  el.quotaBanner.hidden = true;
}
