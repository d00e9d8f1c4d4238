import { defineConfig } from "drizzle-kit";

// `npm run db:push` turns db/schema.ts into SQL migrations in db/migrations and applies them.
export default defineConfig({
  dialect: "postgresql",
  schema: "./db/schema.ts",
  out: "./db/migrations",
});
