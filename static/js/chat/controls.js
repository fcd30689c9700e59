/* The model controls beside the composer: the reasoning effort (for models whose catalog
 * entry takes one, limited to what the user's plan allows), the note that says where
 * custom instructions go for models that take no system message, and this chat's
 * own instructions (a dialog). */
import { hideBanners, showComposerError } from "./chrome.js";
import { h } from "./dom.js";
import { effortLabel } from "./format.js";
import { postForm } from "./http.js";
import { boot, el, urls } from "./page.js";
import { upsertConversation } from "./sidebar.js";
import { conversationById, state } from "./state.js";
import { urlWith } from "./urls.js";

function efforts(slug) {
  const q = state.quota.find((m) => m.model === slug);
  return (q && q.efforts) || [];
}

/** The effort to send with a message to `slug`: undefined for a model that takes none. */
export function effortFor(slug) {
  const allowed = efforts(slug);
  if (!allowed.length) return undefined;
  return allowed.includes(state.effort) ? state.effort : (allowed.includes("medium") ? "medium" : allowed[0]);
}

let shownConversation;

export function paintControls() {
  const conversation = state.conversationId ? conversationById(state.conversationId) : null;
  if (state.conversationId !== shownConversation) {
    // Another chat on screen: its remembered effort, unless one was picked here for it.
    shownConversation = state.conversationId;
    const remembered = state.effortByConversation.get(state.conversationId) || (conversation && conversation.reasoning_effort);
    if (remembered) state.effort = remembered;
  }
  const allowed = efforts(state.model);
  el.effortControl.hidden = !allowed.length;
  const chosen = effortFor(state.model) || "";
  const key = allowed.join(",");
  if (el.effort.dataset.options !== key) {
    el.effort.dataset.options = key;
    el.effort.replaceChildren(...allowed.map((e) => h("option", { value: e, text: effortLabel(e) })));
  }
  if (chosen) el.effort.value = chosen;

  const q = state.quota.find((m) => m.model === state.model);
  const instructed = boot.has_instructions || Boolean(conversation && conversation.instructions);
  const folded = instructed && q && q.system_message === false;
  const note = folded
    ? `${q.name} takes no system message: your custom instructions are sent at the start of the conversation, marked as instructions.`
    : "";
  if (el.instructionsNote.textContent !== note) el.instructionsNote.textContent = note;
  el.instructionsNote.hidden = !note;
  el.instructionsButton.hidden = !state.conversationId;
  el.instructionsButton.classList.toggle("is-set", Boolean(conversation && conversation.instructions));
}

el.effort.addEventListener("change", () => {
  state.effort = el.effort.value;
  if (state.conversationId) state.effortByConversation.set(state.conversationId, state.effort);
});

el.instructionsButton.addEventListener("click", () => {
  const conversation = conversationById(state.conversationId);
  if (!conversation) return;
  el.instructionsText.value = conversation.instructions || "";
  el.instructionsError.hidden = true;
  el.instructionsDialog.returnValue = "";
  el.instructionsDialog.showModal();
});

el.instructionsDialog.addEventListener("close", async () => {
  const id = state.conversationId;
  if (el.instructionsDialog.returnValue !== "save" || !id) return;
  hideBanners();
  try {
    const data = await postForm(urlWith(urls.instructions, id), { instructions: el.instructionsText.value });
    upsertConversation(data.conversation, false);
    paintControls();
  } catch (error) {
    showComposerError(`Could not save the instructions: ${error.message}`);
  }
});
