//! Edits by diff: `editFile` changes only the text it finds, and refuses a `find` that is
//! missing, ambiguous or in a file that does not exist, with nothing written; each version's
//! changes (files added, changed, removed) in `GET /api/projects/{id}/versions/{n}/diff`,
//! in the Code tab, and in the progress (which files a step changed, by how many lines).

mod support;

use serde_json::{Value, json};
use support::fake_llm::Reply;
use support::harness::Harness;

const PAGE: &str = "export default function Page() {\n  return (\n    <main>\n      <h1>Habits</h1>\n      <p>Track</p>\n      <p>Track</p>\n    </main>\n  );\n}\n";

fn edit(path: &str, edits: Value) -> Reply {
    Reply::tool("editFile", json!({ "path": path, "edits": edits }))
}

/// The files of version `number`, as the versions API and the project detail give them.
async fn version_files(server: &Harness, project: &str, number: u64) -> Vec<String> {
    let (_, detail) = server.get(&format!("/api/projects/{project}")).await;
    let fragment = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|message| message["version"] == number)
        .unwrap_or_else(|| panic!("no v{number}: {detail}"))["fragment"]
        .clone();
    fragment["files"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn edit_file_changes_only_what_it_finds_and_every_version_shows_its_diff() {
    let server = Harness::start().await;
    server.fake.push_all(vec![
        Reply::write("app/page.tsx", PAGE),
        Reply::write("lib/old.ts", "export const old = 1;\n"),
        Reply::summary("A habit page."),
    ]);
    let project = server.create("a habit page").await;
    server.settled(&project).await;
    let workspace = server.sandboxes.workspace(project.parse().unwrap());

    server.fake.clear();
    server.fake.push_all(vec![
        // Twice in the file: refused.
        edit(
            "app/page.tsx",
            json!([{ "find": "<p>Track</p>", "replace": "<p>Go</p>" }]),
        ),
        // The second edit's `find` is not there: the first is not applied either.
        edit(
            "app/page.tsx",
            json!([
                { "find": "<h1>Habits</h1>", "replace": "<h1>Daily habits</h1>" },
                { "find": "<h2>Habbits</h2>", "replace": "" }
            ]),
        ),
        edit("app/missing.tsx", json!([{ "find": "x", "replace": "y" }])),
        // Spaces the model added at a line end do not matter.
        edit(
            "app/page.tsx",
            json!([{
                "find": "<h1>Habits</h1>   \n      <p>Track</p>\n      <p>Track</p>\n",
                "replace": "<h1>Daily habits</h1>\n      <p>Track them daily.</p>\n"
            }]),
        ),
        Reply::write("lib/new.ts", "export const fresh = 2;\n"),
        Reply::terminal("rm lib/old.ts"),
        Reply::summary("Renamed the heading."),
    ]);
    server.follow_up(&project, "rename the heading").await;
    assert_eq!(server.last_message(&project).await["type"], "result");

    let said = server.fake.said_to_model();
    let answer_to = |marker: &str| -> String {
        said.iter()
            .find(|text| text.contains(marker))
            .unwrap_or_else(|| panic!("no tool answer with {marker:?}: {said:#?}"))
            .clone()
    };
    let twice = answer_to("found 2 times");
    assert!(
        twice.contains("at lines 5, 6") && twice.contains("Nothing was changed in app/page.tsx"),
        "{twice}"
    );
    let missing = answer_to("edit 2: `find` was not found");
    assert!(
        missing.contains("   4 |       <h1>Daily habits</h1>")
            && missing.contains("the edits before it made")
            && missing.contains("Nothing was changed"),
        "the closest lines are quoted: {missing}"
    );
    answer_to("app/missing.tsx does not exist");
    answer_to("Edited app/page.tsx: 1 edit(s) applied, 2 line(s) added, 3 removed.");
    assert_eq!(
        std::fs::read_to_string(workspace.join("app/page.tsx")).unwrap(),
        "export default function Page() {\n  return (\n    <main>\n      <h1>Daily habits</h1>\n      <p>Track them daily.</p>\n    </main>\n  );\n}\n",
        "only the edit that could be placed was applied"
    );
    assert!(!workspace.join("app/missing.tsx").exists());

    // The progress says which file each step changed and by how many lines.
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let summaries: Vec<(String, bool)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event"] == "tool_finished")
        .map(|event| {
            (
                event["summary"].as_str().unwrap().to_string(),
                event["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        summaries.contains(&("edited app/page.tsx (+2 −3)".to_string(), true)),
        "{summaries:?}"
    );
    assert_eq!(
        summaries.iter().filter(|(_, ok)| !ok).count(),
        3,
        "the three refused edits: {summaries:?}"
    );
    assert!(
        summaries.contains(&("wrote lib/new.ts (1 line)".to_string(), true)),
        "{summaries:?}"
    );

    // v2 leaves out the file the model removed.
    let files = version_files(&server, &project, 2).await;
    assert!(
        files.contains(&"lib/new.ts".to_string()) && !files.contains(&"lib/old.ts".to_string()),
        "{files:?}"
    );

    // Its diff: one file added, one changed, one removed.
    let (status, diff) = server
        .get(&format!("/api/projects/{project}/versions/2/diff"))
        .await;
    assert_eq!(status, 200, "{diff}");
    assert_eq!(diff["previous"], 1, "{diff}");
    let listed: Vec<(&str, &str, u64, u64)> = diff["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            (
                file["path"].as_str().unwrap(),
                file["status"].as_str().unwrap(),
                file["added"].as_u64().unwrap(),
                file["removed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("app/page.tsx", "changed", 2, 3),
            ("lib/new.ts", "added", 1, 0),
            ("lib/old.ts", "removed", 0, 1),
        ]
    );
    let patch = diff["files"][0]["patch"].as_str().unwrap();
    assert!(
        patch.starts_with("--- a/app/page.tsx\n+++ b/app/page.tsx\n@@ -1,9 +1,8 @@\n")
            && patch.contains("\n-      <h1>Habits</h1>\n")
            && patch.contains("\n+      <h1>Daily habits</h1>\n"),
        "{patch}"
    );
    assert_eq!(diff["added"], 3, "{diff}");
    assert_eq!(diff["removed"], 4, "{diff}");

    // v1 adds everything; a version that does not exist is a 404.
    let (_, first) = server
        .get(&format!("/api/projects/{project}/versions/1/diff"))
        .await;
    assert!(first["previous"].is_null(), "{first}");
    assert!(
        first["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|file| file["status"] == "added"),
        "{first}"
    );
    let (status, _) = server
        .get(&format!("/api/projects/{project}/versions/9/diff"))
        .await;
    assert_eq!(status, 404);

    // The Code tab offers the changes and shows them, escaped and marked line by line.
    let code = server
        .page(&format!("/projects/{project}/workspace?tab=code"))
        .await;
    assert!(
        code.contains("Changes in v2") && code.contains("changes=1"),
        "{code}"
    );
    let changes = server
        .page(&format!("/projects/{project}/workspace?tab=code&changes=1"))
        .await;
    assert!(changes.contains("Against v1: 3 files changed"), "{changes}");
    assert!(
        changes.contains(r#"<tr class="diff-removed">"#)
            && changes.contains(r#"<tr class="diff-added">"#)
            && changes.contains("&lt;h1&gt;Daily habits&lt;/h1&gt;"),
        "{changes}"
    );
    assert!(
        changes.contains(r#"<span class="status is-removed">removed</span>"#),
        "{changes}"
    );
}
