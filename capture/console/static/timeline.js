// The timeline: one horizontal axis (seconds from the call's first instant) shared by every
// lane: each recording's stretch and a waveform per channel, one lane per party with its
// events (joins, drops, holds, DTMF) and hold/mute bands, and a lane for the call (transfers,
// paused stretches). Positions are percentages of the track, so it reflows at any width.
import { clock, el, svg } from "./util.js";

const STEPS = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
const MARK_TEXT = { join: "join", drop: "drop", hold: "hold", unhold: "unhold", mute: "mute", unmute: "unmute", transfer: "transfer" };
const pct = (t, duration) => `${Math.max(0, Math.min(100, (t / duration) * 100))}%`;

export function drawTimeline(tl, parties, onSeek) {
  const duration = tl.duration > 0 ? tl.duration : 1;
  const root = el("div", { class: "timeline", id: "timeline", dataset: { duration: String(duration) } });
  const lane = (label, kind = "") => {
    const track = el("div", { class: "track" });
    const row = el("div", { class: `lane ${kind}` }, el("div", { class: "label", text: label, title: label }), track);
    root.append(row);
    return track;
  };
  const seekable = (track) => {
    track.classList.add("seekable");
    track.addEventListener("click", (e) => {
      if (e.target.closest("button")) return;
      const box = track.getBoundingClientRect();
      onSeek(((e.clientX - box.left) / box.width) * duration);
    });
  };

  const axis = lane("time", "axis");
  const step = STEPS.find((s) => duration / s <= 8) || 3600;
  for (let t = 0; t <= duration + 1e-9; t += step) {
    axis.append(el("span", { class: "tick", style: { left: pct(t, duration) }, text: clock(t) }));
  }

  const waves = new Map();
  tl.recordings.forEach((r, n) => {
    const track = lane(tl.recordings.length > 1 ? `recording ${n + 1}` : "recording");
    track.append(el("div", { class: "bar", dataset: { dialog: r.dialog, start: r.start, duration: r.duration },
      style: { left: pct(r.start, duration), width: pct(r.duration, duration) },
      title: `dialog ${r.dialog}: ${clock(r.start, 1)} to ${clock(r.start + r.duration, 1)}` }));
    seekable(track);
    const lanes = r.channels.map((ch) => {
      const wave = lane(ch.label, "wave");
      seekable(wave);
      const box = el("div", { class: "waveform", style: { left: pct(r.start, duration), width: pct(r.duration, duration) } });
      wave.append(box);
      return {
        draw(min, max) { box.replaceChildren(waveform(min, max, ch.label)); },
        note(text) { box.replaceChildren(el("span", { class: "muted", text })); },
      };
    });
    waves.set(r.dialog, lanes);
  });

  const byParty = new Map(parties.map((p) => [p.index, { label: p.label, events: [], bands: [] }]));
  const call = { events: [], bands: [] };
  for (const e of tl.events) (e.kind !== "transfer" && byParty.get(e.party) || call).events.push(e);
  for (const b of tl.bands) (byParty.get(b.party) || call).bands.push(b);
  const fill = (track, events, bands) => {
    for (const b of bands) {
      track.append(el("div", { class: `band ${b.kind}`, title: `${b.kind}: ${clock(b.start, 1)} to ${clock(b.end, 1)}`,
        style: { left: pct(b.start, duration), width: pct(b.end - b.start, duration) } }));
    }
    for (const e of events) {
      const text = e.kind === "dtmf" ? e.button : MARK_TEXT[e.kind] || e.kind;
      const label = `${e.label} at ${clock(e.t, 2)}${e.duration ? ` (${e.duration.toFixed(2)} s)` : ""}`;
      track.append(el("button", { type: "button", class: `mark ${e.kind}`, title: label, "aria-label": `${label}: play from here`,
        dataset: { t: e.t, kind: e.kind }, style: { left: pct(e.t, duration) }, onclick: () => onSeek(e.t, true), text }));
    }
  };
  for (const [index, p] of byParty) {
    const track = lane(p.label, "party");
    track.parentElement.dataset.party = index;
    fill(track, p.events, p.bands);
  }
  if (call.events.length || call.bands.length) fill(lane("call", "party"), call.events, call.bands);

  const cursor = el("div", { class: "cursor", id: "cursor", style: { left: "0%" } });
  root.append(el("div", { class: "cursor-layer", "aria-hidden": "true" }, cursor));
  const legend = el("ul", { class: "legend", "aria-label": "Legend" },
    el("li", {}, el("span", { style: { background: "var(--hold)" } }), "on hold"),
    el("li", {}, el("span", { style: { background: "var(--mute)" } }), "muted"),
    el("li", {}, el("span", { style: { background: "var(--paused)" } }), "recording paused"),
    el("li", {}, el("span", { style: { background: "var(--bad)", width: "2px" } }), "player position"));
  const list = el("ol", { class: "events", "aria-label": "Events in time order" }, tl.events.map((e) =>
    el("li", {}, el("button", { type: "button", "aria-label": `Play from ${clock(e.t, 1)}`, onclick: () => onSeek(e.t, true),
      text: clock(e.t, 1) }), e.label, e.duration ? ` (${e.duration.toFixed(2)} s)` : "")));
  const node = el("div", {}, root, legend, tl.events.length ? list : null);
  return { node, cursor, waves };
}

// min/max pairs (-1..1) as one filled shape: the upper envelope left to right, the lower back.
function waveform(min, max, label) {
  const n = Math.max(1, max.length);
  const shape = svg("svg", { viewBox: `0 -1 ${n} 2`, preserveAspectRatio: "none", width: "100%", height: "100%",
    role: "img", "aria-label": `Waveform of ${label}` });
  let d = "";
  for (let i = 0; i < n; i++) d += `${i ? "L" : "M"}${i} ${(-max[i] || 0).toFixed(3)}`;
  for (let i = n - 1; i >= 0; i--) d += `L${i + 1} ${(-min[i] || 0).toFixed(3)}`;
  shape.append(svg("path", { d: d + "Z" }));
  return shape;
}
