// browserd's live view: the page of a live view link, streamed as JPEG
// frames over a WebSocket, with mouse, wheel and keyboard forwarded when
// the link allows control. The link's key is this URL's fragment, which
// the browser never sends in a request or a referrer; it goes to the
// server once, in the socket's URL.
"use strict";

const $ = (id) => document.getElementById(id);
const key = location.hash.slice(1);
const screen = $("screen");
let socket = null;
let control = false;
let size = { width: 0, height: 0 };
let frames = 0;

function say(text) {
  $("state").textContent = text;
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function point(e) {
  const rect = screen.getBoundingClientRect();
  const x = ((e.clientX - rect.left) / rect.width) * (size.width || rect.width);
  const y = ((e.clientY - rect.top) / rect.height) * (size.height || rect.height);
  return { x: Math.round(x * 100) / 100, y: Math.round(y * 100) / 100 };
}

function modifiers(e) {
  return (e.altKey ? 1 : 0) | (e.ctrlKey ? 2 : 0) | (e.metaKey ? 4 : 0) | (e.shiftKey ? 8 : 0);
}

const buttons = ["left", "middle", "right"];

function renderTabs(tabs, shown) {
  const nav = $("tabs");
  nav.replaceChildren();
  for (const tab of tabs) {
    const b = document.createElement("button");
    b.textContent = tab.title || tab.url || tab.target;
    b.title = tab.url;
    b.dataset.target = tab.target;
    if (tab.target === shown) b.className = "shown";
    b.addEventListener("click", () => send({ type: "tab", target: tab.target }));
    nav.appendChild(b);
  }
}

function connect() {
  if (!key) {
    say("this live view link has no key: copy the whole link, including what follows #");
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/console/api/live?key=${encodeURIComponent(key)}`);
  socket.addEventListener("message", (m) => {
    const message = JSON.parse(m.data);
    if (message.type === "hello") {
      control = message.control;
      document.body.classList.toggle("control", control);
      $("mode").textContent = control ? "control" : "view only";
      say(`session ${message.session_id}, link until ${new Date(message.expires_at_ms).toLocaleString()}`);
    } else if (message.type === "frame") {
      size = { width: message.width, height: message.height };
      screen.src = `data:image/jpeg;base64,${message.data}`;
      frames += 1;
      screen.dataset.frames = String(frames);
    } else if (message.type === "tabs") {
      renderTabs(message.tabs, message.shown);
    } else if (message.type === "refused") {
      $("notice").textContent = message.reason;
    } else if (message.type === "bye") {
      say(`ended: ${message.reason}`);
      document.body.dataset.ended = message.reason;
    }
  });
  socket.addEventListener("close", (e) => {
    if (!document.body.dataset.ended) {
      const reason = e.reason || "the live view is not available (link expired, revoked, or the session ended)";
      say(`ended: ${reason}`);
      document.body.dataset.ended = reason;
    }
  });
}

screen.addEventListener("mousedown", (e) => {
  e.preventDefault();
  $("stage").focus();
  send({ type: "mouse", event: "down", ...point(e), button: buttons[e.button] || "left", clicks: Math.min(e.detail || 1, 3), modifiers: modifiers(e) });
});
screen.addEventListener("mouseup", (e) => {
  send({ type: "mouse", event: "up", ...point(e), button: buttons[e.button] || "left", clicks: Math.min(e.detail || 1, 3), modifiers: modifiers(e) });
});
let lastMove = 0;
screen.addEventListener("mousemove", (e) => {
  const now = performance.now();
  if (!control || now - lastMove < 30) return;
  lastMove = now;
  send({ type: "mouse", event: "move", ...point(e), modifiers: modifiers(e) });
});
screen.addEventListener("wheel", (e) => {
  if (!control) return;
  e.preventDefault();
  send({ type: "wheel", ...point(e), dx: e.deltaX, dy: e.deltaY, modifiers: modifiers(e) });
}, { passive: false });
screen.addEventListener("contextmenu", (e) => e.preventDefault());
$("stage").addEventListener("keydown", (e) => {
  e.preventDefault();
  send({ type: "key", event: "down", key: e.key, code: e.code, text: e.key.length === 1 ? e.key : (e.key === "Enter" ? "\r" : ""), key_code: e.keyCode, modifiers: modifiers(e) });
});
$("stage").addEventListener("keyup", (e) => {
  e.preventDefault();
  send({ type: "key", event: "up", key: e.key, code: e.code, key_code: e.keyCode, modifiers: modifiers(e) });
});
$("stage").addEventListener("paste", (e) => {
  e.preventDefault();
  const text = (e.clipboardData && e.clipboardData.getData("text")) || "";
  if (text) send({ type: "text", text: text.slice(0, 1024) });
});
connect();
