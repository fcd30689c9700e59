/* Versions of a message and Continue (docs/protocol.md, "Branches, versions and
 * Continue"). Pure: no DOM, so `node --test` can reach it. */

/** Where a message stands among its versions: `{index, count, previous, next}` (ids or null), or null with one version. */
export function versionPosition(msg) {
  const versions = msg.versions || [msg.id];
  const index = versions.indexOf(msg.id);
  if (versions.length < 2 || index < 0) return null;
  return {
    index,
    count: versions.length,
    previous: index > 0 ? versions[index - 1] : null,
    next: index < versions.length - 1 ? versions[index + 1] : null,
  };
}

/** A stopped or cut-off answer with text can be continued; not one the content filter stopped. */
export function continuable(msg) {
  return Boolean(msg.text) && (msg.status === "stopped" || (msg.incomplete && msg.finish_reason !== "content_filter"));
}

/** A continuation reads as the rest of the answer it continues: an answer right after its parent answer. */
export function continues(msg, before) {
  return msg.role === "assistant" && before?.role === "assistant" && msg.parent_id === before.id;
}
