// Formatting helpers and the readable text of the API's error keys.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** "1.5 MiB" for 1572864; "—" for null. */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** A local date and time for an RFC 3339 string or unix seconds. */
export function formatTime(value) {
  if (value === null || value === undefined || value === "") return "—";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** "1 min 5 s" for 65; "—" for null. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const MESSAGES = {
  INVALID_URL: "That is not an http or https URL with a host.",
  DOMAIN_BLOCKED: "The server is not allowed to download from that address.",
  INVALID_TIMEOUT: "The timeout is not a whole number of seconds.",
  INVALID_SHA256: "The SHA-256 must be 64 hexadecimal characters.",
  PATH_NOT_ALLOWED: "This folder cannot receive downloads.",
  DOWNLOAD_FORBIDDEN: "Remote downloads are turned off on this server.",
  DOWNLOAD_TIMEOUT: "The download took too long, or the remote server stopped sending.",
  REMOTE_FILE_NOT_FOUND: "The remote server says there is no such file.",
  NETWORK_ERROR: "The connection to the remote server failed or was cut.",
  CHECKSUM_MISMATCH: "The file did not match the SHA-256 given, so it was discarded.",
  FILE_TOO_LARGE: "The file is larger than this server accepts.",
  STORAGE_ERROR: "The server could not write the file to its disk.",
  STATE_UNAVAILABLE: "The server cannot record downloads right now (is its disk full?).",
  DOWNLOAD_NOT_FOUND: "That download is not running any more.",
  AccessTokenInvalid: "The access token was refused.",
};

/** The readable message of an error key (the key itself when unknown). */
export function describeError(key) {
  if (!key) return "";
  return MESSAGES[key] ?? key;
}
