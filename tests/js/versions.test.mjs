// Versions of a message and Continue (static/js/chat/versions.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { continuable, continues, versionPosition } from "../../static/js/chat/versions.js";

test("a message with one version shows no arrows", () => {
  assert.equal(versionPosition({ id: 4, versions: [4] }), null);
  assert.equal(versionPosition({ id: 4 }), null);
});

test("the second of three versions points at the first and the third", () => {
  assert.deepEqual(versionPosition({ id: 7, versions: [3, 7, 9] }), { index: 1, count: 3, previous: 3, next: 9 });
});

test("the ends have no version beyond them", () => {
  assert.equal(versionPosition({ id: 3, versions: [3, 7] }).previous, null);
  assert.equal(versionPosition({ id: 7, versions: [3, 7] }).next, null);
});

test("stopped and cut-off answers with text can be continued, others not", () => {
  assert.equal(continuable({ text: "Once", status: "stopped" }), true);
  assert.equal(continuable({ text: "Once", status: "done", incomplete: true, finish_reason: "length" }), true);
  assert.equal(continuable({ text: "Once", status: "failed", incomplete: true, finish_reason: "" }), true);
  assert.equal(continuable({ text: "Once", status: "done", incomplete: true, finish_reason: "content_filter" }), false);
  assert.equal(continuable({ text: "", status: "stopped" }), false);
  assert.equal(continuable({ text: "All of it", status: "done", incomplete: false }), false);
});

test("an answer whose parent is the answer before it is a continuation", () => {
  const partial = { id: 2, role: "assistant", parent_id: 1 };
  assert.equal(continues({ id: 3, role: "assistant", parent_id: 2 }, partial), true);
  assert.equal(continues({ id: 4, role: "user", parent_id: 2 }, partial), false);
  assert.equal(continues({ id: 3, role: "assistant", parent_id: 1 }, { id: 1, role: "user" }), false);
  assert.equal(continues({ id: 1, role: "user", parent_id: null }, undefined), false);
});
