// Keeps the Next.js dev server running for the sandbox's whole life. A dev server that exits
// (a crash, `pkill -f next`, an install that replaced Next.js under it) is restarted with
// back-off instead of taking the container with it; the model then sees the failure in its
// tools' answers and in the app check, and the sandbox lives on.
//
// Files, all readable by the workspace's owner:
//   /tmp/codeflux-dev.log          the dev server's output, with a line for every exit
//   /tmp/codeflux-dev-server.json  {"state", "pid", "restarts", "started_at", "last_exit"}
//   /tmp/codeflux-dev-server.pid   this supervisor's pid: `kill -HUP` restarts the dev server now
"use strict";
const { spawn } = require("node:child_process");
const fs = require("node:fs");

const LOG = "/tmp/codeflux-dev.log";
const STATUS = "/tmp/codeflux-dev-server.json";
const APP = "/home/user";
// Back-off between restarts doubles up to this; a server that ran this long starts over at 1 s.
const MAX_BACKOFF_MS = 30_000;
const HEALTHY_AFTER_MS = 60_000;

const log = fs.createWriteStream(LOG, { flags: "a" });
let child = null;
let restarts = 0;
let backoffMs = 1_000;
let startedAt = 0;
let lastExit = null;
let timer = null;
let stopping = false;
let restartNow = false;

function note(line) {
  const text = `codeflux: ${line}\n`;
  log.write(text);
  process.stdout.write(text);
}

function writeStatus(state) {
  const status = {
    state,
    pid: child ? child.pid : null,
    restarts,
    started_at: startedAt ? new Date(startedAt).toISOString() : null,
    last_exit: lastExit,
  };
  try {
    fs.writeFileSync(`${STATUS}.tmp`, JSON.stringify(status));
    fs.renameSync(`${STATUS}.tmp`, STATUS);
  } catch (error) {
    process.stderr.write(`codeflux: cannot write ${STATUS}: ${error.message}\n`);
  }
}

// The app's own Next.js decides the bundler flag, read at every start since an install may
// have replaced it: 15 needs --turbopack (webpack's PostCSS loader cannot load Tailwind 4
// on Node 20), 13 and 14 do not know it, 16 bundles with Turbopack by default.
function devArguments() {
  const args = ["--no-install", "next", "dev"];
  try {
    const manifest = JSON.parse(fs.readFileSync(`${APP}/node_modules/next/package.json`, "utf8"));
    if (Number(String(manifest.version).split(".")[0]) === 15) args.push("--turbopack");
  } catch {
    // No Next.js installed (yet): the dev server fails and says so in its log.
  }
  return [...args, "-H", "0.0.0.0", "-p", "3000"];
}

function start() {
  timer = null;
  startedAt = Date.now();
  const args = devArguments();
  note(`starting: npx ${args.join(" ")}`);
  child = spawn("npx", args, {
    cwd: APP,
    // Its own process group, so a restart stops everything it started.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  for (const stream of [child.stdout, child.stderr]) {
    stream.on("data", (data) => {
      log.write(data);
      process.stdout.write(data);
    });
  }
  child.on("error", (error) => note(`the dev server could not start: ${error.message}`));
  child.on("exit", exited);
  writeStatus("running");
}

function signalGroup(target, signal) {
  if (!target) return;
  try {
    process.kill(-target.pid, signal);
  } catch {
    // Already gone.
  }
}

// TERM now, KILL after a grace period if this same process is still there.
function terminate(target) {
  signalGroup(target, "SIGTERM");
  setTimeout(() => {
    if (child === target) signalGroup(target, "SIGKILL");
  }, 5_000).unref();
}

function exited(code, signal) {
  const ranMs = Date.now() - startedAt;
  // Whatever it left behind (workers holding port 3000) goes with it.
  signalGroup(child, "SIGKILL");
  child = null;
  lastExit = { code, signal, at: new Date().toISOString(), ran_ms: ranMs };
  if (stopping) {
    writeStatus("stopped");
    process.exit(0);
  }
  restarts += 1;
  if (ranMs >= HEALTHY_AFTER_MS || restartNow) backoffMs = 1_000;
  const waitMs = restartNow ? 0 : backoffMs;
  restartNow = false;
  const how = signal ? `signal ${signal}` : `exit code ${code}`;
  note(`the dev server exited (${how}) after ${Math.round(ranMs / 1000)} s; restarting in ${waitMs / 1000} s (restart ${restarts})`);
  writeStatus("restarting");
  backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
  timer = setTimeout(start, waitMs);
}

function stop() {
  stopping = true;
  if (timer) clearTimeout(timer);
  if (!child) {
    writeStatus("stopped");
    process.exit(0);
  }
  terminate(child);
}

process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.on("SIGHUP", () => {
  note("restart requested");
  if (child) {
    restartNow = true;
    terminate(child);
  } else if (timer) {
    clearTimeout(timer);
    start();
  }
});

fs.writeFileSync("/tmp/codeflux-dev-server.pid", `${process.pid}\n`);
start();
