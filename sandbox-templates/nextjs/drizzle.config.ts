import { defineConfig } from "drizzle-kit";

// `npm run db:push` turns db/schema.ts into SQL migrations in db/migrations and applies them.
export default defineConfig({
  dialect: "postgresql",
  schema: "./db/schema.ts",
  out: "./db/migrations",
  // With DATABASE_URL, drizzle-kit's commands that connect (studio, migrate) reach that server.
  ...(process.env.DATABASE_URL ? { dbCredentials: { url: process.env.DATABASE_URL } } : {}),
});
