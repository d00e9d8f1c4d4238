// The app's tables, with Drizzle ORM (Postgres). After changing this file run
// `npm run db:push`: it writes a migration to db/migrations and applies it.
//
// import { boolean, pgTable, serial, text, timestamp } from "drizzle-orm/pg-core";
//
// export const todos = pgTable("todos", {
//   id: serial("id").primaryKey(),
//   title: text("title").notNull(),
//   done: boolean("done").notNull().default(false),
//   createdAt: timestamp("created_at").notNull().defaultNow(),
// });
export {};
