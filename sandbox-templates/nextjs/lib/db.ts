import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

import { PGlite } from "@electric-sql/pglite";
import { drizzle as onPostgres } from "drizzle-orm/node-postgres";
import { drizzle, type PgliteDatabase } from "drizzle-orm/pglite";

import * as schema from "@/db/schema";

// The app's database: Postgres embedded in the server process (PGlite), its data in
// .data/pglite. Use it from server code only (server components, server actions, route
// handlers). One client per process: the dev server re-runs modules on every change, and
// two clients on one data folder would corrupt it, so the client lives on globalThis.
//
// With DATABASE_URL set (postgres://…), the same schema and queries run against that
// Postgres server instead, through node-postgres; `npm run db:push` migrates it.
const shared = globalThis as typeof globalThis & {
  __pglite?: PGlite;
  __postgres?: PgliteDatabase<typeof schema>;
};

function open(): PGlite {
  const folder = process.env.PGLITE_DATA_DIR ?? ".data/pglite";
  mkdirSync(dirname(folder), { recursive: true });
  return new PGlite(folder);
}

function connect(): PgliteDatabase<typeof schema> {
  const url = process.env.DATABASE_URL;
  if (url) {
    // Both are Drizzle's Postgres dialect: one type keeps the app's code the same. One
    // connection pool per process, for the same reason as the client above.
    return (shared.__postgres ??= onPostgres(url, { schema }) as unknown as PgliteDatabase<
      typeof schema
    >);
  }
  return drizzle({ client: (shared.__pglite ??= open()), schema });
}

export const db = connect();
