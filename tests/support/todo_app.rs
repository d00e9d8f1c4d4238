//! The todo app a scripted model builds on the embedded database, and how tests use it
//! through CodeFlux: its preview (as the app's own client code would) and the data API.

use std::time::Duration;

use serde_json::{Value, json};

use super::docker_env::wait_for_text;
use super::fake_llm::Reply;
use super::harness::Harness;

pub const SCHEMA: &str = r#"import { boolean, pgTable, serial, text } from "drizzle-orm/pg-core";

export const todos = pgTable("todos", {
  id: serial("id").primaryKey(),
  title: text("title").notNull(),
  done: boolean("done").notNull().default(false),
});
"#;

pub const ACTIONS: &str = r#""use server";

import { revalidatePath } from "next/cache";

import { todos } from "@/db/schema";
import { db } from "@/lib/db";

export async function addTodo(formData: FormData) {
  const title = String(formData.get("title") ?? "").trim();
  if (title) await db.insert(todos).values({ title });
  revalidatePath("/");
}
"#;

pub const ROUTE: &str = r#"import { todos } from "@/db/schema";
import { db } from "@/lib/db";

export const dynamic = "force-dynamic";

export async function GET() {
  return Response.json(await db.select().from(todos));
}

export async function POST(request: Request) {
  const { title } = await request.json();
  const [row] = await db.insert(todos).values({ title }).returning();
  return Response.json(row, { status: 201 });
}
"#;

pub fn page(heading: &str) -> String {
    format!(
        r#"import {{ asc }} from "drizzle-orm";

import {{ todos }} from "@/db/schema";
import {{ db }} from "@/lib/db";
import {{ addTodo }} from "./actions";

export const dynamic = "force-dynamic";

export default async function Page() {{
  const rows = await db.select().from(todos).orderBy(asc(todos.id));
  return (
    <main>
      <h1>{heading}</h1>
      <ul>
        {{rows.map((todo) => <li key={{todo.id}}>{{todo.title}}</li>)}}
      </ul>
      <form action={{addTodo}}>
        <input name="title" aria-label="New todo" />
        <button type="submit">Add</button>
      </form>
    </main>
  );
}}
"#
    )
}

/// What a model does for "a todo list that keeps its items": a table, a seed row, a page
/// that reads it, a server action and a route handler that write.
pub fn todo_app(heading: &str) -> Vec<Reply> {
    vec![
        Reply::write("db/schema.ts", SCHEMA),
        Reply::terminal("npm run db:push"),
        Reply::terminal("npx drizzle-kit generate --custom --name seed"),
        Reply::write(
            "db/migrations/0001_seed.sql",
            "INSERT INTO \"todos\" (\"title\") VALUES ('Buy milk');\n",
        ),
        Reply::terminal("npm run db:push"),
        Reply::tool(
            "createOrUpdateFiles",
            json!({"files": [
                {"path": "app/actions.ts", "content": ACTIONS},
                {"path": "app/api/todos/route.ts", "content": ROUTE},
                {"path": "app/page.tsx", "content": page(heading)},
            ]}),
        ),
        Reply::summary("A todo list on the database."),
        // Only used when the check sends the app back.
        Reply::summary("A todo list on the database, checked."),
    ]
}

/// CodeFlux as these tests run it: every job checked (fixes allowed), installs given time,
/// previews at `<project>.localhost:<preview_port>`.
pub fn checked_settings(preview_port: u16) -> impl FnOnce(&mut codeflux::server::Settings) {
    move |settings| {
        settings.agent.verify = true;
        settings.agent.fix_attempts = 2;
        settings.agent.command_timeout = Duration::from_secs(300);
        settings.preview_url_template = format!("http://{{project}}.localhost:{preview_port}");
    }
}

/// A project's todo app as a test reaches it: CodeFlux and its preview listener.
pub struct Todos<'a> {
    pub server: &'a Harness,
    pub preview_port: u16,
}

impl Todos<'_> {
    /// Builds the todo app as a new project and checks that it passed its check.
    pub async fn build(&self, heading: &str) -> String {
        // Spare replies of an earlier job (sent only when its check failed) must not answer.
        self.server.fake.clear();
        self.server.fake.push_all(todo_app(heading));
        let project = self.server.create("a todo list that keeps its items").await;
        let answer = self.server.last_message(&project).await;
        assert_eq!(answer["type"], "result", "{answer}");
        assert_eq!(
            answer["fragment"]["verification"]["status"], "passed",
            "{answer}"
        );
        let files = answer["fragment"]["files"].as_object().unwrap();
        assert!(
            files
                .keys()
                .any(|path| path.starts_with("db/migrations/0000_")),
            "the generated migration is part of the version: {:?}",
            files.keys().collect::<Vec<_>>()
        );
        assert!(files.contains_key("db/migrations/meta/_journal.json"));
        project
    }

    pub fn preview_host(&self, project: &str) -> String {
        format!("{project}.localhost:{}", self.preview_port)
    }

    /// Adds a todo the way the app's own client code would, through the preview.
    pub async fn add(&self, project: &str, title: &str) {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let response = client
            .post(format!("http://127.0.0.1:{}/api/todos", self.preview_port))
            .header("host", self.preview_host(project))
            .json(&json!({ "title": title }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
    }

    /// Waits until the app's page, through the preview, shows `text`.
    pub async fn page_shows(&self, project: &str, text: &str) -> String {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        wait_for_text(
            &client,
            &format!("http://127.0.0.1:{}/", self.preview_port),
            Some(&self.preview_host(project)),
            text,
        )
        .await
    }

    /// `GET /api/projects/{id}/data`.
    pub async fn data(&self, project: &str) -> Value {
        let (status, data) = self
            .server
            .get(&format!("/api/projects/{project}/data"))
            .await;
        assert_eq!(status, 200, "{data}");
        data
    }

    /// Waits until CodeFlux's own copy of the data holds `rows` rows.
    pub async fn saved_rows(&self, project: &str, rows: u64) -> Value {
        let mut data = Value::Null;
        for _ in 0..240 {
            data = self.data(project).await;
            if data["saved"]["rows"] == rows {
                return data;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the saved copy never held {rows} rows: {data}");
    }

    /// The todos' titles, as the data API shows them.
    pub async fn titles(&self, project: &str) -> Vec<String> {
        let (status, rows) = self
            .server
            .get(&format!("/api/projects/{project}/data/todos?page=1"))
            .await;
        assert_eq!(status, 200, "{rows}");
        rows["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["title"].as_str().unwrap().to_string())
            .collect()
    }
}

pub fn todo_rows(data: &Value) -> u64 {
    data["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|table| table["name"] == "todos")
        .unwrap_or_else(|| panic!("no todos table: {data}"))["rows"]
        .as_u64()
        .unwrap()
}
