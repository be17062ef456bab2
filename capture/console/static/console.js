// The console's shell: one page, four views chosen by the address's fragment
// (#/live, #/vcons?q=..., #/vcons/<uuid>, #/dead-letters), the service's health, and the
// events-only live socket every view may listen to.
import { api, badge, bytes, el, server } from "./util.js";
import { Live } from "./live.js";
import { VconList } from "./vcons.js";
import { Detail } from "./detail.js";
import { DeadLetters } from "./dead.js";

const $ = (id) => document.getElementById(id);

// -- the live socket: /api/live?audio=0, reconnected with backoff -----------------------------
const listeners = new Set();

function connect(delay = 500) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/api/live?audio=0`);
  ws.addEventListener("open", () => { delay = 500; notify({ type: "socket", state: "open" }); });
  ws.addEventListener("message", (msg) => {
    if (typeof msg.data !== "string") return;
    let event;
    try { event = JSON.parse(msg.data); } catch (e) { return; }
    notify(event);
  });
  ws.addEventListener("close", () => {
    notify({ type: "socket", state: "closed" });
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  });
}

function notify(event) {
  for (const listener of listeners) {
    try { listener(event); } catch (e) { console.error(e); }
  }
}

function onLive(listener) { listeners.add(listener); }

// -- health ------------------------------------------------------------------------------------
const TONES = { ready: "ok", starting: "warn", draining: "warn" };

async function refreshHealth() {
  try {
    const h = await api("/console/api/health");
    server.offsetMs = Date.parse(h.now) - Date.now();
    const state = $("health-state");
    state.replaceWith(Object.assign(badge(h.state, TONES[h.state] || "bad"), { id: "health-state" }));
    $("health-calls").textContent = String(h.calls);
    $("health-spool").textContent = h.spool_depth ? `${h.spool_depth} waiting` : "empty";
    $("health-dead").textContent = String(h.dead_letters);
    $("dead-count").textContent = h.dead_letters ? String(h.dead_letters) : "";
    // The tightest of the directories the service writes is what matters; the rest in the tooltip.
    const disk = $("health-disk");
    const tightest = [...h.disk].sort((a, b) => a.free_bytes - b.free_bytes)[0];
    const text = tightest ? `${bytes(tightest.free_bytes)}` : "–";
    disk.replaceChildren(tightest && tightest.low ? el("strong", { class: "badge bad", text: `low: ${text} (${tightest.path})` }) : text);
    disk.title = h.disk.map((d) => `${d.path}: ${bytes(d.free_bytes)} free`).join("\n") + `\ncalls are refused below ${bytes(h.min_free_bytes)}`;
    $("logout").hidden = !h.auth;
  } catch (e) {
    $("health-state").textContent = "unreachable";
  }
}

// -- views -------------------------------------------------------------------------------------
const views = {
  live: new Live($("view-live")),
  vcons: new VconList($("view-vcons")),
  detail: new Detail($("view-detail")),
  dead: new DeadLetters($("view-dead")),
};
let current = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  let name = "live", arg = null;
  if (parts[0] === "vcons" && parts[1]) { name = "detail"; arg = decodeURIComponent(parts[1]); }
  else if (parts[0] === "vcons") { name = "vcons"; arg = new URLSearchParams(query); }
  else if (parts[0] === "dead-letters") name = "dead";
  for (const [key, view] of Object.entries(views)) {
    const active = key === name;
    view.root.hidden = !active;
    if (!active && view.active) view.hide();
    view.active = active;
  }
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    const on = link.dataset.view === name || (name === "detail" && link.dataset.view === "vcons");
    if (on) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  const view = views[name];
  view.show(arg);
  const title = view.root.querySelector("h1");
  document.title = `${title ? title.textContent : "console"} · vcon-capture`;
  if (current !== null && current !== name && title) title.focus({ preventScroll: false });
  current = name;
}

window.addEventListener("hashchange", route);
let healthSoon = null;
onLive((event) => {
  for (const view of Object.values(views)) view.onLive?.(event);
  if ((event.type === "call_started" || event.type === "call_ended") && !healthSoon) {
    healthSoon = setTimeout(() => { healthSoon = null; refreshHealth(); }, 300);
  }
});
connect();
refreshHealth();
setInterval(refreshHealth, 3000);
route();
