/* The model picker in the top bar (a listbox driven by the keyboard or the pointer),
 * the composer's quota hint and few-left notice, and the models' numbers behind them. */
import { paintControls } from "./controls.js";
import { h } from "./dom.js";
import { boot, el } from "./page.js";
import { fewLeftNotice, modelOption, modelSummary, quotaHint, quotaMarkExhausted, quotaMerge } from "./quota.js";
import { sendFrame } from "./socket.js";
import { state } from "./state.js";

/** A `quota` frame. */
export function quotaUpdate(frame) {
  state.quota = quotaMerge(state.quota, frame);
  paintPicker();
}

/** A send refused for `slug`'s quota: show it at its limit now, and ask the server for the numbers. */
export function quotaExhausted(slug) {
  state.quota = quotaMarkExhausted(state.quota, slug);
  paintPicker();
  sendFrame({ type: "quota" });
}

export function quotaFor(slug) {
  return state.quota.find((q) => q.model === slug) || null;
}

export function modelName(slug) {
  const q = quotaFor(slug);
  return q ? q.name : slug || "Model";
}

/** For a new chat: the model on screen, unless it is at its limit; then one with messages left. */
export function modelWithMessagesLeft() {
  const current = quotaFor(state.model);
  if (!current || !current.exhausted) return state.model;
  const other = state.quota.find((q) => !q.exhausted);
  return other ? other.model : state.model;
}

export function selectModel(slug) {
  state.model = slug;
  if (state.conversationId) state.modelByConversation.set(state.conversationId, slug);
  paintPicker();
}

let paintedPicker = "";

export function paintPicker() {
  const current = quotaFor(state.model);
  el.modelButtonName.textContent = modelName(state.model);
  el.modelButton.classList.toggle("is-exhausted", Boolean(current && current.exhausted));
  el.prompt.placeholder = `Message ${modelName(state.model)}`;
  el.quotaHint.replaceChildren();
  if (current) el.quotaHint.append(h("span", quotaHint(current)));
  el.emptySub.textContent = modelSummary(current);
  paintFewLeft(current);
  paintControls();

  // Rebuild the list only when its numbers changed: an open list is not swapped under the pointer.
  const key = JSON.stringify([state.model, state.quota]);
  if (key === paintedPicker) return;
  paintedPicker = key;
  const active = el.modelList.querySelector(".is-active");
  const activeModel = active ? active.dataset.model : null;
  el.modelList.replaceChildren();
  for (const q of state.quota) {
    const { unavailable, className, line } = modelOption(q);
    const selected = q.model === state.model;
    const option = h("li", {
      id: `model-option-${q.model}`,
      role: "option",
      className,
      "aria-selected": selected ? "true" : "false",
      "aria-disabled": unavailable ? "true" : null,
      "data-model": q.model,
    }, [
      h("div", { className: "model-option-main" }, [
        h("span", { className: "model-option-name", text: q.name }),
        h("span", { className: "model-option-desc", text: q.description || "" }),
        h("span", { className: "model-option-quota", text: line }),
      ]),
      h("span", { className: "model-option-check", "aria-hidden": "true", text: selected ? "✓" : "" }),
    ]);
    option.addEventListener("click", () => chooseOption(option));
    option.addEventListener("mousemove", () => setActiveOption(option));
    el.modelList.append(option);
    if (q.model === activeModel) setActiveOption(option);
  }
}

// Notices dismissed in this tab, per model and window: a new window may say it again.
const dismissed = new Set();

function fewLeftKey(q) {
  return `${q.model} ${q.resets_at || ""}`;
}

function paintFewLeft(q) {
  const text = q && !dismissed.has(fewLeftKey(q)) ? fewLeftNotice(q, boot.few_left_notice) : "";
  if (el.fewLeftText.textContent !== text) el.fewLeftText.textContent = text;
  el.fewLeft.hidden = !text;
}

el.fewLeftClose.addEventListener("click", () => {
  const current = quotaFor(state.model);
  if (current) dismissed.add(fewLeftKey(current));
  paintFewLeft(current);
  el.prompt.focus();
});

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
  sendFrame({ type: "pick", model: option.dataset.model }); // a new chat starts on it, also after a reload
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
