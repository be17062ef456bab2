// Small helpers shared by the console's views. Everything from the server is put into the page
// as text (textContent, attributes), never as HTML: a vCon's names come from SIP headers.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// The server's clock minus ours (from /console/api/health), for call durations.
export const server = { offsetMs: 0 };

export class Unauthorized extends Error {}

// JSON from the console's API; a 401 means the token cookie is gone: reload to the sign-in page.
export async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    location.reload();
    throw new Unauthorized("signed out");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

export function parseTime(text) {
  if (!text) return null;
  const t = Date.parse(String(text).replace(" ", "T"));
  return Number.isNaN(t) ? null : t;
}

const two = (n) => String(n).padStart(2, "0");

// 75.3 -> "1:15", with tenths: "1:15.3"; hours when needed.
export function clock(seconds, decimals = 0) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const sign = seconds < 0 ? "-" : "";
  let s = Math.abs(seconds);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const secs = decimals ? s.toFixed(decimals).padStart(3 + decimals, "0") : two(Math.floor(s));
  return sign + (h ? `${h}:${two(m)}:${secs}` : `${m}:${secs}`);
}

export function localTime(ms, withDate = false) {
  if (ms === null) return "–";
  const d = new Date(ms);
  const time = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${time}` : time;
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

export function partyName(party, index) {
  if (party) {
    for (const key of ["name", "tel", "sip", "mailto"]) {
      if (party[key]) return String(party[key]).replace(/^(sip|mailto):/, "");
    }
  }
  return `party ${index}`;
}

export function badge(text, tone) {
  return el("span", { class: `badge ${tone || ""}`, text });
}
