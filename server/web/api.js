// The public APIs the page uses (see the README), with the token the user typed.
// The token lives in sessionStorage (gone when the tab closes) and travels only in an
// Authorization header or in the websocket's Initialize packet, never in a URL.

const TOKEN_KEY = "slipstream.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An API failure: the HTTP status and the error key or message the server sent. */
export class ApiError extends Error {
  constructor(status, key, message) {
    super(message || key || `HTTP ${status}`);
    this.status = status;
    this.key = key;
  }
}

async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${getToken()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok || (payload && payload.success === false)) {
    const key = payload ? (payload.code ?? payload.error ?? null) : null;
    throw new ApiError(response.status, key, payload ? payload.message : null);
  }
  return payload;
}

/** One page of a folder (drive API). */
export function listFolder(parentId, marker) {
  const body = { parent_file_id: parentId, limit: 200 };
  if (marker) body.marker = marker;
  return call("POST", "/v2/file/list", body);
}

/** A presigned URL (and CRC-64, SHA-1) of a file, valid for expireSec seconds. */
export function downloadUrl(fileId, expireSec) {
  return call("POST", "/v2/file/get_download_url", { file_id: fileId, expire_sec: expireSec });
}

/** A signed /api/zip URL for several paths of the root. */
export function zipUrl(paths, expireSec) {
  return call("POST", "/api/zip/url", { paths, expire_sec: expireSec });
}

/** "/a/b%20c" for the folder path "a/b c". */
export function folderUrl(path) {
  return "/" + path.split("/").filter(Boolean).map(encodeURIComponent).join("/");
}

/** Start a remote download into the folder path (seed 001). */
export function startDownload(folder, url, sha256) {
  const query = new URLSearchParams({ download: url });
  if (sha256) query.set("sha256", sha256);
  return call("GET", `${folderUrl(folder)}?${query}`);
}

export function activeDownloads() {
  return call("GET", "/api/v1/downloads");
}

export function downloadHistory() {
  return call("GET", "/?download_history=");
}

export function cancelDownload(id) {
  return call("DELETE", `/api/v1/downloads/${encodeURIComponent(id)}`);
}

/**
 * The websocket session: Initialize with the token, then type 20 (download events).
 * Reconnects after a drop while the user is signed in.  `onEvent` gets every pushed
 * event; `onResumed()` runs once a reconnect is subscribed again (the events of the
 * gap are lost: the caller reloads what it shows); `request(packet)` resolves with the
 * reply of a numbered request.
 */
export class Socket {
  constructor(onEvent, onState, onResumed = () => {}) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onResumed = onResumed;
    this.dropped = false;
    this.nextId = 1;
    this.pending = new Map();
    this.ws = null;
    this.ready = null;
    this.stopped = true;
    this.retry = 500;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.ws = ws;
    let markReady;
    this.ready = new Promise((resolve) => (markReady = resolve));
    ws.addEventListener("open", async () => {
      const init = await this.send({ type: 1, token: getToken() });
      if (init.status !== 1) {
        this.onState("The websocket refused the access token.");
        return;
      }
      const sub = await this.send({ type: 20 });
      this.retry = 500;
      markReady();
      this.onState(sub.status === 1 ? "" : "Live progress is unavailable.");
      if (this.dropped && sub.status === 1) {
        this.dropped = false;
        this.onResumed();
      }
    });
    ws.addEventListener("message", (message) => {
      let packet;
      try {
        packet = JSON.parse(message.data);
      } catch {
        return;
      }
      if (packet.event) {
        this.onEvent(packet);
        return;
      }
      const waiter = this.pending.get(packet.id);
      if (waiter) {
        this.pending.delete(packet.id);
        waiter(packet);
      }
    });
    ws.addEventListener("close", () => {
      for (const waiter of this.pending.values()) waiter({ status: 0 });
      this.pending.clear();
      if (this.stopped || this.ws !== ws) return;
      this.dropped = true;
      this.onState("Live progress lost; reconnecting…");
      setTimeout(() => this.stopped || this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    });
  }

  send(packet) {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.ws.send(JSON.stringify({ ...packet, id }));
    });
  }

  /** A numbered request once the session is initialized (type 7 and the like). */
  async request(packet) {
    await this.ready;
    return this.send(packet);
  }
}
