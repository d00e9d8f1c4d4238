// CodeFlux's browser check: opens each page of the app in the sandbox's headless Chromium,
// watches what only a browser sees (exceptions, console errors, failed requests to the app,
// hydration errors, Next.js's error overlay, a page with nothing visible), clicks each button
// and link of the first screen once, and prints one JSON report on the last line of stdout.
//
// It runs inside the sandbox, as the sandbox's user: the browser executes the app's untrusted
// code with no more rights than the dev server has. The container is the boundary, so
// Chromium's own sandbox (which needs user namespaces the container does not grant) is off.
//
// Usage: node check.cjs '{"base":"http://127.0.0.1:3000","routes":["/"],"shots":"/tmp/x","clicks":20}'
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const puppeteer = require("puppeteer-core");
const { SourceMapConsumer } = require("source-map-js");

const BROWSERS = ["/usr/bin/chromium-headless-shell", "/usr/bin/chromium", "/usr/bin/chromium-browser"];
const PAGE_TIMEOUT_MS = 120_000;
const SETTLE_MS = 400;
const MAX_PROBLEMS_PER_PAGE = 12;
const WRITE_TIMEOUT_MS = 90_000;

function browserPath() {
  const chosen = process.env.CODEFLUX_CHROMIUM || BROWSERS.find((file) => fs.existsSync(file));
  if (!chosen) {
    report({ available: false, reason: "no Chromium in the sandbox (looked for " + BROWSERS.join(", ") + ")" });
    process.exit(0);
  }
  return chosen;
}

function report(value) {
  process.stdout.write("\n" + JSON.stringify(value) + "\n");
}

const FRAME = /^at (?:(.*?) \()?(https?:\/\/[^\s()]+):(\d+):(\d+)\)?$/;
const sourceMaps = new Map();
// The check runs in the app's folder; sources are named relative to it.
const APP_DIR = process.cwd().replace(/^\/+/, "").replace(/\/?$/, "/");

// The chunk's source map, fetched once from the dev server (Turbopack serves one per chunk).
async function sourceMapOf(url) {
  if (!sourceMaps.has(url)) {
    sourceMaps.set(
      url,
      fetch(url + ".map", { signal: AbortSignal.timeout(10_000) })
        .then((response) => (response.ok ? response.json() : null))
        .then((map) => (map ? new SourceMapConsumer(map) : null))
        .catch(() => null),
    );
  }
  return sourceMaps.get(url);
}

// `turbopack:///[project]/app/page.tsx` or `webpack://_N_E/./app/page.tsx` → `app/page.tsx`.
function appRelative(source) {
  return source
    .replace(/^[a-z]+:\/\/\/?/, "")
    .replace(/^\[project\]\//, "")
    .replace(/^_N_E\//, "")
    .replace(/^\.\//, "")
    .replace(/^\/+/, "")
    .replace(APP_DIR, "");
}

// The first frame of a stack that is the app's own code, mapped to its source file
// ("at onClick (app/page.tsx:12:9)"), rather than React's or Next.js's.
async function firstAppFrame(stack) {
  if (!stack) return null;
  const frames = stack.split("\n").map((line) => line.trim()).filter((line) => line.startsWith("at ")).slice(0, 10);
  for (const frame of frames) {
    const parts = FRAME.exec(frame);
    if (!parts) continue;
    const [, name, url, line, column] = parts;
    const map = await sourceMapOf(url);
    const original = map ? map.originalPositionFor({ line: Number(line), column: Number(column) - 1 }) : null;
    if (original && original.source) {
      const file = appRelative(original.source);
      if (/node_modules|^\[turbopack\]|next\/dist/.test(file)) continue;
      return `at ${name || original.name || "<anonymous>"} (${file}:${original.line}:${original.column + 1})`;
    }
    if (!/node_modules|next[_/-]dist|react-dom|\[turbopack\]/.test(frame)) return frame;
  }
  return null;
}

function sameOrigin(url, base) {
  try {
    return new URL(url).origin === new URL(base).origin;
  } catch {
    return false;
  }
}

// Requests the browser makes on its own, not the app.
function ignoredRequest(url) {
  const { pathname } = new URL(url);
  return pathname === "/favicon.ico" || pathname.startsWith("/_next/webpack-hmr") || pathname.startsWith("/__nextjs");
}

function isHydration(message) {
  return /hydrat|did not match|didn't match/i.test(message);
}

async function settle(page) {
  await page.waitForNetworkIdle({ idleTime: SETTLE_MS, timeout: 10_000 }).catch(() => {});
  await new Promise((done) => setTimeout(done, SETTLE_MS));
}

// What the page itself shows: visible text, and visible images, drawings or fields. A shared
// layout's navigation is not the page, so its <main> is looked at when it has one.
async function visibleContent(page) {
  return page.evaluate(() => {
    const body = document.querySelector("main") || document.body;
    if (!body) return { text: 0, media: 0 };
    const shown = (element) => {
      const box = element.getBoundingClientRect();
      const style = getComputedStyle(element);
      return box.width > 1 && box.height > 1 && style.visibility !== "hidden" && style.display !== "none" && Number(style.opacity) > 0;
    };
    const media = [...body.querySelectorAll("img, svg, canvas, video, input, textarea, select")].filter(shown).length;
    return { text: body.innerText.trim().length, media };
  });
}

// Next.js's dev error overlay, which lives in a shadow root.
async function overlayError(page) {
  return page.evaluate(() => {
    const portal = document.querySelector("nextjs-portal");
    const root = portal && portal.shadowRoot;
    if (!root) return null;
    const dialog = root.querySelector("[data-nextjs-dialog], [data-nextjs-dialog-overlay]");
    if (dialog) return (dialog.innerText || "").trim().split("\n").slice(0, 6).join(" ").slice(0, 400) || "an error overlay";
    const badge = root.querySelector("[data-issues-count], [data-nextjs-toast-errors-parent]");
    if (badge) {
      const count = Number.parseInt((badge.innerText || "").trim(), 10);
      if (count > 0) return `${count} issue${count === 1 ? "" : "s"} in Next.js's error overlay`;
    }
    return null;
  });
}

// The buttons and links in the first screen, described so a person (and the model) can find them.
async function firstScreenTargets(page, base) {
  return page.evaluate((origin) => {
    const targets = [];
    const candidates = document.querySelectorAll("a[href], button, [role=button], input[type=submit], input[type=button]");
    candidates.forEach((element, index) => {
      const box = element.getBoundingClientRect();
      const style = getComputedStyle(element);
      if (box.width < 1 || box.height < 1 || style.visibility === "hidden" || style.display === "none") return;
      if (box.bottom < 0 || box.top > window.innerHeight || box.right < 0 || box.left > window.innerWidth) return;
      if (element.disabled || element.closest("nextjs-portal")) return;
      if (element.tagName === "A") {
        const href = element.getAttribute("href") || "";
        if (element.target === "_blank" || /^(mailto|tel|javascript):/i.test(href)) return;
        try {
          if (new URL(element.href).origin !== origin) return;
        } catch {
          return;
        }
      }
      const label = (element.innerText || element.getAttribute("aria-label") || element.getAttribute("title") || element.value || "").trim().replace(/\s+/g, " ").slice(0, 40);
      const kind = element.tagName === "A" ? `link to ${element.getAttribute("href")}` : element.tagName.toLowerCase();
      // Marked, so a click finds this element even after earlier clicks changed the page.
      element.setAttribute("data-codeflux-check", String(index));
      targets.push({ index, description: label ? `${kind} "${label}"` : kind });
    });
    return targets;
  }, new URL(base).origin);
}

async function checkPage(browser, options, route, number) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  const url = new URL(route, options.base).href;
  const problems = [];
  let during = null;
  const add = (kind, message, stack) => {
    if (problems.length >= MAX_PROBLEMS_PER_PAGE) return;
    const text = String(message).slice(0, 600);
    // An error seen once is reported once: reloading the page after a click repeats it.
    if (problems.some((seen) => seen.kind === kind && seen.message === text)) return;
    problems.push({ kind, message: text, element: during, frame: null, stack: stack || null });
  };
  page.on("pageerror", (error) => {
    const message = error && error.message ? error.message : String(error);
    add(isHydration(message) ? "hydration" : "exception", message, error && error.stack);
  });
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    // Failed loads are reported from the response itself, with the URL and status.
    if (text.startsWith("Failed to load resource")) return;
    const kind = isHydration(text) ? "hydration" : "console";
    const location = message.location();
    const at = location && location.url ? `at ${location.url}:${(location.lineNumber ?? 0) + 1}:${(location.columnNumber ?? 0) + 1}` : null;
    add(kind, text, at);
  });
  page.on("response", (response) => {
    const target = response.url();
    if (response.status() >= 400 && sameOrigin(target, options.base) && !ignoredRequest(target)) {
      add("request", `${response.request().method()} ${new URL(target).pathname} answered HTTP ${response.status()}`);
    }
  });
  page.on("requestfailed", (request) => {
    const target = request.url();
    const failure = request.failure();
    // Aborted is the browser cancelling (a prefetch, a navigation away), not the app failing.
    if (failure && failure.errorText === "net::ERR_ABORTED") return;
    if (sameOrigin(target, options.base) && !ignoredRequest(target)) {
      add("request", `${request.method()} ${new URL(target).pathname} failed: ${failure ? failure.errorText : "no answer"}`);
    }
  });
  page.on("dialog", (dialog) => dialog.dismiss().catch(() => {}));
  // Requests that change something (a server action, a form post, a DELETE) are waited for
  // after each click, however slow: CodeFlux puts the app's data back after the check, and a
  // write still running then would land after it.
  const writes = new Set();
  page.on("request", (request) => {
    if (request.method() !== "GET" && request.method() !== "HEAD" && request.method() !== "OPTIONS") writes.add(request);
  });
  const done = (request) => writes.delete(request);
  page.on("requestfinished", done);
  page.on("requestfailed", done);
  const writesFinished = async () => {
    const deadline = Date.now() + WRITE_TIMEOUT_MS;
    while (writes.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  const started = Date.now();
  let clicks = 0;
  let screenshot = null;
  try {
    await page.goto(url, { waitUntil: "load", timeout: PAGE_TIMEOUT_MS });
    await settle(page);
    const content = await visibleContent(page);
    if (content.text === 0 && content.media === 0) {
      add("blank", "the page shows nothing: no visible text or images after it loaded");
    }
    const overlay = await overlayError(page);
    // The overlay repeats what was caught above; on its own it is an error we missed.
    if (overlay && problems.length === 0) add("overlay", overlay);
    screenshot = path.join(options.shots, `page-${number}.jpg`);
    await page.screenshot({ path: screenshot, type: "jpeg", quality: 80 });

    const targets = await firstScreenTargets(page, options.base);
    for (const target of targets.slice(0, options.clicks)) {
      during = target.description;
      const handle = await page.$(`[data-codeflux-check="${target.index}"]`);
      if (!handle) continue;
      const before = page.url();
      try {
        await handle.click({ delay: 10 });
        clicks += 1;
      } catch {
        // Covered or moved by an earlier click: not the app's fault.
        continue;
      }
      await writesFinished();
      await settle(page);
      const overlayAfter = await overlayError(page).catch(() => null);
      if (overlayAfter && problems.length === 0) add("overlay", overlayAfter);
      if (page.url() !== before) {
        // Navigation: the page it reached must show something too, then back to the page.
        const reached = await visibleContent(page).catch(() => ({ text: 1, media: 0 }));
        if (reached.text === 0 && reached.media === 0) {
          add("blank", `${new URL(page.url()).pathname} shows nothing after the click`);
        }
        await page.goto(url, { waitUntil: "load", timeout: PAGE_TIMEOUT_MS });
        await settle(page);
        await firstScreenTargets(page, options.base);
      }
    }
  } catch (error) {
    add("load", `the page did not load in the browser: ${error.message}`);
  } finally {
    during = null;
    await writesFinished();
    await page.close().catch(() => {});
  }
  for (const problem of problems) {
    problem.frame = await firstAppFrame(problem.stack).catch(() => null);
    delete problem.stack;
  }
  return { route, screenshot, clicks, ms: Date.now() - started, problems };
}

async function main() {
  const options = JSON.parse(process.argv[2] || "{}");
  options.clicks = options.clicks ?? 20;
  fs.mkdirSync(options.shots, { recursive: true });
  const executablePath = browserPath();
  const browser = await puppeteer.launch({
    executablePath,
    headless: "shell",
    userDataDir: fs.mkdtempSync("/tmp/codeflux-chromium-"),
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-default-apps",
      "--disable-extensions",
      "--no-first-run",
      "--mute-audio",
    ],
  });
  try {
    const pages = [];
    for (const [number, route] of options.routes.entries()) {
      pages.push(await checkPage(browser, options, route, number));
    }
    const version = await browser.version();
    await browser.close().catch(() => {});
    // A click's write may still run in the app after the browser is gone; CodeFlux puts the
    // data back next, so wait until the app has answered every request (codeflux-db-host.cjs).
    const bridge = process.env.CODEFLUX_DB_BRIDGE || "127.0.0.1:39017";
    await fetch(`http://${bridge}/quiet?ms=750&timeout=30000`, { signal: AbortSignal.timeout(40_000) }).catch(() => {});
    report({ available: true, browser: version, pages });
  } finally {
    await browser.close().catch(() => {});
  }
}

main().catch((error) => {
  report({ available: false, reason: `the browser did not start: ${error.message}` });
  process.exit(0);
});
