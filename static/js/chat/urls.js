/* The page's URLs come from its bootstrap data (chat/views.py `chat_page`), never
 * written here; in a template `{id}` stands for a conversation id. Pure: no DOM. */

export function urlWith(template, id) {
  return template.replace("{id}", String(id));
}

/** The conversation id in `path` when it is a conversation's page, else null. */
export function idFromPath(template, path) {
  const [before, after] = template.split("{id}").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const match = new RegExp(`^${before}(\\d+)${after}$`).exec(path);
  return match ? Number(match[1]) : null;
}
