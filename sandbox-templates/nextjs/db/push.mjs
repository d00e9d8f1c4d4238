// `npm run db:push`: writes a migration for what changed in db/schema.ts (drizzle-kit
// generate, into db/migrations) and applies every migration not applied yet.
// A change that would drop a table or column holding rows is refused unless you pass
// `-- --accept-data-loss`. `--apply-only` (run before `npm run dev`) skips the first step;
// a new database then also gets the rows in db/data.sql, if the app came with them.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

const MIGRATIONS = "./db/migrations";
const DATA = "./db/data.sql";
const acceptDataLoss = process.argv.includes("--accept-data-loss");
const applyOnly = process.argv.includes("--apply-only");
// Everything terminals draw: colours, cursor moves, the prompt's redraws.
const TERMINAL_CODES = /\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r/g;

function generate() {
  const interactive = process.stdin.isTTY && process.stdout.isTTY;
  // At a terminal drizzle-kit asks itself whether a column was renamed. Without one it
  // fails on that question while exiting 0, so it runs under a pseudo-terminal where every
  // question is answered with Enter ("create column": a rename becomes a drop and an add,
  // which the data check then reports before anything is lost).
  const usePty = !interactive && process.platform === "linux" && existsSync("/usr/bin/script");
  const [command, args] = usePty
    ? ["script", ["-qec", "npx --no-install drizzle-kit generate", "/dev/null"]]
    : ["npx", ["--no-install", "drizzle-kit", "generate"]];
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: interactive ? "inherit" : ["pipe", "pipe", "pipe"],
    });
    if (interactive) {
      child.on("exit", (code) => resolve(code === 0));
      return;
    }
    let output = "";
    child.stdout.on("data", (data) => (output += data));
    child.stderr.on("data", (data) => (output += data));
    const answer = usePty ? setInterval(() => child.stdin.write("\r"), 400) : null;
    child.on("exit", (code) => {
      clearInterval(answer);
      const text = output.replace(TERMINAL_CODES, "").trim();
      if (text) console.log(text);
      resolve(code === 0 && /Your SQL migration file|No schema changes/.test(text));
    });
  });
}

function journal() {
  try {
    return JSON.parse(readFileSync(`${MIGRATIONS}/meta/_journal.json`, "utf8"));
  } catch {
    return { entries: [] };
  }
}

// A refused migration is taken back, so db/migrations keeps matching the database: fix
// db/schema.ts, or run again with --accept-data-loss, and it is generated anew.
function takeBack(knownBefore) {
  const current = journal();
  for (const entry of current.entries.slice(knownBefore)) {
    rmSync(`${MIGRATIONS}/${entry.tag}.sql`, { force: true });
    rmSync(`${MIGRATIONS}/meta/${String(entry.idx).padStart(4, "0")}_snapshot.json`, { force: true });
  }
  current.entries = current.entries.slice(0, knownBefore);
  writeFileSync(`${MIGRATIONS}/meta/_journal.json`, `${JSON.stringify(current, null, 2)}\n`);
}

async function applyThroughApp(bridge) {
  // In CodeFlux the running app holds the database; it applies the migrations itself.
  // A sandbox's dev server may still be starting: it opens the database as it starts.
  let response;
  for (let waited = 0; !response; waited += 1) {
    try {
      response = await fetch(`http://${bridge}/migrate`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ accept_data_loss: acceptDataLoss }),
      });
    } catch {
      if (waited === 0) console.log("Waiting for the dev server to open the database…");
      if (waited >= 90) {
        console.error(
          "The app's database is not open because the dev server is not running; it applies the migrations when it starts.",
        );
        return false;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  const answer = await response.json().catch(() => ({ message: `status ${response.status}` }));
  (response.ok ? console.log : console.error)(answer.message);
  if (response.status === 409) takeBack(knownBefore);
  return response.ok;
}

// Applies the migrations (`apply`); when the database was new (no migration recorded
// before, asked through `query`), also runs db/data.sql through `exec`.
async function applyWith(apply, query, exec) {
  try {
    const known = await query("SELECT to_regclass('drizzle.__drizzle_migrations') AS t");
    await apply();
    if (known.rows[0].t === null && existsSync(DATA)) {
      await exec(readFileSync(DATA, "utf8"));
      console.log(`The new database got the rows in ${DATA}.`);
    }
    console.log("The database is up to date.");
    return true;
  } catch (error) {
    console.error(`The migration failed: ${error.message}`);
    return false;
  }
}

async function applyHere() {
  // Outside CodeFlux nothing else may have the data folder open: stop `npm run dev` first.
  const { PGlite } = await import("@electric-sql/pglite");
  const { drizzle } = await import("drizzle-orm/pglite");
  const { migrate } = await import("drizzle-orm/pglite/migrator");
  const folder = process.env.PGLITE_DATA_DIR ?? ".data/pglite";
  mkdirSync(dirname(folder), { recursive: true });
  const client = new PGlite(folder);
  try {
    return await applyWith(
      () => migrate(drizzle({ client }), { migrationsFolder: MIGRATIONS }),
      (sql) => client.query(sql),
      (sql) => client.exec(sql),
    );
  } finally {
    await client.close();
  }
}

async function applyToServer(url) {
  // DATABASE_URL: the same migrations on a Postgres server, through node-postgres.
  const { default: pg } = await import("pg");
  const { drizzle } = await import("drizzle-orm/node-postgres");
  const { migrate } = await import("drizzle-orm/node-postgres/migrator");
  const pool = new pg.Pool({ connectionString: url });
  try {
    return await applyWith(
      () => migrate(drizzle({ client: pool }), { migrationsFolder: MIGRATIONS }),
      (sql) => pool.query(sql),
      (sql) => pool.query(sql),
    );
  } finally {
    await pool.end();
  }
}

const knownBefore = journal().entries.length;
if (!applyOnly && !(await generate())) {
  console.error("drizzle-kit could not turn db/schema.ts into a migration (see above).");
  process.exit(1);
}
if (!existsSync(`${MIGRATIONS}/meta/_journal.json`)) {
  if (!applyOnly) console.log("db/schema.ts has no tables yet; nothing to apply.");
  process.exit(0);
}
const bridge = process.env.CODEFLUX_DB_BRIDGE;
const server = process.env.DATABASE_URL;
const applied = bridge
  ? applyThroughApp(bridge)
  : server
    ? applyToServer(server)
    : applyHere();
process.exit((await applied) ? 0 : 1);
