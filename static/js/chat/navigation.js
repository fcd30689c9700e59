/* Moving between conversations without reloading: the address bar, the title, the
 * subscription and the model follow the conversation on screen. */
import { hideBanners } from "./chrome.js";
import { el, setTitle, urls } from "./page.js";
import { modelWithMessagesLeft, paintPicker, selectModel } from "./picker.js";
import { narrow, paintSidebar, setSidebar } from "./sidebar.js";
import { sendFrame } from "./socket.js";
import { conversationById, state } from "./state.js";
import { setMessages } from "./thread.js";
import { idFromPath, urlWith } from "./urls.js";

export function openConversation(id, push) {
  if (push && id === state.conversationId) { if (narrow.matches) setSidebar(false); return; }
  state.conversationId = id;
  state.editing = null;
  state.loaded = false;
  state.stick = true;
  setMessages([]);
  hideBanners();
  const conversation = conversationById(id);
  setTitle(conversation ? conversation.title : "Chat");
  const remembered = state.modelByConversation.get(id) || (conversation && conversation.model);
  if (remembered) selectModel(remembered);
  if (push) history.pushState({ conversationId: id }, "", urlWith(urls.conversation, id));
  paintSidebar();
  if (narrow.matches) setSidebar(false);
  sendFrame({ type: "subscribe", conversation_id: id });
}

export function newChat(push) {
  state.conversationId = null;
  state.editing = null;
  state.loaded = true;
  state.stick = true;
  setMessages([]);
  hideBanners();
  setTitle(null);
  if (push) history.pushState({ conversationId: null }, "", urls.home);
  paintSidebar();
  if (narrow.matches) setSidebar(false);
  selectModel(modelWithMessagesLeft());
  paintPicker();
  if (!narrow.matches) el.prompt.focus();
}

el.newChat.addEventListener("click", (event) => {
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  newChat(true);
});

window.addEventListener("popstate", () => {
  const id = idFromPath(urls.conversation, location.pathname);
  if (id !== null) openConversation(id, false);
  else newChat(false);
});
