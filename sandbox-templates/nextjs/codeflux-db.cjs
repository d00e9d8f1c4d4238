// CodeFlux's way into the app's database, run in the sandbox as a command:
//   node codeflux-db.cjs status | tables | rows <table> [page] | dump <file> | restore <file>
//                        | edit <file>   (one row's change, as JSON: {table, key, set | delete})
// It asks the process that holds the database (codeflux-db-host.cjs, inside the dev server)
// and prints one JSON object. Snapshots travel as gzipped JSON files in the workspace, so
// their size is not bound by a command's output. Exit codes: 0 done, 1 refused or failed,
// 3 nothing holds the database (the dev server is not up).
"use strict";
const fs = require("node:fs");
const zlib = require("node:zlib");

const BRIDGE = process.env.CODEFLUX_DB_BRIDGE || "127.0.0.1:39017";

async function ask(method, route, body) {
  let response;
  try {
    response = await fetch(`http://${BRIDGE}${route}`, {
      method,
      headers: body ? { "content-type": "application/json" } : {},
      body,
      signal: AbortSignal.timeout(120_000),
    });
  } catch (error) {
    return { code: 3, body: { error: `the app's database is not open (${error.cause?.code || error.message})` } };
  }
  const text = await response.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { error: text.slice(0, 500) };
  }
  return { code: response.ok ? 0 : 1, body: parsed };
}

async function main([command, ...args]) {
  switch (command) {
    case "status":
      return ask("GET", "/status");
    case "tables":
      return ask("GET", "/tables");
    case "rows": {
      const query = new URLSearchParams({ table: args[0] || "", page: args[1] || "0", size: args[2] || "50" });
      return ask("GET", `/rows?${query}`);
    }
    case "dump": {
      const answer = await ask("GET", "/dump");
      if (answer.code !== 0) return answer;
      const bytes = zlib.gzipSync(JSON.stringify(answer.body));
      fs.writeFileSync(args[0], bytes);
      const rows = answer.body.tables.reduce((sum, table) => sum + table.rows.length, 0);
      return { code: 0, body: { tables: answer.body.tables.length, rows, bytes: bytes.length } };
    }
    case "edit":
      return ask("POST", "/edit", fs.readFileSync(args[0], "utf8"));
    case "restore": {
      const body = zlib.gunzipSync(fs.readFileSync(args[0])).toString("utf8");
      return ask("POST", "/restore", body);
    }
    default:
      return { code: 1, body: { error: `unknown command ${command}` } };
  }
}

main(process.argv.slice(2))
  .catch((error) => ({ code: 1, body: { error: error.message } }))
  .then(({ code, body }) => {
    process.stdout.write(`${JSON.stringify(body)}\n`);
    process.exit(code);
  });
