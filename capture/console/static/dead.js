// Dead letters: vCons a sink refused for good, each with the sink's reason and a button that
// hands it to that sink again (the other sinks already have it).
import { api, el, localTime } from "./util.js";

export class DeadLetters {
  constructor(root) {
    this.root = root;
    this.list = root.querySelector("#dead");
    this.status = root.querySelector("#dead-status");
    this.empty = root.querySelector("#dead-empty");
    this.timer = null;
  }

  show() {
    this.status.textContent = "";
    this.load();
    if (!this.timer) this.timer = setInterval(() => this.load(), 5000);
  }

  hide() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async load() {
    let page;
    try {
      page = await api("/console/api/dead-letters");
    } catch (e) {
      this.status.textContent = `Could not list dead letters: ${e.message}`;
      return;
    }
    const focused = document.activeElement && this.list.contains(document.activeElement) ? document.activeElement.dataset.key : null;
    this.list.replaceChildren(...page.dead_letters.map((d) => this.item(d)));
    this.empty.hidden = page.dead_letters.length > 0;
    if (focused) this.list.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
  }

  item(d) {
    const key = `${d.sink}/${d.uuid}`;
    const retry = el("button", { type: "button", class: "primary", dataset: { key },
      "aria-label": `Retry delivery of ${d.uuid} to ${d.sink}`, text: "Retry delivery" });
    retry.addEventListener("click", () => this.retry(d, retry));
    const heading = el("h3", {}, el("a", { href: `#/vcons/${encodeURIComponent(d.uuid)}`, class: "id", text: d.uuid }));
    return el("li", { class: "card", dataset: { uuid: d.uuid, sink: d.sink } },
      el("article", { "aria-label": `Dead letter ${d.uuid} for ${d.sink}` }, heading,
        el("p", { class: "meta" }, el("span", { text: `sink: ${d.sink}` }),
          d.at ? el("span", { text: `refused ${localTime(d.at * 1000, true)}` }) : null),
        el("p", { class: "reason", text: d.reason || "(no reason recorded)" }), retry));
  }

  async retry(d, button) {
    button.disabled = true;
    try {
      await api(`/console/api/dead-letters/${encodeURIComponent(d.sink)}/${encodeURIComponent(d.uuid)}/retry`, { method: "POST" });
      this.status.textContent = `${d.uuid} handed to ${d.sink} again. Should it be refused again, it comes back here with the new reason.`;
    } catch (e) {
      this.status.textContent = `Retry of ${d.uuid} failed: ${e.message}`;
      button.disabled = false;
    }
    this.load();
  }
}
