/* Numbers, times and durations as the page shows them. */

export const numberFormat = new Intl.NumberFormat("en-US");
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
});

/** Today's times as "14:05", older ones with their date. */
export function formatWhen(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  const today = new Date();
  return when.toDateString() === today.toDateString() ? timeFormat.format(when) : dateTimeFormat.format(when);
}

export function secondsLabel(seconds) {
  return seconds === 1 ? "1 second" : `${seconds} seconds`;
}

// Why an answer is partial: the output limit, the provider's content filter, or a cut stream.
export function cutNote(msg) {
  if (msg.finish_reason === "length") return "This answer was cut off at the model's output limit.";
  if (msg.finish_reason === "content_filter") return "The provider's content filter stopped this answer here.";
  return "This answer was cut off.";
}

const EFFORTS = { low: "Low effort", medium: "Medium effort", high: "High effort" };

/** "High effort" for a reply's reasoning effort; "" when none was asked for. */
export function effortLabel(effort) {
  return EFFORTS[effort] || "";
}
