// Recent vCons: the output directory, newest first, searchable by number, name, date and
// disposition. The search lives in the address (#/vcons?q=...) so it can be bookmarked.
import { api, badge, clock, el, localTime, parseTime } from "./util.js";

const PAGE = 50;
const FIELDS = ["q", "from", "to", "disposition"];
const FORM_TONES = { signed: "ok", encrypted: "warn", unknown: "bad" };

export class VconList {
  constructor(root) {
    this.root = root;
    this.form = root.querySelector("#search");
    this.list = root.querySelector("#vcons");
    this.status = root.querySelector("#vcons-status");
    this.more = root.querySelector("#more");
    this.after = null;
    this.query = new URLSearchParams();
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      const params = new URLSearchParams();
      for (const name of FIELDS) {
        const value = this.form.elements[name].value.trim();
        if (value) params.set(name, value);
      }
      const target = `#/vcons${params.toString() ? "?" + params : ""}`;
      if (location.hash === target) this.load(params); else location.hash = target;
    });
    this.more.addEventListener("click", () => this.load(this.query, this.after));
  }

  show(params) {
    for (const name of FIELDS) this.form.elements[name].value = params.get(name) || "";
    this.load(params);
  }

  hide() {}

  onLive(event) {
    // A call that ended becomes a vCon moments later: refresh the first page if it is on screen.
    if (event.type === "call_ended" && this.active && !this.after) {
      setTimeout(() => { if (this.active) this.load(this.query); }, 2000);
    }
  }

  async load(params, after = null) {
    this.query = params;
    const ask = new URLSearchParams(params);
    ask.set("limit", String(PAGE));
    if (after) ask.set("after", after);
    this.status.textContent = "Loading…";
    let page;
    try {
      page = await api(`/console/api/vcons?${ask}`);
    } catch (e) {
      this.status.textContent = `Could not list vCons: ${e.message}`;
      return;
    }
    if (!after) this.list.replaceChildren();
    this.list.append(...page.vcons.map((v) => this.item(v)));
    this.after = page.after;
    this.more.hidden = !page.after;
    const shown = this.list.children.length;
    const filtered = [...params.keys()].length > 0;
    this.status.textContent = shown
      ? `${shown} vCon${shown === 1 ? "" : "s"}${filtered ? " match" : ""}${page.after ? " so far" : ""}.`
      : filtered ? "No vCon matches." : "No vCons yet.";
  }

  item(v) {
    const start = parseTime(v.start);
    const title = v.parties.length ? v.parties.join(" ↔ ") : v.uuid;
    const link = el("a", { href: `#/vcons/${encodeURIComponent(v.uuid)}`, text: title });
    const when = el("time", { datetime: v.start || "", text: localTime(start, true) });
    const facts = el("p", { class: "meta" }, when,
      el("span", { text: v.duration === null || v.duration === undefined ? "–" : clock(v.duration) }),
      badge(v.disposition, v.disposition === "answered" ? "ok" : "warn"),
      v.source ? el("span", { text: v.source }) : null,
      v.form !== "unsigned" ? badge(v.form, FORM_TONES[v.form] || "") : null,
      v.recordings ? el("span", { text: `${v.recordings} recording${v.recordings > 1 ? "s" : ""}` }) : el("span", { text: "no audio" }));
    return el("li", { class: "card", dataset: { uuid: v.uuid } },
      el("article", {}, el("h3", {}, link), facts, v.subject ? el("p", { text: v.subject }) : null));
  }
}
