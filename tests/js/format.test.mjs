import assert from "node:assert/strict";
import { test } from "node:test";

import { cutNote, effortLabel } from "../../static/js/chat/format.js";

test("an answer cut at the output limit says so", () => {
  assert.equal(cutNote({ incomplete: true, finish_reason: "length" }), "This answer was cut off at the model's output limit.");
});

test("an answer stopped by the content filter says so", () => {
  assert.match(cutNote({ incomplete: true, finish_reason: "content_filter" }), /content filter/);
});

test("a cut stream gets the plain note", () => {
  assert.equal(cutNote({ incomplete: true, finish_reason: "" }), "This answer was cut off.");
});

test("an answer's footer names the reasoning effort asked for, and nothing when none was", () => {
  assert.equal(effortLabel("high"), "High effort");
  assert.equal(effortLabel(""), "");
  assert.equal(effortLabel(undefined), "");
});
