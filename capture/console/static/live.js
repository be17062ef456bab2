// Live: the calls in progress. A call appears as soon as the live socket says it started and
// goes when it says it ended; /api/calls (polled each second while this view is shown) fills in
// levels, durations and counters, and is the truth should the socket miss something.
import { api, badge, clock, el, localTime, parseTime, partyName, server } from "./util.js";

const POLL_MS = 1000;
const RECENT_EVENTS = 4;
const LEVEL_FLOOR = -60;
// Ended calls remembered, so a poll answered just before a call ended cannot bring its card back.
const ENDED_KEPT = 1000;

export class Live {
  constructor(root) {
    this.root = root;
    this.list = root.querySelector("#calls");
    this.empty = root.querySelector("#live-empty");
    this.connection = root.querySelector("#live-connection");
    this.calls = new Map();
    this.ended = new Set();
    this.timer = null;
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  show() {
    this.poll();
    if (!this.timer) this.timer = setInterval(() => this.poll(), POLL_MS);
  }

  hide() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async poll() {
    const asked = performance.now();
    let snapshots;
    try { snapshots = await api("/api/calls"); } catch (e) { return; }
    const present = new Set();
    for (const snap of snapshots) {
      present.add(snap.vcon_uuid);
      if (this.ended.has(snap.vcon_uuid)) continue;
      this.upsert(snap.vcon_uuid, snap).streams = snap.streams || [];
      this.render(snap.vcon_uuid);
    }
    for (const [uuid, call] of this.calls) {
      // A call added by the socket after this poll was asked for is not in its answer yet.
      if (!present.has(uuid) && call.addedAt < asked) this.remove(uuid);
    }
  }

  onLive(event) {
    if (event.type === "socket") {
      this.connection.textContent = event.state === "open" ? "" : "Live updates reconnecting…";
      if (event.state === "open" && this.active) this.poll();
      return;
    }
    const uuid = event.vcon_uuid;
    if (!uuid) return;
    if (event.type === "call_ended") {
      this.ended.add(uuid);
      if (this.ended.size > ENDED_KEPT) this.ended.delete(this.ended.values().next().value);
      this.remove(uuid);
      return;
    }
    if (this.ended.has(uuid)) return;
    if (event.type === "call" || event.type === "call_started") {
      this.upsert(uuid, event);
      this.render(uuid);
      return;
    }
    const call = this.calls.get(uuid);
    if (!call) return;
    const who = partyName(call.snap.parties?.[event.party], event.party);
    switch (event.type) {
      case "party_joined": {
        const parties = [...(call.snap.parties || [])];
        parties[event.party] = { tel: event.tel, sip: event.sip, name: event.name };
        call.snap.parties = parties;
        this.remember(call, `${partyName(parties[event.party], event.party)} joined`, event.at);
        break;
      }
      case "party_left": this.remember(call, `${who} left`, event.at); break;
      case "hold": call.held.add(event.party); this.remember(call, `${who} on hold`, event.at); break;
      case "unhold": call.held.delete(event.party); this.remember(call, `${who} off hold`, event.at); break;
      case "dtmf": this.remember(call, `${who} pressed ${event.digit}`, event.at); break;
      case "recording_paused": call.snap.paused = true; this.remember(call, `recording paused (${event.by || "?"})`, event.at); break;
      case "recording_resumed": call.snap.paused = false; this.remember(call, `recording resumed (${event.by || "?"})`, event.at); break;
      default: return;
    }
    this.render(uuid);
  }

  upsert(uuid, fields) {
    let call = this.calls.get(uuid);
    if (!call) {
      call = { snap: {}, held: new Set(), events: [], streams: [], addedAt: performance.now(), dom: this.card(uuid) };
      this.calls.set(uuid, call);
      this.list.prepend(call.dom.li);
    }
    const { type, ...rest } = fields;
    call.snap = { ...call.snap, ...rest };
    return call;
  }

  remove(uuid) {
    const call = this.calls.get(uuid);
    if (!call) return;
    call.dom.li.remove();
    this.calls.delete(uuid);
    this.empty.hidden = this.calls.size > 0;
  }

  remember(call, text, at) {
    call.events.unshift({ text, at: parseTime(at) });
    call.events.length = Math.min(call.events.length, RECENT_EVENTS);
  }

  card(uuid) {
    const title = el("h3", { id: `call-${uuid}` });
    const dom = {
      title,
      source: el("span"), started: el("time"), duration: el("span", { class: "duration" }), state: el("span"),
      parties: el("ul", { class: "parties", "aria-label": "Parties" }),
      streams: el("ul", { class: "streams", "aria-label": "Audio streams" }),
      recent: el("ol", { class: "recent", "aria-label": "Latest events" }),
      pause: el("button", { type: "button" }),
    };
    dom.pause.addEventListener("click", () => this.togglePause(uuid));
    const meta = el("p", { class: "meta" }, dom.source, el("span", {}, "started ", dom.started), dom.duration, dom.state);
    const article = el("article", { class: "card", "aria-labelledby": title.id },
      title, meta, dom.parties, dom.streams, dom.recent,
      el("div", { class: "call-actions" }, dom.pause),
      el("p", { class: "id muted", text: uuid }));
    dom.li = el("li", { class: "call", dataset: { uuid } }, article);
    return dom;
  }

  render(uuid) {
    const call = this.calls.get(uuid);
    if (!call) return;
    const { snap, dom } = call;
    const parties = snap.parties || [];
    dom.li.dataset.callId = snap.call_id || "";
    dom.li.dataset.held = call.held.size ? "true" : "false";
    dom.title.textContent = parties.length ? parties.map(partyName).join(" ↔ ") : (snap.call_id || uuid);
    dom.source.textContent = snap.source || "?";
    dom.source.title = "adapter";
    const start = parseTime(snap.at);
    dom.started.textContent = localTime(start);
    if (snap.at) dom.started.dateTime = String(snap.at).replace(" ", "T");
    dom.state.replaceChildren(snap.paused ? badge("recording paused", "bad") : badge(snap.answered ? "answered" : "setting up", snap.answered ? "ok" : "warn"));
    dom.pause.textContent = snap.paused ? "Resume recording" : "Pause recording";
    dom.pause.setAttribute("aria-label", `${dom.pause.textContent}: ${dom.title.textContent}`);
    dom.parties.replaceChildren(...parties.map((p, i) => el("li", { dataset: { party: i } },
      el("span", { text: partyName(p, i) }),
      p && p.tel && p.name ? el("span", { class: "muted", text: p.tel }) : null,
      call.held.has(i) ? badge("on hold", "warn held") : null)));
    dom.streams.replaceChildren(...call.streams.map((s) => this.stream(s, parties)));
    dom.recent.replaceChildren(...call.events.map((e) => el("li", {}, el("time", { text: localTime(e.at) }), " ", e.text)));
    this.tickOne(call);
    this.empty.hidden = this.calls.size > 0;
  }

  stream(s, parties) {
    const who = partyName(parties[s.party], s.party);
    const level = typeof s.level_db === "number" ? s.level_db : null;
    const meter = el("meter", { min: LEVEL_FLOOR, max: 0, low: -45, high: -6, optimum: -20,
      value: level === null ? LEVEL_FLOOR : Math.max(LEVEL_FLOOR, level),
      "aria-label": `Level of ${who}` });
    const counters = Object.entries(s).filter(([k]) => !["stream_id", "party", "seconds", "level_db", "lost_s", "write_errors"].includes(k));
    const nums = [`${clock(s.seconds)} recorded`];
    if (s.lost_s) nums.push(`${s.lost_s} s lost`);
    if (s.write_errors) nums.push(`${s.write_errors} write errors`);
    for (const [k, v] of counters) nums.push(`${k.replace(/_/g, " ")} ${v}`);
    return el("li", { dataset: { stream: s.stream_id } },
      el("span", { text: who, title: s.stream_id }), meter,
      el("span", { class: "db", text: level === null ? "silent" : `${level.toFixed(0)} dBFS` }),
      el("span", { class: "nums", text: nums.join(" · ") }));
  }

  tick() { for (const call of this.calls.values()) this.tickOne(call); }

  tickOne(call) {
    const start = parseTime(call.snap.at);
    if (start === null) return;
    call.dom.duration.textContent = clock((Date.now() + server.offsetMs - start) / 1000);
  }

  async togglePause(uuid) {
    const call = this.calls.get(uuid);
    if (!call) return;
    const action = call.snap.paused ? "resume" : "pause";
    try {
      const done = await api(`/api/calls/${encodeURIComponent(uuid)}/${action}`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ reason: "operator console" }),
      });
      call.snap.paused = done.paused;
      this.render(uuid);
    } catch (e) {
      this.connection.textContent = `Could not ${action}: ${e.message}`;
    }
  }
}
