// One vCon: its facts, the timeline (recordings, a waveform per channel, party_history and
// transfers on one time axis, a cursor that follows the player and markers that move it), and
// the parties, dialogs, CDR, attachments and validation underneath.
import { api, badge, bytes, clock, el, localTime, parseTime } from "./util.js";
import { drawTimeline } from "./timeline.js";

const SIGNATURE_TONES = { verified: "ok", none: "", unverified: "warn", invalid: "bad", unreadable: "warn" };

export class Detail {
  constructor(root) {
    this.root = root;
    this.body = root.querySelector("#detail");
    this.title = root.querySelector("#detail-title");
    this.status = root.querySelector("#detail-status");
    this.player = null;
    this.frame = null;
  }

  hide() {
    if (this.player) this.player.pause();
    cancelAnimationFrame(this.frame);
  }

  async show(uuid) {
    this.hide();
    this.body.replaceChildren();
    this.title.textContent = "vCon";
    this.status.textContent = "Loading…";
    let page;
    try {
      page = await api(`/console/api/vcons/${encodeURIComponent(uuid)}`);
    } catch (e) {
      this.status.textContent = `Could not open this vCon: ${e.message}`;
      return;
    }
    this.status.textContent = "";
    this.page = page;
    const parties = page.parties || [];
    this.title.textContent = parties.length ? parties.map((p) => p.label).join(" ↔ ") : `vCon ${page.uuid}`;
    document.title = `${this.title.textContent} · vcon-capture`;
    this.body.append(this.facts(page));
    if (page.form === "encrypted") return;
    this.body.append(this.timelinePanel(page), this.parties(page), this.dialogs(page),
      this.cdr(page), this.attachments(page), this.validation(page));
  }

  facts(page) {
    const cdr = page.cdr || {};
    const start = parseTime(cdr.start || page.created_at);
    const item = (term, ...value) => el("div", {}, el("dt", { text: term }), el("dd", {}, ...value));
    const problems = page.problems || [];
    return el("dl", { class: "facts" },
      item("Started", el("time", { datetime: cdr.start || page.created_at || "", title: cdr.start || "", text: localTime(start, true) })),
      item("Duration", cdr.duration !== undefined && cdr.duration !== null ? clock(cdr.duration) : clock(page.timeline?.duration)),
      item("Disposition", badge(page.disposition || "unknown", page.disposition === "answered" ? "ok" : "warn")),
      item("Adapter", cdr.source || "–"),
      item("Form", page.form, " ", badge(page.signature === "none" ? "not signed" : `signature ${page.signature}`, SIGNATURE_TONES[page.signature]),
        page.signature_detail ? el("div", { class: "muted", text: page.signature_detail }) : null),
      item("Validation", badge(problems.length ? `${problems.length} problem${problems.length > 1 ? "s" : ""}` : "valid", problems.length ? "bad" : "ok")),
      item("Size", bytes(page.size)),
      item("uuid", el("span", { class: "id", text: page.uuid })),
      item("File", el("a", { href: page.download, download: `${page.uuid}.vcon`, text: "Download the vCon" })));
  }

  timelinePanel(page) {
    const tl = page.timeline;
    const heading = el("h2", { id: "timeline-title", text: "Timeline" });
    const panel = el("section", { class: "panel", "aria-labelledby": heading.id }, heading);
    if (!tl || tl.origin === null) {
      panel.append(el("p", { class: "empty", text: "Nothing in this vCon has a time." }));
      return panel;
    }
    const playable = tl.recordings.map((r) => ({ ...r, audio: page.dialogs[r.dialog]?.audio }))
      .filter((r) => r.audio && r.audio.src);
    this.recordings = playable;
    this.current = playable[0] || null;
    const audio = el("audio", { id: "player", controls: true, preload: "metadata" });
    const time = el("span", { class: "clock", "aria-hidden": "true", text: "" });
    this.player = audio;
    const row = el("div", { class: "player" });
    if (playable.length > 1) {
      const select = el("select", { id: "recording" }, ...playable.map((r, i) =>
        el("option", { value: i, text: `Recording ${i + 1} (dialog ${r.dialog}, ${r.channels.map((c) => c.label).join(", ")})` })));
      select.addEventListener("change", () => this.choose(playable[Number(select.value)], 0, false));
      row.append(el("label", { for: "recording", text: "Recording" }), select);
    }
    if (playable.length) {
      audio.setAttribute("aria-label", "Recording player");
      row.append(audio, time);
      audio.src = this.current.audio.src;
    } else {
      const external = tl.recordings.map((r) => page.dialogs[r.dialog]?.audio).find((a) => a && a.url);
      row.append(el("p", { class: "muted", text: external ? `The audio is referenced (${external.url}); it is not stored here.` : "No audio in this vCon." }));
    }
    panel.append(row);
    const view = drawTimeline(tl, page.parties || [], (t, play) => this.seek(t, play));
    this.cursor = view.cursor;
    this.duration = tl.duration || 1;
    panel.append(view.node);
    for (const r of tl.recordings) {
      const link = page.dialogs[r.dialog]?.audio;
      if (link && link.peaks) this.waveform(link.peaks, view.waves.get(r.dialog));
    }
    const follow = () => {
      this.moveCursor();
      time.textContent = `${clock(this.cursorT, 1)} / ${clock(tl.duration, 1)}`;
      if (!audio.paused) this.frame = requestAnimationFrame(follow);
    };
    audio.addEventListener("play", () => { cancelAnimationFrame(this.frame); follow(); });
    audio.addEventListener("timeupdate", follow);
    audio.addEventListener("seeked", follow);
    audio.addEventListener("pause", follow);
    audio.addEventListener("loadedmetadata", follow);
    follow();
    return panel;
  }

  async waveform(url, lanes) {
    if (!lanes) return;
    let peaks;
    try {
      peaks = await api(url);
    } catch (e) {
      for (const lane of lanes) lane.note(`waveform unavailable: ${e.message}`);
      return;
    }
    peaks.channels.forEach((ch, i) => lanes[i] && lanes[i].draw(ch.min, ch.max));
  }

  choose(recording, offset, play = false) {
    if (!recording || !this.player) return;
    if (this.current !== recording) {
      this.current = recording;
      this.player.src = recording.audio.src;
      const select = this.root.querySelector("#recording");
      if (select) select.value = String(this.recordings.indexOf(recording));
    }
    const apply = () => {
      this.player.currentTime = Math.max(0, Math.min(offset, recording.duration));
      this.moveCursor();
      if (play) this.player.play().catch(() => {});
    };
    if (this.player.readyState >= 1) apply();
    else this.player.addEventListener("loadedmetadata", apply, { once: true });
  }

  // Timeline time t (seconds from the call's first instant): the player goes there (and plays).
  seek(t, play = false) {
    if (!this.recordings || !this.recordings.length) return;
    const inside = this.recordings.find((r) => t >= r.start && t <= r.start + r.duration);
    const recording = inside || this.current;
    this.choose(recording, t - recording.start, play);
  }

  moveCursor() {
    if (!this.cursor || !this.current) return;
    const t = this.current.start + (this.player ? this.player.currentTime : 0);
    this.cursorT = t;
    this.cursor.style.left = `${Math.max(0, Math.min(100, (t / this.duration) * 100))}%`;
    this.cursor.dataset.t = t.toFixed(3);
  }

  parties(page) {
    const rows = (page.parties || []).map((p) => el("tr", {},
      el("td", { text: p.index }), el("td", { text: p.name || "" }), el("td", { text: p.tel || "" }),
      el("td", { text: p.sip || "" }), el("td", { text: p.mailto || "" })));
    return section("Parties", table(["#", "Name", "Number", "SIP", "Email"], rows));
  }

  dialogs(page) {
    const origin = parseTime(page.timeline?.origin);
    const rows = (page.dialogs || []).map((d) => {
      const start = parseTime(d.start);
      const notes = [];
      if (d.disposition) notes.push(`disposition ${d.disposition}`);
      if (d.type === "transfer") notes.push(`transferee ${d.transferee}, transferor ${d.transferor}, target ${d.transfer_target}`);
      if (d.recordings) notes.push(`recordings ${d.recordings.join(", ")}`);
      if (d.url) notes.push(d.url);
      else if (d.inline) notes.push("inline");
      if (d.history_entries) notes.push(`${d.history_entries} history entries`);
      return el("tr", {}, el("td", { text: d.index }), el("td", { text: d.type }),
        el("td", { text: start !== null && origin !== null ? `+${clock((start - origin) / 1000, 1)}` : "–" }),
        el("td", { text: d.duration !== undefined ? clock(d.duration, 1) : "–" }),
        el("td", { text: Array.isArray(d.parties) ? d.parties.join(", ") : d.parties ?? "" }),
        el("td", { text: d.mediatype || "" }), el("td", { text: notes.join("; ") }));
    });
    return section("Dialogs", table(["#", "Type", "Start", "Duration", "Parties", "Media", "Notes"], rows));
  }

  cdr(page) {
    const entries = Object.entries(page.cdr || {});
    if (!entries.length) return section("CDR", el("p", { class: "empty", text: "No CDR attachment." }));
    const list = el("dl", { class: "kv" });
    for (const [key, value] of entries) {
      list.append(el("dt", { text: key }), el("dd", { text: typeof value === "object" && value !== null ? JSON.stringify(value) : String(value) }));
    }
    return section("CDR", list);
  }

  attachments(page) {
    const items = (page.attachments || []).map((a) => {
      const label = `${a.purpose || a.type || "attachment"} · ${a.mediatype || "?"} · ${bytes(a.size)}`;
      const content = a.preview !== null && a.preview !== undefined
        ? el("pre", { tabindex: "0", text: a.preview + (a.truncated ? "\n… (download the vCon for the rest)" : "") })
        : el("p", { class: "muted", text: a.encoding === "base64url" ? "binary content (in the download)" : "no body" });
      return el("li", {}, el("details", {}, el("summary", { text: label }), content));
    });
    const notes = page.notes ? el("details", { open: true }, el("summary", { text: "Capture notes (what went wrong while recording)" }),
      el("pre", { tabindex: "0", text: JSON.stringify(page.notes, null, 2) })) : null;
    return section("Attachments", notes, items.length ? el("ul", { class: "cards" }, items) : el("p", { class: "empty", text: "No attachments." }));
  }

  validation(page) {
    const problems = page.problems || [];
    const body = problems.length
      ? el("ul", { class: "problems" }, problems.map((p) => el("li", { text: p })))
      : el("p", { text: "No problems: the document passes vcon-capture's validator (draft core-04 rules and what the schema cannot express)." });
    return section("Validation", body);
  }
}

function section(title, ...children) {
  const id = `section-${title.toLowerCase().replace(/\W+/g, "-")}`;
  return el("section", { class: "panel", "aria-labelledby": id }, el("h2", { id, text: title }), ...children);
}

function table(headers, rows) {
  if (!rows.length) return el("p", { class: "empty", text: "None." });
  return el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "table" },
    el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))), el("tbody", {}, rows)));
}
