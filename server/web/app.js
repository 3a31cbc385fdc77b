// The page: sign in with the access token, then the file browser and remote downloads.
// Only the public APIs the README documents are used (see api.js).

import { ApiError, Socket, getToken, listFolder, setToken } from "./api.js";
import { Browser } from "./browse.js";
import { describeError } from "./format.js";
import { Puller } from "./pull.js";

const $ = (id) => document.getElementById(id);

function say(text) {
  $("message").textContent = text;
}

const socket = new Socket(
  (event) => puller.handle(event),
  (state) => {
    if (state) say(state);
  },
  // events sent while the socket was down are lost: reload the jobs and the history
  () => puller.refresh().catch((error) => say(describeError(error.key ?? String(error)))),
);
const browser = new Browser({ socket, say });
const puller = new Puller({
  folder: () => browser.currentPath,
  say,
  onFinished: (record) => {
    if (record.directory === browser.currentPath) browser.open(browser.currentPath);
  },
});

/** The folder path in the location's fragment ("#/a/b" -> "a/b"). */
function hashPath() {
  const raw = location.hash.replace(/^#\/?/, "");
  return raw
    .split("/")
    .filter(Boolean)
    .map((part) => decodeURIComponent(part))
    .join("/");
}

async function signIn(token) {
  setToken(token);
  try {
    await listFolder("root");
  } catch (error) {
    setToken("");
    say(error instanceof ApiError && error.status === 401
      ? "The access token was refused."
      : describeError(error.key ?? String(error)));
    return;
  }
  say("");
  $("token").value = "";
  $("logout").hidden = false;
  $("app").hidden = false;
  socket.start();
  await browser.open(hashPath());
  await puller.refresh().catch((error) => say(describeError(error.key ?? String(error))));
}

function signOut() {
  setToken("");
  socket.stop();
  $("app").hidden = true;
  $("logout").hidden = true;
  say("Signed out.");
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("token").value.trim());
});
$("logout").addEventListener("click", signOut);
window.addEventListener("hashchange", () => {
  if (getToken()) browser.open(hashPath());
});

if (getToken()) signIn(getToken());
