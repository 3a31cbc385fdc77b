// The file browser: a folder's entries (loaded page by page from the drive API), sorted
// and shown PAGE_SIZE rows at a time, so a folder of 10,000 entries keeps a small DOM.

import { ApiError, downloadUrl, listFolder, zipUrl } from "./api.js";
import { describeError, formatBytes, formatTime } from "./format.js";

export const PAGE_SIZE = 100;

const $ = (id) => document.getElementById(id);

export class Browser {
  constructor({ socket, say }) {
    this.socket = socket;
    this.say = say;
    this.path = "";
    this.entries = [];
    this.selected = new Set();
    this.sort = { key: "name", dir: 1 };
    this.page = 0;
    this.loading = 0;
    $("prev").addEventListener("click", () => this.turn(-1));
    $("next").addEventListener("click", () => this.turn(1));
    $("zip").addEventListener("click", () => this.zip());
    $("select-all").addEventListener("change", (e) => this.selectPage(e.target.checked));
    for (const button of document.querySelectorAll("th button[data-sort]")) {
      button.addEventListener("click", () => this.sortBy(button.dataset.sort));
    }
  }

  get currentPath() {
    return this.path;
  }

  /** Show folder `path` ("" is the root). */
  async open(path) {
    const token = ++this.loading;
    this.path = path;
    this.entries = [];
    this.selected.clear();
    this.page = 0;
    this.renderCrumbs();
    this.render();
    const id = path === "" ? "root" : path === "root" ? "./root" : path;
    let marker = "";
    try {
      do {
        $("listing-status").textContent = `Loading… ${this.entries.length} entries`;
        const page = await listFolder(id, marker);
        if (token !== this.loading) return; // another folder was opened meanwhile
        const first = this.entries.length === 0;
        this.entries.push(...page.items);
        marker = page.next_marker;
        if (first || !marker) {
          // the first rows at once; the rest once all are in (sorting needs them all)
          this.order();
          this.render();
        } else {
          this.renderPager();
        }
      } while (marker);
      $("listing-status").textContent = `${this.entries.length} entries`;
    } catch (error) {
      if (token !== this.loading) return;
      $("listing-status").textContent = "";
      this.say(error instanceof ApiError ? describeError(error.key) : String(error));
    }
  }

  childPath(name) {
    return this.path ? `${this.path}/${name}` : name;
  }

  order() {
    const { key, dir } = this.sort;
    const value = (entry) =>
      key === "size" ? entry.size : key === "mtime" ? entry.updated_at : entry.name;
    this.entries.sort((a, b) => {
      if (a.type !== b.type) return a.type === "folder" ? -1 : 1; // folders first
      const x = value(a);
      const y = value(b);
      const c = x < y ? -1 : x > y ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
      return c * dir;
    });
  }

  sortBy(key) {
    this.sort = { key, dir: this.sort.key === key ? -this.sort.dir : 1 };
    for (const th of document.querySelectorAll("#listing th[aria-sort]")) {
      const mine = th.querySelector("button").dataset.sort === key;
      th.setAttribute(
        "aria-sort",
        mine ? (this.sort.dir === 1 ? "ascending" : "descending") : "none",
      );
    }
    this.order();
    this.page = 0;
    this.render();
  }

  pages() {
    return Math.max(1, Math.ceil(this.entries.length / PAGE_SIZE));
  }

  turn(delta) {
    this.page = Math.min(Math.max(this.page + delta, 0), this.pages() - 1);
    this.render();
  }

  selectPage(checked) {
    for (const entry of this.visible()) {
      const path = this.childPath(entry.name);
      if (checked) this.selected.add(path);
      else this.selected.delete(path);
    }
    this.render();
  }

  visible() {
    const start = this.page * PAGE_SIZE;
    return this.entries.slice(start, start + PAGE_SIZE);
  }

  renderCrumbs() {
    const list = $("crumbs");
    list.replaceChildren();
    const parts = this.path ? this.path.split("/") : [];
    const add = (label, target, current) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.textContent = label;
      a.href = "#/" + target.split("/").filter(Boolean).map(encodeURIComponent).join("/");
      if (current) a.setAttribute("aria-current", "page");
      li.append(a);
      list.append(li);
    };
    add("Home", "", parts.length === 0);
    parts.forEach((part, i) => add(part, parts.slice(0, i + 1).join("/"), i === parts.length - 1));
  }

  render() {
    const rows = $("rows");
    const fragment = document.createDocumentFragment();
    for (const entry of this.visible()) fragment.append(this.row(entry));
    rows.replaceChildren(fragment);
    this.renderPager();
    const visible = this.visible();
    $("select-all").checked =
      visible.length > 0 && visible.every((e) => this.selected.has(this.childPath(e.name)));
    // /api/zip takes one folder, or several items: a lone file is downloaded, not zipped
    const lone = this.selected.size === 1 ? [...this.selected][0] : null;
    const loneFile =
      lone !== null &&
      this.entries.some((e) => e.type === "file" && this.childPath(e.name) === lone);
    $("zip").disabled = this.selected.size === 0 || loneFile;
    $("zip").textContent = `Zip selected (${this.selected.size})`;
  }

  renderPager() {
    $("page-info").textContent = `Page ${this.page + 1} of ${this.pages()}`;
    $("prev").disabled = this.page === 0;
    $("next").disabled = this.page >= this.pages() - 1;
  }

  row(entry) {
    const tr = document.createElement("tr");
    const path = this.childPath(entry.name);
    const pick = document.createElement("input");
    pick.type = "checkbox";
    pick.checked = this.selected.has(path);
    pick.setAttribute("aria-label", `Select ${entry.name}`);
    pick.addEventListener("change", () => {
      if (pick.checked) this.selected.add(path);
      else this.selected.delete(path);
      this.render();
    });
    const name = document.createElement("td");
    if (entry.type === "folder") {
      const a = document.createElement("a");
      a.href = "#/" + path.split("/").map(encodeURIComponent).join("/");
      a.textContent = `${entry.name}/`;
      name.append(a);
    } else {
      name.textContent = entry.name;
    }
    const actions = document.createElement("td");
    if (entry.type === "file") {
      actions.append(
        this.action("Download", entry, () => this.download(entry)),
        " ",
        this.action("Copy link", entry, () => this.copyLink(entry)),
        " ",
        this.action("Checksums", entry, () => this.checksums(entry, path)),
      );
    }
    tr.append(
      cell(pick),
      name,
      cell(entry.type === "folder" ? "—" : formatBytes(entry.size), "num"),
      cell(formatTime(entry.updated_at)),
      actions,
    );
    return tr;
  }

  action(label, entry, handler) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.setAttribute("aria-label", `${label} ${entry.name}`);
    button.addEventListener("click", () => handler().catch((e) => this.fail(e)));
    return button;
  }

  fail(error) {
    this.say(error instanceof ApiError ? describeError(error.key) : String(error));
  }

  expiry() {
    return Number($("expiry").value);
  }

  /** Hand a URL to the browser's own download manager (it resumes by itself). */
  navigate(url) {
    const a = document.createElement("a");
    a.href = url;
    a.download = "";
    document.body.append(a);
    a.click();
    a.remove();
  }

  async download(entry) {
    const reply = await downloadUrl(entry.file_id, 900);
    this.navigate(reply.url);
  }

  async copyLink(entry) {
    const reply = await downloadUrl(entry.file_id, this.expiry());
    await this.share(reply.url, `Link to ${entry.name} copied; it works until ${formatTime(reply.expiration)}.`);
  }

  async share(url, done) {
    const field = $("link");
    field.value = url;
    try {
      await navigator.clipboard.writeText(url);
      this.say(done);
    } catch {
      field.focus();
      field.select();
      this.say("The clipboard is not available: copy the selected link by hand.");
    }
  }

  async checksums(entry, path) {
    const [drive, ws] = await Promise.all([
      downloadUrl(entry.file_id, 60),
      this.socket.request({ type: 7, filename: path, resume_at: 0 }),
    ]);
    const box = $("details");
    box.replaceChildren();
    const title = document.createElement("h3");
    title.textContent = `Checksums of ${entry.name}`;
    const list = document.createElement("dl");
    const add = (name, value) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      const code = document.createElement("code");
      code.textContent = value;
      dd.append(code);
      list.append(dt, dd);
    };
    add("SHA-256", ws.status === 1 ? ws.file_checksum : "unavailable");
    add("SHA-1", drive.content_hash.toLowerCase());
    add("CRC-64/XZ (crc64ecma)", drive.crc64_hash);
    add("Size", `${drive.size} bytes`);
    box.append(title, list);
  }

  async zip() {
    const paths = [...this.selected].sort();
    try {
      const reply = await zipUrl(paths, this.expiry());
      this.navigate(reply.url);
    } catch (error) {
      this.fail(error);
    }
  }
}

function cell(content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.append(content);
  return td;
}
