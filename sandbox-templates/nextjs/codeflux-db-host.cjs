// The app's database inside the CodeFlux sandbox. Loaded into every Node process of the
// sandbox (NODE_OPTIONS=--require); it does something only in the process that serves the
// app, the one that listens on $PORT:
//   - it owns the PGlite client that the app's lib/db.ts picks up from globalThis, so there
//     is exactly one client on the data folder (PGlite allows one process);
//   - it applies the migrations in db/migrations when it opens the database;
//   - it answers CodeFlux (through codeflux-db.cjs) on $CODEFLUX_DB_BRIDGE, loopback only:
//     tables, rows, one row's edit or deletion, logical snapshots and their restore, and
//     migrations with a data check.
// Any other process that asks for the database gets a client that refuses with a reason,
// instead of opening the folder a second time.
"use strict";
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const path = require("node:path");
const zlib = require("node:zlib");
const { createRequire } = require("node:module");

// The sandbox keeps the app in /home/user; a published or exported image names its own.
const APP = process.env.CODEFLUX_APP_DIR || "/home/user";
const PORT = Number(process.env.PORT || 3000);
const BRIDGE = process.env.CODEFLUX_DB_BRIDGE || "127.0.0.1:39017";
const DATA_DIR = path.join(APP, ".data/pglite");
// Made when the image was built (see the Dockerfile): copied, not created, for a new database.
const EMPTY_DATABASE = process.env.CODEFLUX_EMPTY_DATABASE || "/opt/codeflux/pglite-empty";
const KEPT_DIR = path.join(APP, ".data/kept");
const MIGRATIONS = path.join(APP, "db/migrations");
const JOURNAL = path.join(MIGRATIONS, "meta/_journal.json");
const SNAPSHOT_FORMAT = "codeflux-data/1";
const PAGE_SIZE_MAX = 500;
const HIDDEN_SCHEMAS = ["pg_catalog", "information_schema", "drizzle", "pg_toast"];

let hosting = false;
let database = null;

// Lets lib/db.ts find the one client: `globalThis.__pglite ??= new PGlite(...)`.
Object.defineProperty(globalThis, "__pglite", {
  configurable: true,
  get() {
    return hosting ? open().client : refusingClient;
  },
  set() {},
});

const refusingClient = new Proxy(
  {},
  {
    get(_target, property) {
      if (property === "then") return undefined;
      return () => {
        // CodeFlux's production build sets CODEFLUX_BUILDING: no database exists there.
        throw new Error(
          process.env.CODEFLUX_BUILDING
            ? 'The database cannot be read while the app is built for production (next build). A page that reads it must be rendered per request: add `export const dynamic = "force-dynamic";` to it.'
            : "The app's database is open in the running app (the dev server), and only one process may open it. Change data through the app's server code or a migration (npm run db:push), not from a separate script.",
        );
      };
    },
  },
);

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  this.once("listening", () => {
    const address = this.address();
    if (!hosting && address && typeof address === "object" && address.port === PORT) {
      becomeHost();
      countRequests(this);
    }
  });
  return listen.apply(this, args);
};

// The app's requests in progress, so that CodeFlux can wait until none runs (the browser
// check's clicks may have started writes that must land before the data is put back).
let appRequests = 0;
let lastRequestEnded = Date.now();
function countRequests(server) {
  server.on("request", (request, response) => {
    appRequests += 1;
    response.once("close", () => {
      appRequests -= 1;
      lastRequestEnded = Date.now();
    });
  });
}

// Resolves once no app request has run for `quietMs`, or after `timeoutMs`.
async function quiet(quietMs, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (appRequests === 0 && Date.now() - lastRequestEnded >= quietMs) return { quiet: true, in_flight: 0 };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { quiet: false, in_flight: appRequests };
}

function becomeHost() {
  hosting = true;
  startBridge();
  // An app with migrations gets its schema before its first request; one without tables
  // opens the database only when something asks for it (it costs hundreds of MB).
  if (fs.existsSync(JOURNAL)) open();
}

function appRequire(name) {
  return createRequire(path.join(APP, "package.json"))(name);
}

function open() {
  if (database) return database;
  const { PGlite } = appRequire("@electric-sql/pglite");
  fs.mkdirSync(path.dirname(DATA_DIR), { recursive: true });
  if (!fs.existsSync(path.join(DATA_DIR, "PG_VERSION")) && fs.existsSync(EMPTY_DATABASE)) {
    fs.rmSync(DATA_DIR, { recursive: true, force: true });
    fs.cpSync(EMPTY_DATABASE, DATA_DIR, { recursive: true });
  }
  const client = new PGlite(DATA_DIR);
  database = { client, migrationError: null };
  database.ready = migrate(client).catch((error) => {
    database.migrationError = error.message;
  });
  return database;
}

function quote(name) {
  return `"${String(name).replace(/"/g, '""')}"`;
}

function journal() {
  try {
    return JSON.parse(fs.readFileSync(JOURNAL, "utf8")).entries || [];
  } catch {
    return [];
  }
}

async function appliedUpTo(client) {
  const exists = await client.query(
    "SELECT to_regclass('drizzle.__drizzle_migrations') IS NOT NULL AS present",
  );
  if (!exists.rows[0].present) return 0;
  const last = await client.query(
    "SELECT coalesce(max(created_at), 0)::text AS at FROM drizzle.__drizzle_migrations",
  );
  return Number(last.rows[0].at);
}

async function pendingMigrations(client) {
  const upTo = await appliedUpTo(client);
  return journal().filter((entry) => entry.when > upTo);
}

async function migrate(client) {
  if (!fs.existsSync(JOURNAL)) return [];
  const pending = await pendingMigrations(client);
  if (pending.length === 0) return [];
  const { drizzle } = appRequire("drizzle-orm/pglite");
  const { migrate: runMigrations } = appRequire("drizzle-orm/pglite/migrator");
  await runMigrations(drizzle({ client }), { migrationsFolder: MIGRATIONS });
  return pending.map((entry) => entry.tag);
}

// Tables and columns that pending migrations drop, with the rows they hold.
async function dataLoss(client, pending) {
  const losses = [];
  const name = String.raw`(?:"[^"]+"\.)?"([^"]+)"`;
  for (const entry of pending) {
    let sql = "";
    try {
      sql = fs.readFileSync(path.join(MIGRATIONS, `${entry.tag}.sql`), "utf8");
    } catch {
      continue;
    }
    for (const match of sql.matchAll(new RegExp(String.raw`DROP TABLE (?:IF EXISTS )?${name}`, "gi"))) {
      const rows = await countRows(client, match[1], null);
      if (rows > 0) losses.push({ table: match[1], rows, what: `table ${match[1]}` });
    }
    const column = new RegExp(
      String.raw`ALTER TABLE (?:ONLY )?${name} DROP COLUMN (?:IF EXISTS )?"([^"]+)"`,
      "gi",
    );
    for (const match of sql.matchAll(column)) {
      const rows = await countRows(client, match[1], match[2]);
      if (rows > 0) losses.push({ table: match[1], rows, what: `column ${match[1]}.${match[2]}` });
    }
  }
  return losses;
}

async function countRows(client, table, column) {
  try {
    const where = column ? ` WHERE ${quote(column)} IS NOT NULL` : "";
    const result = await client.query(`SELECT count(*)::int AS n FROM ${quote(table)}${where}`);
    return result.rows[0].n;
  } catch {
    return 0; // Not there (yet): nothing to lose.
  }
}

async function tables(client) {
  const columns = await client.query(
    `SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable, c.is_generated
       FROM information_schema.columns c
       JOIN information_schema.tables t USING (table_schema, table_name)
      WHERE t.table_type = 'BASE TABLE' AND c.table_schema <> ALL($1)
      ORDER BY c.table_schema, c.table_name, c.ordinal_position`,
    [HIDDEN_SCHEMAS],
  );
  const byName = new Map();
  for (const row of columns.rows) {
    const key = row.table_schema === "public" ? row.table_name : `${row.table_schema}.${row.table_name}`;
    if (!byName.has(key)) byName.set(key, { name: key, schema: row.table_schema, table: row.table_name, columns: [] });
    byName.get(key).columns.push({
      name: row.column_name,
      type: row.data_type,
      nullable: row.is_nullable === "YES",
      generated: row.is_generated === "ALWAYS",
    });
  }
  const list = [...byName.values()];
  for (const table of list) {
    const result = await client.query(`SELECT count(*)::int AS n FROM ${quote(table.schema)}.${quote(table.table)}`);
    table.rows = result.rows[0].n;
    table.primary_key = await primaryKey(client, table);
  }
  return list;
}

async function findTable(client, name) {
  const table = (await tables(client)).find((candidate) => candidate.name === name);
  if (!table) throw Object.assign(new Error(`no table named ${name}`), { status: 404 });
  return table;
}

async function primaryKey(client, table) {
  const result = await client.query(
    `SELECT a.attname AS name FROM pg_index i
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisprimary`,
    [`${quote(table.schema)}.${quote(table.table)}`],
  );
  return result.rows.map((row) => row.name);
}

async function rows(client, name, page, size) {
  const table = await findTable(client, name);
  const key = table.primary_key;
  const order = key.length ? ` ORDER BY ${key.map(quote).join(", ")}` : "";
  const result = await client.query(
    `SELECT coalesce(json_agg(row_to_json(t)), '[]'::json) AS rows FROM
       (SELECT * FROM ${quote(table.schema)}.${quote(table.table)}${order} LIMIT $1 OFFSET $2) t`,
    [size, page * size],
  );
  return {
    table: table.name,
    columns: table.columns,
    total: table.rows,
    page,
    page_size: size,
    rows: result.rows[0].rows,
  };
}

function refused(status, message) {
  return Object.assign(new Error(message), { status });
}

// Changes one row, found by its whole primary key: sets columns (each value converted by
// Postgres from text, as a form sends it; null is NULL) or deletes it. Exactly one row
// changes, or nothing does.
async function editRow(client, edit) {
  const table = await findTable(client, edit.table);
  const key = table.primary_key;
  if (!key.length) throw refused(409, `${table.name} has no primary key, so its rows cannot be told apart: it is read-only`);
  const given = Object.keys(edit.key || {});
  if (given.length !== key.length || !key.every((name) => given.includes(name))) {
    throw refused(400, `a row of ${table.name} is found by ${key.join(", ")}`);
  }
  const params = [];
  const param = (value) => {
    params.push(value === null || value === undefined ? null : String(value));
    return `$${params.length}`;
  };
  let sql;
  if (edit.delete === true) {
    sql = `DELETE FROM ${quote(table.schema)}.${quote(table.table)}`;
  } else {
    const columns = Object.keys(edit.set || {});
    if (!columns.length) throw refused(400, "nothing to change: give `set` or `delete`");
    const assignments = columns.map((name) => {
      const column = table.columns.find((candidate) => candidate.name === name);
      if (!column) throw refused(400, `${table.name} has no column ${name}`);
      if (column.generated) throw refused(400, `${table.name}.${name} is generated; it cannot be set`);
      return `${quote(name)} = ${param(edit.set[name])}`;
    });
    sql = `UPDATE ${quote(table.schema)}.${quote(table.table)} SET ${assignments.join(", ")}`;
  }
  sql += ` WHERE ${key.map((name) => `${quote(name)} = ${param(edit.key[name])}`).join(" AND ")}`;
  try {
    await client.transaction(async (tx) => {
      const result = await tx.query(sql, params);
      if (result.affectedRows !== 1) throw refused(404, `no row of ${table.name} has that key`);
    });
  } catch (error) {
    throw error.status ? error : refused(400, error.message);
  }
  return { changed: 1 };
}

// A logical snapshot: every row as Postgres renders it in JSON, the sequences, and which
// migrations had run. Small, readable, and restorable into a database built from the code.
async function dump(client) {
  const list = await tables(client);
  const snapshot = { format: SNAPSHOT_FORMAT, taken_at: new Date().toISOString(), tables: [], sequences: [] };
  for (const table of list) {
    const result = await client.query(
      `SELECT coalesce(json_agg(row_to_json(t)), '[]'::json) AS rows FROM ${quote(table.schema)}.${quote(table.table)} t`,
    );
    snapshot.tables.push({
      name: table.name,
      schema: table.schema,
      table: table.table,
      columns: table.columns,
      rows: result.rows[0].rows,
    });
  }
  const sequences = await client.query(
    "SELECT schemaname, sequencename, last_value::text AS value FROM pg_sequences WHERE schemaname <> ALL($1)",
    [HIDDEN_SCHEMAS],
  );
  snapshot.sequences = sequences.rows.map((row) => ({
    schema: row.schemaname,
    name: row.sequencename,
    value: row.value === null ? null : row.value,
  }));
  snapshot.migrations = (await appliedUpTo(client)) || 0;
  return snapshot;
}

// Replaces all data with a snapshot's: the schema is rebuilt from the code's migrations,
// then the rows go back in (columns the code no longer has are left out).
async function restore(client, snapshot) {
  if (!snapshot || snapshot.format !== SNAPSHOT_FORMAT) throw new Error("not a CodeFlux data snapshot");
  const before = await tables(client);
  await client.transaction(async (tx) => {
    for (const schema of new Set(before.map((table) => table.schema))) {
      await tx.exec(`DROP SCHEMA ${quote(schema)} CASCADE`);
    }
    await tx.exec("DROP SCHEMA IF EXISTS drizzle CASCADE; CREATE SCHEMA IF NOT EXISTS public");
  });
  await migrate(client);
  const now = await tables(client);
  let restored = 0;
  await client.transaction(async (tx) => {
    // Rows go back in any order: foreign keys are checked by the code that wrote them.
    await tx.exec("SET LOCAL session_replication_role = replica");
    // Seed migrations ran again just now; the snapshot's rows replace theirs.
    const saved = now.filter((table) => (snapshot.tables || []).some((entry) => entry.name === table.name));
    if (saved.length) {
      await tx.exec(`TRUNCATE ${saved.map((table) => `${quote(table.schema)}.${quote(table.table)}`).join(", ")}`);
    }
    for (const saved of snapshot.tables || []) {
      const table = now.find((candidate) => candidate.name === saved.name);
      if (!table || !saved.rows || saved.rows.length === 0) continue;
      const present = new Set(Object.keys(saved.rows[0]));
      const columns = table.columns.filter((column) => !column.generated && present.has(column.name));
      if (columns.length === 0) continue;
      const list = columns.map((column) => quote(column.name)).join(", ");
      const target = `${quote(table.schema)}.${quote(table.table)}`;
      await tx.query(
        `INSERT INTO ${target} (${list}) OVERRIDING SYSTEM VALUE
           SELECT ${list} FROM json_populate_recordset(NULL::${target}, $1::json)`,
        [JSON.stringify(saved.rows)],
      );
      restored += saved.rows.length;
    }
    for (const sequence of snapshot.sequences || []) {
      if (sequence.value === null) continue;
      await tx.query("SELECT setval(to_regclass($1), $2::bigint, true) WHERE to_regclass($1) IS NOT NULL", [
        `${quote(sequence.schema)}.${quote(sequence.name)}`,
        sequence.value,
      ]);
    }
  });
  return { tables: (snapshot.tables || []).length, rows: restored };
}

async function migrateChecked(client, acceptDataLoss) {
  const pending = await pendingMigrations(client);
  if (pending.length === 0) return { status: 200, message: "The database is up to date." };
  const losses = await dataLoss(client, pending);
  if (losses.length && !acceptDataLoss) {
    const what = losses.map((loss) => `${loss.what} (${loss.rows} row${loss.rows === 1 ? "" : "s"})`).join(", ");
    return {
      status: 409,
      message: `Not applied: this change drops ${what}. If that is intended, run \`npm run db:push -- --accept-data-loss\`; the data from before is kept.`,
      data_loss: losses,
    };
  }
  if (losses.length) {
    fs.mkdirSync(KEPT_DIR, { recursive: true });
    const name = `${Date.now()}-before-${pending[0].tag}.json.gz`;
    fs.writeFileSync(path.join(KEPT_DIR, name), zlib.gzipSync(JSON.stringify(await dump(client))));
  }
  try {
    const applied = await migrate(client);
    database.migrationError = null;
    return { status: 200, message: `Applied ${applied.join(", ")}.`, applied, data_loss: losses };
  } catch (error) {
    database.migrationError = error.message;
    return { status: 422, message: `The migration failed: ${error.message}` };
  }
}

async function status() {
  if (!database) return { open: false, pending: journal().map((entry) => entry.tag) };
  await database.ready;
  const pending = await pendingMigrations(database.client);
  return {
    open: true,
    migration_error: database.migrationError,
    pending: pending.map((entry) => entry.tag),
  };
}

async function readBody(request) {
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  return body.length ? JSON.parse(body.toString("utf8")) : {};
}

async function answer(request) {
  const url = new URL(request.url, "http://bridge");
  const route = `${request.method} ${url.pathname}`;
  if (route === "GET /status") return { status: 200, body: await status() };
  if (route === "GET /quiet") {
    const quietMs = Math.min(5_000, Math.max(0, Number(url.searchParams.get("ms")) || 500));
    const timeoutMs = Math.min(60_000, Math.max(0, Number(url.searchParams.get("timeout")) || 30_000));
    return { status: 200, body: await quiet(quietMs, timeoutMs) };
  }
  // Looking never opens the database of an app that has no tables.
  if (route === "GET /tables" && !database && !fs.existsSync(JOURNAL)) return { status: 200, body: { tables: [] } };
  const { client, ready } = open();
  await ready;
  switch (route) {
    case "GET /tables":
      return { status: 200, body: { tables: await tables(client) } };
    case "GET /rows": {
      const page = Math.max(0, Number(url.searchParams.get("page")) || 0);
      const size = Math.min(PAGE_SIZE_MAX, Math.max(1, Number(url.searchParams.get("size")) || 50));
      return { status: 200, body: await rows(client, url.searchParams.get("table"), page, size) };
    }
    case "GET /dump":
      return { status: 200, body: await dump(client) };
    case "POST /edit":
      return { status: 200, body: await editRow(client, await readBody(request)) };
    case "POST /restore":
      return { status: 200, body: await restore(client, await readBody(request)) };
    case "POST /migrate": {
      const { status: code, ...body } = await migrateChecked(client, (await readBody(request)).accept_data_loss === true);
      return { status: code, body };
    }
    default:
      return { status: 404, body: { error: `no route ${route}` } };
  }
}

function startBridge() {
  const [host, port] = BRIDGE.split(":");
  const server = http.createServer((request, response) => {
    answer(request)
      .catch((error) => ({ status: error.status || 500, body: { error: error.message } }))
      .then(({ status: code, body }) => {
        response.writeHead(code, { "content-type": "application/json" });
        response.end(JSON.stringify(body));
      });
  });
  // Another process of this sandbox already answers (a second dev server): it holds the data.
  server.on("error", () => {});
  listen.call(server, Number(port), host);
}
