/* The quota texts of the model picker, the composer hint and the quota banner, from
 * one model's numbers in a `quota` frame (docs/protocol.md). Pure: no DOM. */

/** "37 left · resets Tue 19 Nov 00:00", "Limit reached", "Unlimited", … and, with a token or
 * money budget, what is left of it beside: "· $3.20 of $20.00 left this month (resets 1 Dec, 00:00)". */
export function quotaLine(q) {
  if (q.disabled) return "Not available on your plan";
  const budget = q.budget;
  if (budget && budget.blocked) return budget.resets_label ? `Budget reached · resets ${budget.resets_label}` : "Budget reached";
  if (q.exhausted) return q.resets_label ? `Limit reached · resets ${q.resets_label}` : "Limit reached";
  let line;
  if (q.limit === null || q.limit === undefined) line = "Unlimited";
  else line = q.resets_label ? `${q.left} left · resets ${q.resets_label}` : `${q.left} left`;
  if (!budget) return line;
  return `${line} · ${budget.label}${budget.resets_label ? ` (resets ${budget.resets_label})` : ""}`;
}

/** The hint under the composer for the chosen model. */
export function quotaHint(q) {
  return {
    className: q.exhausted ? "hint-quota is-exhausted" : q.few_left ? "hint-quota is-few" : "hint-quota",
    text: `${q.name} · ${quotaLine(q)}`,
  };
}

/** A model's entry in the picker: greyed out when it cannot be used, marked when few are left. */
export function modelOption(q) {
  const unavailable = Boolean(q.exhausted || q.disabled);
  const classes = ["model-option"];
  if (unavailable) classes.push("is-disabled");
  else if (q.few_left) classes.push("is-few");
  return { unavailable, className: classes.join(" "), line: quotaLine(q) };
}

/** The line under "What can I help with?": the model and what it is for. */
export function modelSummary(q) {
  return q ? `${q.name} · ${q.description || ""}`.replace(/ · $/, "") : "";
}

/** The quota banner's button, offering the model the server suggests. */
export function switchLabel(slug, target) {
  return `Switch to ${target ? target.name : slug}`;
}

/** The models' numbers after a `quota` frame; a partial one carries only the models whose numbers changed. */
export function quotaMerge(current, frame) {
  if (!frame.partial) return frame.models;
  const changed = new Map(frame.models.map((q) => [q.model, q]));
  return current.map((q) => changed.get(q.model) || q);
}

/** The models' numbers once the server has refused a send for `slug`'s quota: that model is
 * at its limit now, whatever the numbers we had said, until the server sends fresh ones. */
export function quotaMarkExhausted(current, slug) {
  return current.map((q) => (q.model === slug
    ? { ...q, exhausted: true, few_left: false, left: q.limit === null || q.limit === undefined ? q.left : 0,
      used: q.limit === null || q.limit === undefined ? q.used : Math.max(q.used || 0, q.limit) }
    : q));
}

/** "5 o1-preview messages left until Wed 9 Dec, 00:00" once the model has `threshold` or fewer
 * left (none of it at the limit: the quota banner says that); "" otherwise. */
export function fewLeftNotice(q, threshold) {
  if (!q || q.exhausted || q.disabled || q.limit === null || q.limit === undefined) return "";
  const limit = Number.isInteger(threshold) ? threshold : null;
  const few = limit === null ? q.few_left : q.left <= limit;
  if (!few || !(q.left > 0)) return "";
  const text = `${q.left} ${q.name} ${q.left === 1 ? "message" : "messages"} left`;
  return q.resets_label ? `${text} until ${q.resets_label}` : text;
}
