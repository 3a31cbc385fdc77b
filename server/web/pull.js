// Remote downloads: start one into the folder on show, follow its progress as the
// websocket pushes it (type 20), cancel it, and list the history.

import {
  ApiError,
  activeDownloads,
  cancelDownload,
  downloadHistory,
  startDownload,
} from "./api.js";
import { describeError, formatBytes, formatDuration, formatTime } from "./format.js";

const $ = (id) => document.getElementById(id);
const FINAL = new Set(["completed", "failed", "cancelled"]);

export class Puller {
  constructor({ folder, say, onFinished }) {
    this.folder = folder; // () => the folder on show
    this.say = say;
    this.onFinished = onFinished;
    this.jobs = new Map(); // id -> the <li> showing it
    this.finished = new Set(); // ids whose final event came (never shown as running again)
    $("pull-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.start().catch((error) => this.fail(error));
    });
  }

  fail(error) {
    this.say(error instanceof ApiError ? describeError(error.key) : String(error));
  }

  async start() {
    const url = $("pull-url").value.trim();
    const sha = $("pull-sha").value.trim().toLowerCase();
    const reply = await startDownload(this.folder(), url, sha);
    this.say(`Pulling ${reply.filename} into /${this.folder()}`);
    $("pull-url").value = "";
    $("pull-sha").value = "";
    if (!this.jobs.has(reply.download_id)) {
      this.show({ id: reply.download_id, filename: reply.filename, status: "queued" });
    }
  }

  /** Load what is running and the history (after signing in, after a reconnect); a job
   * shown as running that ended meanwhile is shown with its final record. */
  async refresh() {
    const [active, history] = await Promise.all([activeDownloads(), downloadHistory()]);
    for (const job of active.downloads) this.show(job);
    this.renderHistory(history.history);
    const running = new Set(active.downloads.map((job) => job.id));
    for (const record of history.history) {
      if (this.jobs.has(record.id) && !this.finished.has(record.id) && !running.has(record.id)) {
        this.finish(record);
      }
    }
  }

  /** A websocket event: a running job's progress, or its final record. */
  handle(event) {
    if (FINAL.has(event.status)) {
      this.finish(event);
    } else {
      this.show(event);
    }
  }

  show(job) {
    let li = this.jobs.get(job.id);
    if (li && this.finished.has(job.id)) return li;
    if (!li) {
      li = document.createElement("li");
      li.dataset.id = job.id;
      const name = document.createElement("span");
      name.className = "name";
      const bar = document.createElement("progress");
      bar.max = 100;
      bar.setAttribute("aria-label", `Progress of ${job.filename}`);
      const text = document.createElement("span");
      text.className = "progress";
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = "Cancel";
      cancel.setAttribute("aria-label", `Cancel ${job.filename}`);
      cancel.addEventListener("click", () =>
        cancelDownload(job.id).catch((error) => this.fail(error)),
      );
      li.append(name, bar, text, cancel);
      this.jobs.set(job.id, li);
      $("jobs").append(li);
    }
    li.querySelector(".name").textContent = job.filename;
    const bar = li.querySelector("progress");
    if (job.progress_percentage === null || job.progress_percentage === undefined) {
      bar.removeAttribute("value");
    } else {
      bar.value = job.progress_percentage;
    }
    if (job.current_size !== undefined) {
      const percent =
        job.progress_percentage === null ? "" : `${Math.floor(job.progress_percentage)}% · `;
      li.querySelector(".progress").textContent =
        `${percent}${formatBytes(job.current_size)} of ${formatBytes(job.expected_size)} · ` +
        `${formatBytes(job.speed_bytes_per_s)}/s · ETA ${formatDuration(job.eta_s)}`;
    } else {
      li.querySelector(".progress").textContent = job.status;
    }
    li.dataset.status = job.status;
    return li;
  }

  finish(record) {
    this.finished.add(record.id);
    const li = this.jobs.get(record.id) ?? this.show({ ...record, status: "queued" });
    const bar = li.querySelector("progress");
    if (record.status === "completed") bar.value = 100;
    li.dataset.status = record.status;
    li.querySelector(".progress").textContent =
      record.status === "completed"
        ? `100% · ${formatBytes(record.total_bytes)} · completed`
        : `${record.status}${record.error ? `: ${describeError(record.error)}` : ""}`;
    li.querySelector("button")?.remove();
    this.say(`${record.filename}: ${record.status}${record.error ? ` (${describeError(record.error)})` : ""}`);
    downloadHistory()
      .then((history) => this.renderHistory(history.history))
      .catch((error) => this.fail(error));
    if (record.status === "completed") this.onFinished(record);
  }

  renderHistory(rows) {
    const body = $("history-rows");
    const fragment = document.createDocumentFragment();
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.dataset.id = row.id;
      tr.dataset.status = row.status;
      for (const text of [
        row.filename,
        row.status,
        formatBytes(row.total_bytes),
        formatTime(row.end_time),
        describeError(row.error),
      ]) {
        const td = document.createElement("td");
        td.textContent = text ?? "";
        tr.append(td);
      }
      fragment.append(tr);
    }
    body.replaceChildren(fragment);
  }
}
