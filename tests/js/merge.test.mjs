// Offset merging of streamed replies (static/js/chat/merge.js; docs/protocol.md, "Offsets").
import assert from "node:assert/strict";
import { test } from "node:test";

import { applyDelta, codePoints, isNewer, keepLonger } from "../../static/js/chat/merge.js";

const empty = { text: "", len: 0, reasoning: "", rlen: 0 };

function stream(held, frames) {
  for (const frame of frames) {
    const merged = applyDelta(held, frame);
    assert.equal(merged.gap, false, `unexpected gap at ${JSON.stringify(frame)}`);
    held = merged;
  }
  return held;
}

test("deltas in order add up to the answer", () => {
  const held = stream(empty, [
    { offset: 0, text: "Hel" },
    { offset: 3, text: "lo, " },
    { offset: 7, text: "world" },
  ]);
  assert.equal(held.text, "Hello, world");
  assert.equal(held.len, 12);
});

test("a delta received twice is applied once", () => {
  const once = stream(empty, [{ offset: 0, text: "Hello" }]);
  const twice = stream(once, [{ offset: 0, text: "Hello" }]);
  assert.deepEqual(twice, once);
});

test("a delta overlapping what we hold adds only the new part", () => {
  // A server may merge consecutive deltas into one; the one we had is its start.
  const held = stream(empty, [{ offset: 0, text: "Hel" }, { offset: 0, text: "Hello" }]);
  assert.equal(held.text, "Hello");
  assert.equal(held.len, 5);
});

test("a delta past what we hold is a gap: resync wanted, nothing applied", () => {
  const held = stream(empty, [{ offset: 0, text: "Hel" }]);
  assert.deepEqual(applyDelta(held, { offset: 5, text: "world" }), { gap: true });
});

test("an empty delta past what we hold is a gap too", () => {
  assert.equal(applyDelta(empty, { offset: 2, text: "" }).gap, true);
});

test("offsets count code points, so emoji and accents do not shift them", () => {
  const held = stream(empty, [{ offset: 0, text: "🙂é" }, { offset: 2, text: "!" }, { offset: 2, text: "!" }]);
  assert.equal(held.text, "🙂é!");
  assert.equal(held.len, 3);
  assert.equal(codePoints("🙂"), 1);
});

test("reasoning has offsets of its own", () => {
  const held = stream(empty, [
    { offset: 0, text: "", reasoning_offset: 0, reasoning: "Think" },
    { offset: 0, text: "", reasoning_offset: 5, reasoning: "ing" },
    { offset: 0, text: "", reasoning_offset: 5, reasoning: "ing" },
    { offset: 0, text: "Yes", reasoning_offset: 8, reasoning: "" },
  ]);
  assert.equal(held.reasoning, "Thinking");
  assert.equal(held.rlen, 8);
  assert.equal(held.text, "Yes");
});

test("a gap in the reasoning alone asks for a resync", () => {
  const held = stream(empty, [{ offset: 0, text: "", reasoning_offset: 0, reasoning: "ab" }]);
  assert.equal(applyDelta(held, { offset: 0, text: "x", reasoning_offset: 4, reasoning: "ef" }).gap, true);
});

test("a delta without reasoning fields leaves the reasoning alone", () => {
  const held = stream({ ...empty, reasoning: "abc", rlen: 3 }, [{ offset: 0, text: "Hi" }]);
  assert.equal(held.reasoning, "abc");
  assert.equal(held.rlen, 3);
});

test("a resync answer keeps the longer of ours and the stored, text and reasoning apart", () => {
  const ours = { text: "Hello, wor", len: 10, reasoning: "ab", rlen: 2 };
  const merged = keepLonger(ours, { text: "Hello", reasoning: "abcd", status: "streaming" });
  assert.deepEqual(merged, { text: "Hello, wor", len: 10, reasoning: "abcd", rlen: 4 });
});

test("a live copy shorter than ours is older; a finished one always wins", () => {
  assert.equal(isNewer({ status: "streaming", text: "Hel" }, 5), false);
  assert.equal(isNewer({ status: "streaming", text: "Hello!" }, 5), true);
  assert.equal(isNewer({ status: "done", text: "" }, 5), true);
});
