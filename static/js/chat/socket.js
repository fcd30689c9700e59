/* The page's one WebSocket (docs/protocol.md): frames out, frames in, reconnecting
 * with backoff, a ping to keep proxies from closing it, and actions made while
 * disconnected held until it opens. */
import { el, urls } from "./page.js";
import { state } from "./state.js";

const PING_EVERY_MS = 25000;

// outbox: actions made while (re)connecting; the server has not seen them, so they go out on open.
const socket = { ws: null, attempt: 0, timer: 0, ping: 0, everOpened: false, outbox: [] };

// What to do with a frame, with actions lost in a drop, and after either end of a connection; from main.js.
let on = { frame() {}, dropped() {}, changed() {} };

export function socketOpen() {
  return socket.ws && socket.ws.readyState === WebSocket.OPEN;
}

/** Send now, or not at all (false) while disconnected. */
export function sendFrame(frame) {
  if (!socketOpen()) return false;
  socket.ws.send(JSON.stringify(frame));
  return true;
}

/** Send an action with a `client_id` now, or as soon as the socket opens. */
export function sendAction(frame) {
  const action = state.pending.get(frame.client_id);
  if (socketOpen()) {
    sendFrame(frame);
    if (action) action.sent = true;
  } else {
    socket.outbox.push(frame);
  }
}

function flushOutbox() {
  const frames = socket.outbox.splice(0);
  for (const frame of frames) {
    if (state.pending.has(frame.client_id)) sendAction(frame);
  }
}

function setConnectionBanner(show, text) {
  el.connection.hidden = !show;
  if (text) el.connectionText.textContent = text;
}

// Set when this page's own log-out form is sent: its answer may lead on to the identity provider's
// logout (single sign-on), which a jump to the login page on the socket's close would cut short.
let loggingOut = false;
document.addEventListener("submit", (event) => {
  if (event.target.matches?.(".logout-form")) loggingOut = true;
});

function goToLogin() {
  if (loggingOut) return;
  location.assign(`${urls.login}?next=${encodeURIComponent(location.pathname)}`);
}

function connect() {
  window.clearTimeout(socket.timer);
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(`${scheme}${location.host}${urls.socket}`);
  socket.ws = ws;
  let opened = false;
  ws.addEventListener("open", () => {
    opened = true;
    socket.everOpened = true;
    socket.attempt = 0;
    setConnectionBanner(false);
    if (state.conversationId) sendFrame({ type: "subscribe", conversation_id: state.conversationId });
    sendFrame({ type: "quota" });
    flushOutbox();
    window.clearInterval(socket.ping);
    socket.ping = window.setInterval(() => sendFrame({ type: "ping" }), PING_EVERY_MS);
    on.changed();
  });
  ws.addEventListener("message", (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch (_) { return; }
    on.frame(frame);
  });
  ws.addEventListener("close", (event) => {
    if (socket.ws !== ws) return;
    window.clearInterval(socket.ping);
    on.dropped();
    if (event.code === 4401) {
      setConnectionBanner(true, "You have been logged out. Taking you to the login page…");
      goToLogin();
      return;
    }
    setConnectionBanner(true, "Reconnecting…");
    if (!opened) checkStillLoggedIn();
    const base = Math.min(10000, 500 * 2 ** socket.attempt);
    socket.attempt += 1;
    const delay = base / 2 + Math.random() * base / 2;
    socket.timer = window.setTimeout(connect, delay);
    on.changed();
  });
}

/** A refused handshake looks like any network error; a redirect from the API tells us the session is gone. */
async function checkStillLoggedIn() {
  try {
    const response = await fetch(urls.quota, { credentials: "same-origin", redirect: "manual" });
    if (response.type === "opaqueredirect" || response.status === 401 || response.status === 403) {
      goToLogin();
    }
  } catch (_) {
    // The server is down: keep retrying.
  }
}

window.addEventListener("online", () => {
  if (!socketOpen()) { socket.attempt = 0; connect(); }
});

/** Connect, and keep connecting; `handlers` are {frame(frame), dropped(), changed()}. */
export function socketStart(handlers) {
  on = handlers;
  // A first connect that fails should say so; a quick one should not flash a banner.
  window.setTimeout(() => { if (!socketOpen() && !socket.everOpened) setConnectionBanner(true, "Connecting…"); }, 1500);
  connect();
}
