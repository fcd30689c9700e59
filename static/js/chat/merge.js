/* Merging what the server streams into the reply the page holds (docs/protocol.md,
 * "Offsets: no gap, no duplicate"). Pure: no DOM, so `node --test` can reach it. */

/** The statuses of a reply still being written. */
export const LIVE = new Set(["pending", "streaming"]);

/** Offsets count Unicode code points, not the UTF-16 units of `String.length`. */
export function codePoints(text) {
  return [...text].length;
}

/** Apply `text` at `offset` to a string we hold `n` code points of; `gap` when something was missed. */
export function applyAt(current, n, offset, text) {
  if (!text) return { text: current, n, gap: offset > n };
  if (offset > n) return { text: current, n, gap: true };
  const chars = [...text];
  const skip = n - offset;
  if (skip >= chars.length) return { text: current, n, gap: false };
  const added = skip ? chars.slice(skip).join("") : text;
  return { text: current + added, n: n + chars.length - skip, gap: false };
}

/**
 * A `delta` frame applied to what we hold of a reply (`{text, len, reasoning, rlen}`):
 * the new holding, or `{gap: true}` when the answer or its reasoning skipped ahead
 * and the page must `resync`.
 */
export function applyDelta(held, frame) {
  const t = applyAt(held.text, held.len, frame.offset, frame.text);
  const r = applyAt(held.reasoning, held.rlen, frame.reasoning_offset || 0, frame.reasoning || "");
  if (t.gap || r.gap) return { gap: true };
  return { gap: false, text: t.text, len: t.n, reasoning: r.text, rlen: r.n };
}

/** The answer to `resync` of a live reply: the longer of ours and the stored copy, for text and reasoning apart. */
export function keepLonger(held, msg) {
  const n = codePoints(msg.text || "");
  const rn = codePoints(msg.reasoning || "");
  return {
    text: n >= held.len ? msg.text : held.text,
    len: Math.max(n, held.len),
    reasoning: rn >= held.rlen ? msg.reasoning : held.reasoning,
    rlen: Math.max(rn, held.rlen),
  };
}

/** Whether a stored copy replaces ours: a frame may carry an older state than deltas already applied. */
export function isNewer(msg, len) {
  return !LIVE.has(msg.status) || codePoints(msg.text || "") >= len;
}
