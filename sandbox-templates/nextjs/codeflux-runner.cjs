// CodeFlux's command runner inside a Docker sandbox. One runs per connection, started once
// with `docker exec`; after that a command costs a message instead of an exec (create, start,
// inspect and a new process tree each time).
//
// Requests arrive on stdin, one JSON object per line:
//   {"id": 1, "command": "npm test", "timeout_ms": 300000, "grace_ms": 5000}
//   {"id": 2, "argv": ["realpath", "-m", "--", "app"], "timeout_ms": 60000, "grace_ms": 1000}
//   {"kill": 1}
// Answers go to stdout, one JSON object per line: output as it comes, then the end.
//   {"id": 1, "out": "<base64>"}   {"id": 1, "err": "<base64>"}
//   {"id": 1, "code": 0, "timed_out": false}
// Each command runs in its own process group, which is what a timeout or a kill signals
// (TERM, then KILL after the grace period), so its children go with it.
//
// CodeFlux starts the runner as root (with no capability but SETUID, SETGID and KILL) and
// every command runs as the workspace's owner: no command can then open the runner's
// output (its /proc entries are root's) and answer in the runner's place.
"use strict";
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const readline = require("node:readline");

const running = new Map();
const owner = process.getuid() === 0 ? fs.statSync("/home/user") : null;

function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function signalGroup(entry, signal) {
  try {
    process.kill(-entry.child.pid, signal);
  } catch {
    // Already gone.
  }
}

function stop(id) {
  const entry = running.get(id);
  if (!entry || entry.stopping) return;
  entry.stopping = true;
  signalGroup(entry, "SIGTERM");
  setTimeout(() => signalGroup(entry, "SIGKILL"), entry.graceMs).unref();
}

function start(request) {
  const { id } = request;
  const [file, args] = Array.isArray(request.argv)
    ? [request.argv[0], request.argv.slice(1)]
    : ["bash", ["-lc", String(request.command)]];
  let child;
  try {
    // As root the runner cannot enter the owner's 0700 workspace itself (no capability
    // overrides file modes); it was started there, and its commands start there too.
    child = spawn(file, args, {
      ...(owner ? { uid: owner.uid, gid: owner.gid } : { cwd: "/home/user" }),
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (error) {
    send({ id, err: Buffer.from(String(error.message) + "\n").toString("base64") });
    send({ id, code: 127, timed_out: false });
    return;
  }
  const entry = { child, graceMs: request.grace_ms ?? 5000, timedOut: false, stopping: false };
  running.set(id, entry);
  child.stdout.on("data", (chunk) => send({ id, out: chunk.toString("base64") }));
  child.stderr.on("data", (chunk) => send({ id, err: chunk.toString("base64") }));
  // Counted from the start: the streams may close before or after the process exits.
  let openStreams = 2;
  let exited = null;
  const streamClosed = () => {
    openStreams -= 1;
    if (openStreams === 0 && exited) end(exited.code, exited.signal);
  };
  child.stdout.once("close", streamClosed);
  child.stderr.once("close", streamClosed);
  const timer = setTimeout(() => {
    entry.timedOut = true;
    stop(id);
  }, request.timeout_ms ?? 300000);
  let ended = false;
  const end = (code, signal) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    running.delete(id);
    const number = signal ? os.constants.signals[signal] ?? 9 : 0;
    send({ id, code: code ?? 128 + number, timed_out: entry.timedOut });
  };
  child.on("error", (error) => {
    send({ id, err: Buffer.from(String(error.message) + "\n").toString("base64") });
    end(127, null);
  });
  // The answer waits for the output to be read, but not for long: a background child that
  // keeps the output open (`server &`) must not hold it.
  child.on("exit", (code, signal) => {
    exited = { code, signal };
    if (openStreams === 0) end(code, signal);
    else setTimeout(() => end(code, signal), 100).unref();
  });
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    return;
  }
  if (request.kill !== undefined) stop(request.kill);
  else start(request);
});
// CodeFlux went away: nothing it started keeps running.
lines.on("close", () => {
  for (const id of running.keys()) stop(id);
  const waitMs = Math.max(0, ...[...running.values()].map((entry) => entry.graceMs)) + 200;
  setTimeout(() => process.exit(0), waitMs).unref();
});
