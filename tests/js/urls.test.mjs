// URLs from the page's bootstrap data (static/js/chat/urls.js; chat/views.py `chat_page`).
import assert from "node:assert/strict";
import { test } from "node:test";

import { idFromPath, urlWith } from "../../static/js/chat/urls.js";

test("a conversation's id fills the template", () => {
  assert.equal(urlWith("/c/{id}/", 42), "/c/42/");
  assert.equal(urlWith("/api/conversations/{id}/rename/", 7), "/api/conversations/7/rename/");
});

test("the id is read back from a conversation's path, and only from one", () => {
  assert.equal(idFromPath("/c/{id}/", "/c/42/"), 42);
  assert.equal(idFromPath("/c/{id}/", "/"), null);
  assert.equal(idFromPath("/c/{id}/", "/c/42/extra/"), null);
  assert.equal(idFromPath("/c/{id}/", "/c/abc/"), null);
  assert.equal(idFromPath("/chat.v2/c/{id}/", "/chatXv2/c/1/"), null); // template text is literal
  assert.equal(idFromPath("/chat.v2/c/{id}/", "/chat.v2/c/1/"), 1);
});
