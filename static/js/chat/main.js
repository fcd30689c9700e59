/* The chat page: sidebar, model picker, conversation, composer and the live WebSocket
 * (docs/protocol.md). Native ES modules, one per concern, served as they are: no build
 * step. Markdown is rendered with the vendored marked, sanitised with DOMPurify and
 * highlighted with highlight.js before it touches the DOM (markdown.js). */
import { autoGrow, promptMax, updateChrome } from "./chrome.js";
import { abandonPending, continueAnswer, regenerate, submitEdit, switchTo } from "./composer.js";
import { handle, onSnapshot } from "./frames.js";
import { newChat, openConversation } from "./navigation.js";
import { organiseStart } from "./organise.js";
import { boot, el, urls } from "./page.js";
import { paintPicker } from "./picker.js";
import { narrow, paintSidebar, sidebarStart } from "./sidebar.js";
import { socketStart } from "./socket.js";
import { state } from "./state.js";
import { setMessages, threadStart } from "./thread.js";

threadStart({ regenerate, submitEdit, continueAnswer, switchTo });
sidebarStart({ open: openConversation, newChat });
organiseStart({ open: openConversation });

// The URL named a chat that is not there (or not ours): the page is a new chat, and says so.
if (boot.notice) history.replaceState({ conversationId: null }, "", urls.home);
paintSidebar();
paintPicker();
if (boot.snapshot) onSnapshot(boot.snapshot); // the socket's snapshot refreshes it
else setMessages([]);
autoGrow(el.prompt, promptMax());
if (!state.conversationId && !narrow.matches) el.prompt.focus();
socketStart({ frame: handle, dropped: abandonPending, changed: updateChrome });
