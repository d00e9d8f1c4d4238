import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";

import * as schema from "@/db/schema";

// The app's database: Postgres embedded in the server process (PGlite), its data in
// .data/pglite. Use it from server code only (server components, server actions, route
// handlers). One client per process: the dev server re-runs modules on every change, and
// two clients on one data folder would corrupt it, so the client lives on globalThis.
const shared = globalThis as typeof globalThis & { __pglite?: PGlite };

function open(): PGlite {
  const folder = process.env.PGLITE_DATA_DIR ?? ".data/pglite";
  mkdirSync(dirname(folder), { recursive: true });
  return new PGlite(folder);
}

export const client = (shared.__pglite ??= open());

export const db = drizzle({ client, schema });
