// The quota texts of the model picker, the composer hint and the banner (static/js/chat/quota.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  fewLeftNotice, modelOption, modelSummary, quotaHint, quotaLine, quotaMarkExhausted, quotaMerge, switchLabel,
} from "../../static/js/chat/quota.js";

function model(fields) {
  return {
    model: "o1-preview", name: "o1-preview", description: "Reasons before answering", limit: 50, used: 13, left: 37,
    exhausted: false, few_left: false, disabled: false, resets_label: "Tue 19 Nov 00:00", ...fields,
  };
}

test("it says how many are left and when they reset", () => {
  const q = model({});
  assert.equal(quotaLine(q), "37 left · resets Tue 19 Nov 00:00");
  assert.deepEqual(quotaHint(q), { className: "hint-quota", text: "o1-preview · 37 left · resets Tue 19 Nov 00:00" });
  assert.deepEqual(modelOption(q), { unavailable: false, className: "model-option", line: quotaLine(q) });
});

test("without a reset it says only how many are left", () => {
  assert.equal(quotaLine(model({ resets_label: "" })), "37 left");
});

test("few left is marked in the hint and the picker", () => {
  const q = model({ left: 2, few_left: true });
  assert.equal(quotaLine(q), "2 left · resets Tue 19 Nov 00:00");
  assert.equal(quotaHint(q).className, "hint-quota is-few");
  assert.equal(modelOption(q).className, "model-option is-few");
  assert.equal(modelOption(q).unavailable, false);
});

test("an exhausted model says when it resets and cannot be picked", () => {
  const q = model({ left: 0, exhausted: true, few_left: true });
  assert.equal(quotaLine(q), "Limit reached · resets Tue 19 Nov 00:00");
  assert.equal(quotaLine({ ...q, resets_label: null }), "Limit reached");
  assert.equal(quotaHint(q).className, "hint-quota is-exhausted");
  assert.deepEqual(modelOption(q), { unavailable: true, className: "model-option is-disabled", line: quotaLine(q) });
});

test("a model without a limit is unlimited", () => {
  assert.equal(quotaLine(model({ limit: null, left: null, resets_label: null })), "Unlimited");
  assert.equal(quotaLine(model({ limit: undefined, left: null })), "Unlimited");
});

test("a model the plan does not include is not available, whatever its numbers", () => {
  const q = model({ disabled: true, limit: 0, left: 0, exhausted: true });
  assert.equal(quotaLine(q), "Not available on your plan");
  assert.equal(modelOption(q).unavailable, true);
  assert.equal(modelOption(q).className, "model-option is-disabled");
});

test("the empty page names the model and what it is for", () => {
  assert.equal(modelSummary(model({})), "o1-preview · Reasons before answering");
  assert.equal(modelSummary(model({ description: "" })), "o1-preview");
  assert.equal(modelSummary(null), "");
});

test("the banner offers the suggested model by name, or by slug when unknown", () => {
  assert.equal(switchLabel("o1-mini", { name: "o1 mini" }), "Switch to o1 mini");
  assert.equal(switchLabel("o1-mini", null), "Switch to o1-mini");
});

test("a partial quota frame changes only the models it lists", () => {
  const current = [model({}), model({ model: "o1-mini", name: "o1-mini", left: 12 })];
  const changed = model({ model: "o1-mini", name: "o1-mini", left: 11 });
  assert.deepEqual(quotaMerge(current, { partial: true, models: [changed] }), [current[0], changed]);
  assert.deepEqual(quotaMerge(current, { partial: false, models: [changed] }), [changed]);
});

test("a send refused for quota marks that model at its limit at once, and no other", () => {
  const current = [model({ left: 47, used: 3 }), model({ model: "o1-mini", name: "o1-mini", left: 12 })];
  const marked = quotaMarkExhausted(current, "o1-preview");
  assert.equal(quotaLine(marked[0]), "Limit reached · resets Tue 19 Nov 00:00");
  assert.equal(quotaHint(marked[0]).className, "hint-quota is-exhausted");
  assert.equal(modelOption(marked[0]).unavailable, true);
  assert.equal(marked[0].left, 0);
  assert.equal(marked[0].used, 50);
  assert.equal(marked[1], current[1]);
  assert.equal(current[0].left, 47, "the numbers it was given are left as they were");
});

test("a refusal for a model the page does not know changes nothing", () => {
  const current = [model({})];
  assert.deepEqual(quotaMarkExhausted(current, "gpt-9"), current);
});

test("at the configured number left it says how many and until when, ChatGPT-style", () => {
  assert.equal(fewLeftNotice(model({ left: 5, resets_label: "Wed 9 Dec, 00:00" }), 5), "5 o1-preview messages left until Wed 9 Dec, 00:00");
  assert.equal(fewLeftNotice(model({ left: 1, resets_label: "Wed 9 Dec, 00:00" }), 5), "1 o1-preview message left until Wed 9 Dec, 00:00");
  assert.equal(fewLeftNotice(model({ left: 3, resets_label: "" }), 5), "3 o1-preview messages left");
});

test("above the configured number, or at the limit, there is no few-left notice", () => {
  assert.equal(fewLeftNotice(model({ left: 6 }), 5), "");
  assert.equal(fewLeftNotice(model({ left: 0, exhausted: true }), 5), "", "the quota banner says that one");
  assert.equal(fewLeftNotice(model({ disabled: true, left: 0, exhausted: true }), 5), "");
  assert.equal(fewLeftNotice(model({ limit: null, left: null, resets_label: "" }), 5), "", "unlimited");
  assert.equal(fewLeftNotice(null, 5), "");
  assert.equal(fewLeftNotice(model({ left: 5 }), 0), "", "0 turns the notice off");
});

test("without a configured number it follows the server's few_left", () => {
  assert.equal(fewLeftNotice(model({ left: 8, few_left: true }), undefined), "8 o1-preview messages left until Tue 19 Nov 00:00");
  assert.equal(fewLeftNotice(model({ left: 8, few_left: false }), undefined), "");
});

test("a budget shows what is left of it, and when it resets, beside the message count", () => {
  const budget = { label: "$3.20 of $20.00 left this month", blocked: false, resets_label: "Tue 1 Dec, 00:00" };
  assert.equal(
    quotaLine(model({ budget })),
    "37 left · resets Tue 19 Nov 00:00 · $3.20 of $20.00 left this month (resets Tue 1 Dec, 00:00)",
  );
  assert.equal(quotaLine(model({ limit: null, left: null, budget: { ...budget, resets_label: "" } })), "Unlimited · $3.20 of $20.00 left this month");
});

test("a budget too small for the model's worst case says so, with its reset", () => {
  const q = model({ exhausted: true, budget: { label: "$0.20 of $20.00 left this month", blocked: true, resets_label: "Tue 1 Dec, 00:00" } });
  assert.equal(quotaLine(q), "Budget reached · resets Tue 1 Dec, 00:00");
  assert.equal(modelOption(q).unavailable, true);
});
