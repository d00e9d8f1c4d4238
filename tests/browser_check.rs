//! The browser check on the real Docker sandbox with the scripted model: once the app
//! compiles and renders, each page is opened in the sandbox's headless Chromium, its
//! first-screen buttons and links are clicked, and what only a browser sees goes back to
//! the agent. Screenshots are kept with the version.

mod support;

use std::sync::Arc;

use serde_json::Value;
use support::checks::{events_of, feedback_turns};
use support::docker_env::{Cleanup, docker_cli, provider, test_config};
use support::fake_llm::{FakeLlm, Reply};
use support::harness::Harness;

async fn checked_server(
    fake: FakeLlm,
    fix_attempts: u32,
    model_sees_images: bool,
) -> (Harness, Cleanup, String) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,codeflux=info"))
        .with_test_writer()
        .try_init();
    let config = test_config();
    let instance = config.instance.clone();
    let (provider, cleanup) = provider(config).await;
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandboxes: Arc<dyn codeflux::sandbox::SandboxProvider> = provider;
    let server = Harness::start_with_provider(fake, sandboxes, preview_listener, move |settings| {
        settings.agent.verify = true;
        settings.agent.fix_attempts = fix_attempts;
        settings.agent.model_sees_images = model_sees_images;
        // `npm run db:push` and the first request to a route compile; slow beside other tests.
        settings.agent.command_timeout = std::time::Duration::from_secs(300);
    })
    .await;
    (server, cleanup, instance)
}

/// How long a job with browser checks may take here: generous, the suite runs beside it.
const JOB_LIMIT: std::time::Duration = std::time::Duration::from_secs(900);

/// A shared layout with links to every page: the front page's clicks walk the app.
const LAYOUT: &str = r##"import Link from "next/link";
import "./globals.css";

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en">
      <body>
        <nav>
          <Link href="/">Home</Link> <Link href="/counter">Counter</Link> <Link href="/about">About</Link>
        </nav>
        {children}
      </body>
    </html>
  );
}
"##;

const HOME: &str = r##"export default function Page() {
  return <main><h1>Habits</h1><p>Track what you do every day.</p></main>;
}
"##;

const COUNTER: &str = r##""use client";
import { useState } from "react";

export default function Page() {
  const [count, setCount] = useState(0);
  const [habits, setHabits] = useState<string[]>([]);
  return (
    <main>
      <h1>Count: {count}</h1>
      <button onClick={() => setCount(count + 1)}>Add one</button>
      <button onClick={() => setHabits([...habits, `Habit ${habits.length + 1}`])}>New habit</button>
      <ul>{habits.map((habit) => <li key={habit}>{habit}</li>)}</ul>
    </main>
  );
}
"##;

const ABOUT: &str = r##"export default function Page() {
  return <main><h1>About</h1><p>A small app.</p><a href="#top">Back to top</a></main>;
}
"##;

fn working_app() -> Vec<Reply> {
    vec![
        Reply::write("app/layout.tsx", LAYOUT),
        Reply::write("app/page.tsx", HOME),
        Reply::write("app/counter/page.tsx", COUNTER),
        Reply::write("app/about/page.tsx", ABOUT),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn what_only_a_browser_sees_is_caught_fed_back_and_the_fixed_draft_passes() {
    let fake = FakeLlm::start().await;
    let mut replies = working_app();
    replies.extend([
        // A click handler that throws.
        Reply::write(
            "app/throws/page.tsx",
            "\"use client\";\nexport default function Page() {\n  return <main><h1>Throws</h1><button onClick={() => { throw new Error(\"click-boom-42\"); }}>Explode</button></main>;\n}\n",
        ),
        // Server and client render different text.
        Reply::write(
            "app/hydration/page.tsx",
            "\"use client\";\nexport default function Page() {\n  return <main><h1>Where</h1><p>{typeof window === \"undefined\" ? \"server side\" : \"client side\"}</p></main>;\n}\n",
        ),
        // Renders nothing a person can see.
        Reply::write(
            "app/blank/page.tsx",
            "export default function Page() {\n  return <main className=\"p-4\"></main>;\n}\n",
        ),
        // Asks for an API route that does not exist.
        Reply::write(
            "app/fetches/page.tsx",
            "\"use client\";\nimport { useEffect, useState } from \"react\";\nexport default function Page() {\n  const [items, setItems] = useState<string[]>([]);\n  useEffect(() => { fetch(\"/api/missing-items\").then((r) => r.ok ? r.json() : []).then(setItems); }, []);\n  return <main><h1>Items: {items.length}</h1></main>;\n}\n",
        ),
        Reply::summary("v1"),
        // The fixes.
        Reply::write(
            "app/throws/page.tsx",
            "\"use client\";\nimport { useState } from \"react\";\nexport default function Page() {\n  const [done, setDone] = useState(false);\n  return <main><h1>Throws no more</h1><button onClick={() => setDone(true)}>Explode</button>{done && <p>Done</p>}</main>;\n}\n",
        ),
        Reply::write(
            "app/hydration/page.tsx",
            "\"use client\";\nexport default function Page() {\n  return <main><h1>Where</h1><p>the same on both sides</p></main>;\n}\n",
        ),
        Reply::write(
            "app/blank/page.tsx",
            "export default function Page() {\n  return <main className=\"p-4\"><h1>Not blank</h1></main>;\n}\n",
        ),
        Reply::write(
            "app/api/missing-items/route.ts",
            "export function GET() {\n  return Response.json([\"one\", \"two\"]);\n}\n",
        ),
        Reply::summary("fixed"),
    ]);
    fake.push_all(replies);
    let (server, _cleanup, _) = checked_server(fake, 3, false).await;
    let project = server.create("an app with some broken pages").await;
    // Seven pages opened and clicked through twice, on a machine running other tests.
    server.settled_within(&project, JOB_LIMIT).await;
    let answer = server.last_message(&project).await;
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let feedback = feedback_turns(&server.fake);
    assert_eq!(
        answer["fragment"]["verification"]["status"], "passed",
        "{answer:#}\nfeedback: {feedback:#?}\nevents: {events:#}"
    );
    assert_eq!(feedback.len(), 1, "{feedback:#?}");
    let told = &feedback[0];
    assert!(
        told.contains("In a browser (each page opened, its buttons and links clicked):"),
        "{told}"
    );
    let line_about = |route: &str| {
        told.lines()
            .filter(|line| line.starts_with(&format!("- {route}: ")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let throws = line_about("/throws");
    assert!(
        throws.contains("after clicking button \"Explode\"")
            && throws.contains("an uncaught exception: click-boom-42")
            && throws.contains("at onClick (app/throws/page.tsx:3:"),
        "the page, the element clicked, the message and the app's frame: {told}"
    );
    assert!(
        line_about("/hydration").contains("a hydration error: Hydration failed"),
        "{told}"
    );
    assert!(line_about("/blank").contains("nothing visible"), "{told}");
    assert!(
        line_about("/fetches").contains("GET /api/missing-items answered HTTP 404"),
        "{told}"
    );
    for route in ["/", "/counter", "/about"] {
        assert!(
            line_about(route).is_empty(),
            "no false alarm on the working page {route}: {told}"
        );
    }

    let checked = events_of(&events, "browser_checked");
    assert_eq!(checked.len(), 2, "{events:#}");
    assert_eq!(checked[0]["pages"], 7);
    assert!(checked[0]["problems"].as_u64().unwrap() >= 4, "{events:#}");
    assert_eq!(checked[1]["problems"], 0, "{events:#}");
    let failed = events_of(&events, "check_failed");
    assert!(
        failed[0]["summary"]
            .as_str()
            .unwrap()
            .contains("errors in the browser"),
        "{events:#}"
    );

    // The passing check is kept with the version, with a screenshot of each page.
    let browser = &answer["fragment"]["verification"]["browser"];
    let pages = browser["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 7, "{browser:#}");
    assert_eq!(pages[0]["route"], "/", "the front page comes first");
    assert!(
        pages.iter().all(|page| page["screenshot"] == true),
        "{browser:#}"
    );
    let clicks: u64 = pages
        .iter()
        .map(|page| page["clicks"].as_u64().unwrap())
        .sum();
    assert!(
        clicks >= 7 * 3,
        "every page's nav links and buttons are clicked: {browser:#}"
    );
    let (_, check) = server
        .get(&format!("/api/projects/{project}/versions/1/check"))
        .await;
    assert_eq!(
        check["browser"]["summary"],
        format!("Checked in a browser: 7 pages, {clicks} clicks, no errors")
    );
    let shot = check["browser"]["pages"][0]["screenshot"].as_str().unwrap();
    let response = server
        .http
        .get(format!("{}{shot}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let bytes = response.bytes().await.unwrap();
    assert!(
        bytes.starts_with(&[0xFF, 0xD8, 0xFF]) && bytes.len() > 5_000,
        "a real screenshot, {} bytes",
        bytes.len()
    );
    let page = server.page(&format!("/projects/{project}")).await;
    assert!(
        page.contains(&format!(
            "Checked in a browser: 7 pages, {clicks} clicks, no errors"
        )) && page.contains(&format!("/projects/{project}/versions/1/screenshots/0")),
        "the message shows the check and its thumbnails"
    );
}

const NOTES_SCHEMA: &str = r#"import { pgTable, serial, text } from "drizzle-orm/pg-core";

export const notes = pgTable("notes", {
  id: serial("id").primaryKey(),
  body: text("body").notNull(),
});
"#;

const NOTES_PAGE: &str = r#"import { revalidatePath } from "next/cache";

import { notes } from "@/db/schema";
import { db } from "@/lib/db";

export const dynamic = "force-dynamic";

async function deleteAll() {
  "use server";
  await db.delete(notes);
  revalidatePath("/notes");
}

export default async function Page() {
  const rows = await db.select().from(notes);
  return (
    <main>
      <h1>Notes: {rows.length}</h1>
      <ul>{rows.map((row) => <li key={row.id}>{row.body}</li>)}</ul>
      <form action={deleteAll}><button type="submit">Delete all</button></form>
    </main>
  );
}
"#;

const NOTES_SEED: &str = r#"import { notes } from "@/db/schema";
import { db } from "@/lib/db";

export const dynamic = "force-dynamic";

export async function POST() {
  await db.insert(notes).values([{ body: "keep me" }, { body: "and me" }]);
  return Response.json({ ok: true });
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_correct_app_passes_is_judged_by_its_screenshot_keeps_its_data_and_without_chromium_says_so()
 {
    let fake = FakeLlm::start().await;
    let mut replies = working_app();
    replies.extend([
        Reply::write("db/schema.ts", NOTES_SCHEMA),
        Reply::write("app/notes/page.tsx", NOTES_PAGE),
        Reply::write("app/api/seed/route.ts", NOTES_SEED),
        Reply::terminal(
            "npm run db:push && curl -sS --fail-with-body --max-time 120 -X POST http://127.0.0.1:3000/api/seed",
        ),
        Reply::summary("v1"),
        // The answer to the screenshot of `/`: it looks as asked.
        Reply::summary("v1, looked at"),
    ]);
    fake.push_all(replies);
    let (server, _cleanup, instance) = checked_server(fake, 3, true).await;
    let project = server.create("a small multi-page app").await;
    server.settled_within(&project, JOB_LIMIT).await;
    let first = server.last_message(&project).await;
    let pages = first["fragment"]["verification"]["browser"]["pages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    assert_eq!(pages.len(), 4, "{first:#}\n{events:#}");
    assert!(feedback_turns(&server.fake).is_empty(), "no false alarm");
    // A model that reads images was shown the front page once, with the request.
    let last = server.fake.agent_requests().last().cloned().unwrap();
    let looks: Vec<&Value> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| {
            message["content"]
                .as_array()
                .is_some_and(|parts| parts.iter().any(|part| part["type"] == "image_url"))
        })
        .collect();
    assert_eq!(looks.len(), 1, "{last:#}");
    let text = looks[0]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("screenshot of the app's front page")
            && text.contains("a small multi-page app"),
        "{text}"
    );
    assert!(
        looks[0]["content"][1]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/jpeg;base64,/9j/"),
        "the screenshot itself"
    );
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    assert_eq!(
        events_of(&events, "looking_at_screenshot").len(),
        1,
        "{events:#}"
    );
    // The model's seeding worked: two rows before the check.
    let seeded = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "tool")
        .filter_map(|message| message["content"].as_str())
        .collect::<Vec<_>>()
        .join("\n---\n");
    assert!(seeded.contains("{\"ok\":true}"), "{seeded}");
    // The check clicked "Delete all" on /notes, and the rows are back as they were.
    let notes = pages.iter().find(|page| page["route"] == "/notes").unwrap();
    assert_eq!(notes["clicks"], 4, "three links and the button: {notes}");
    let (_, rows) = server
        .get(&format!("/api/projects/{project}/data/notes"))
        .await;
    assert_eq!(
        rows["total"], 2,
        "the check leaves the app's data as it was: {rows:#}\nseeding said: {seeded}"
    );

    // Chromium goes from this sandbox, as on an image built before the browser check.
    let container = docker_cli(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=codeflux.instance={instance}"),
        "--filter",
        &format!("label=codeflux.project={project}"),
    ]);
    let container = container.trim();
    assert!(!container.is_empty(), "the project's sandbox runs");
    docker_cli(&[
        "exec",
        "-u",
        "root",
        container,
        "sh",
        "-c",
        "rm -f /usr/bin/chromium-headless-shell /usr/bin/chromium /usr/lib/chromium/chromium-headless-shell",
    ]);
    server.fake.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() {\n  return <main><h1>Habits, again</h1></main>;\n}\n",
        ),
        Reply::summary("v2"),
    ]);
    server.follow_up(&project, "change the heading").await;
    server.settled_within(&project, JOB_LIMIT).await;
    let second = server.last_message(&project).await;
    let verification = &second["fragment"]["verification"];
    assert_eq!(verification["status"], "passed", "{second:#}");
    let unavailable = verification["browser"]["unavailable"]
        .as_str()
        .unwrap_or_default();
    assert!(
        unavailable.starts_with("no Chromium in the sandbox"),
        "{verification:#}"
    );
    let page = server.page(&format!("/projects/{project}")).await;
    assert!(page.contains("Not checked in a browser: no Chromium in the sandbox"));
}
