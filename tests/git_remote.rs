//! A project's git remote against a real smart-HTTP server (the stock `git http-backend`):
//! a wrong token is refused and nothing is stored; a push sends every version; a change
//! made there is pulled as a new version; diverged histories never overwrite; pushing after
//! every version; a revoked token and a forgotten remote are told plainly.

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use support::fake_llm::Reply;
use support::git_server::GitServer;
use support::harness::Harness;

const TOKEN: &str = "remote-token-5f1c9a7e2b";

/// The stock git client with the server's token.
fn git(server: &GitServer, dir: &Path, args: &[&str], expect_ok: bool) -> String {
    support::git_server::stock_git(dir, &[&server.auth_config()], args, expect_ok)
}

/// The files of each version, as the API lists them, by version number.
async fn versions(server: &Harness, project: &str) -> Vec<serde_json::Map<String, Value>> {
    server.settled(project).await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["fragment"]["files"].as_object().cloned())
        .collect()
}

async fn follow_up(server: &Harness, project: &str, path: &str, content: &str) {
    server
        .fake
        .push_all([Reply::write(path, content), Reply::summary("Changed it.")]);
    server.follow_up(project, &format!("change {path}")).await;
    server.last_message(project).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_pushes_to_and_pulls_from_a_real_git_server() {
    let remote = GitServer::start(TOKEN).await;
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::tool(
            "createOrUpdateFiles",
            json!({ "files": [
                { "path": "app/page.tsx", "content": "export default function Page() {\n  return <main>Notes</main>;\n}\n" },
                { "path": "lib/notes.ts", "content": "export const notes: string[] = [];\n" },
            ]}),
        ),
        Reply::summary("A notes app."),
    ]);
    let project = server.create("build me a notes app").await;
    server.last_message(&project).await;
    follow_up(
        &server,
        &project,
        "lib/notes.ts",
        "export const notes = ['first'];\n",
    )
    .await;
    let remote_path = format!("/api/projects/{project}/remote");

    // A wrong token, or a transport that can run commands, is refused and nothing is kept.
    let (status, body) = server
        .send(
            Method::PUT,
            &remote_path,
            json!({ "url": remote.url, "token": "wrong" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("refused the token"),
        "{body}"
    );
    let (status, body) = server
        .send(
            Method::PUT,
            &remote_path,
            json!({ "url": "ext::sh -c id", "token": TOKEN }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (_, details) = server.get(&format!("/api/projects/{project}")).await;
    assert!(details["remote"].is_null(), "{details}");

    let (status, body) = server
        .send(
            Method::PUT,
            &remote_path,
            json!({ "url": remote.url, "token": TOKEN }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["has_token"], true);
    let (_, details) = server.get(&format!("/api/projects/{project}")).await;
    assert_eq!(details["remote"]["url"], remote.url.as_str());
    assert!(
        !details.to_string().contains(TOKEN),
        "the token is never shown"
    );
    let panel = server.page(&format!("/projects/{project}/remote")).await;
    assert!(
        panel.contains(&remote.url) && !panel.contains(TOKEN),
        "{panel}"
    );

    // Push: the remote holds every version as its tag, and main as the newest.
    let (status, body) = server
        .post(&format!("/api/projects/{project}/push"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("Pushed v2"),
        "{body}"
    );
    let work = tempfile::tempdir().unwrap();
    git(
        &remote,
        work.path(),
        &["clone", "--quiet", &remote.url, "app"],
        true,
    );
    let clone = work.path().join("app");
    assert_eq!(git(&remote, &clone, &["tag", "--list"], true), "v1\nv2\n");
    assert_eq!(
        git(&remote, &clone, &["show", "main:lib/notes.ts"], true),
        "export const notes = ['first'];\n"
    );

    // Someone changes it there: a pull makes the next version of exactly that, less what
    // must not come in (a secret, a binary file).
    std::fs::write(
        clone.join("app/page.tsx"),
        "export default function Page() {\n  return <main>Notes, edited on the remote</main>;\n}\n",
    )
    .unwrap();
    std::fs::write(clone.join("lib/tags.ts"), "export const tags = ['work'];\n").unwrap();
    std::fs::write(clone.join(".env.local"), "SECRET=do-not-take\n").unwrap();
    std::fs::write(clone.join("logo.png"), b"\x89PNG\r\n\x1a\n\0\0\0binary").unwrap();
    git(&remote, &clone, &["add", "-A"], true);
    git(
        &remote,
        &clone,
        &["commit", "--quiet", "-m", "Edit on the remote"],
        true,
    );
    git(
        &remote,
        &clone,
        &["push", "--quiet", "origin", "main"],
        true,
    );
    let pull_path = format!("/api/projects/{project}/pull");
    let (status, pulled) = server.post(&pull_path, json!({})).await;
    assert_eq!(status, 200, "{pulled}");
    assert_eq!(pulled["version"], 3, "{pulled}");
    assert_eq!(pulled["diverged"], false, "{pulled}");
    let skipped: Vec<&str> = pulled["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|skipped| skipped["path"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, [".env.local", "logo.png"], "{pulled}");
    let files = versions(&server, &project).await;
    assert_eq!(files.len(), 3);
    let mut paths: Vec<&str> = files[2].keys().map(String::as_str).collect();
    paths.sort();
    assert_eq!(paths, ["app/page.tsx", "lib/notes.ts", "lib/tags.ts"]);
    assert!(
        files[2]["app/page.tsx"]
            .as_str()
            .unwrap()
            .contains("edited on the remote")
    );
    let sandbox_page = server
        .sandboxes
        .workspace(project.parse().unwrap())
        .join("app/page.tsx");
    assert!(
        std::fs::read_to_string(&sandbox_page)
            .unwrap()
            .contains("edited on the remote"),
        "the pulled files are in the sandbox"
    );
    let (_, again) = server.post(&pull_path, json!({})).await;
    assert!(
        again["version"].is_null() && again["message"].as_str().unwrap().contains("up to date"),
        "{again}"
    );

    // The pulled version's commit follows the remote's, so the push is a fast-forward.
    let edited_there = git(&remote, &clone, &["rev-parse", "main"], true);
    let (status, body) = server
        .post(&format!("/api/projects/{project}/push"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    git(
        &remote,
        &clone,
        &["pull", "--quiet", "--ff-only", "origin", "main"],
        true,
    );
    git(&remote, &clone, &["fetch", "--quiet", "--tags"], true);
    assert_eq!(
        git(&remote, &clone, &["tag", "--list"], true),
        "v1\nv2\nv3\n"
    );
    let parents = git(&remote, &clone, &["rev-parse", "v3^1", "v3^2", "v2"], true);
    let parents: Vec<&str> = parents.lines().collect();
    assert_eq!(parents[0], parents[2], "v3 follows v2");
    assert_eq!(
        parents[1],
        edited_there.trim(),
        "and merges the remote's commit"
    );
    let subject = git(&remote, &clone, &["log", "-1", "--format=%s", "v3"], true);
    assert!(
        subject.starts_with("Pulled ") && subject.contains("from the remote"),
        "{subject}"
    );

    // Both sides move on: the push is refused, and the pull keeps both as versions.
    std::fs::write(
        clone.join("lib/tags.ts"),
        "export const tags = ['work', 'home'];\n",
    )
    .unwrap();
    git(
        &remote,
        &clone,
        &["commit", "--quiet", "-am", "More tags"],
        true,
    );
    git(
        &remote,
        &clone,
        &["push", "--quiet", "origin", "main"],
        true,
    );
    follow_up(
        &server,
        &project,
        "lib/notes.ts",
        "export const notes = ['mine'];\n",
    )
    .await;
    let (status, body) = server
        .post(&format!("/api/projects/{project}/push"), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("pull first"),
        "{body}"
    );
    let (status, pulled) = server.post(&pull_path, json!({})).await;
    assert_eq!(status, 200, "{pulled}");
    assert_eq!(
        (pulled["version"].as_u64(), pulled["diverged"].as_bool()),
        (Some(5), Some(true)),
        "{pulled}"
    );
    assert!(
        pulled["message"]
            .as_str()
            .unwrap()
            .contains("version 4 is this project's own"),
        "{pulled}"
    );
    let files = versions(&server, &project).await;
    assert_eq!(
        files[3]["lib/notes.ts"], "export const notes = ['mine'];\n",
        "v4 is kept"
    );
    assert_eq!(
        files[4]["lib/tags.ts"],
        "export const tags = ['work', 'home'];\n"
    );
    assert_eq!(
        files[4]["lib/notes.ts"], "export const notes = ['first'];\n",
        "v5 is the remote's state"
    );
    let (status, body) = server
        .post(&format!("/api/projects/{project}/push"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    // Saved again without a token and with pushing after every version: the token is
    // kept, and a new version reaches the remote by itself.
    let (status, body) = server
        .send(
            Method::PUT,
            &remote_path,
            json!({ "url": remote.url, "push_after_version": true }),
        )
        .await;
    assert_eq!(
        (status, body["has_token"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    follow_up(
        &server,
        &project,
        "lib/notes.ts",
        "export const notes = ['pushed by itself'];\n",
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let tags = git(&remote, &clone, &["ls-remote", "--tags", "origin"], true);
        if tags.contains("refs/tags/v6") {
            break;
        }
        let (_, details) = server.get(&format!("/api/projects/{project}")).await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "v6 was never pushed: {}",
            details["remote"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A revoked token is told plainly and kept as the last push's outcome.
    remote.change_token("a-new-token");
    follow_up(
        &server,
        &project,
        "lib/notes.ts",
        "export const notes = ['refused'];\n",
    )
    .await;
    let (status, body) = server
        .post(&format!("/api/projects/{project}/push"), json!({}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("refused the token"),
        "{body}"
    );
    let (_, details) = server.get(&format!("/api/projects/{project}")).await;
    assert_eq!(details["remote"]["last_push"]["ok"], false, "{details}");
    assert!(
        !format!("{body}{details}").contains(TOKEN),
        "git's output never holds the token"
    );
    let (status, panel) = server
        .htmx_post(&format!("/projects/{project}/push"), Ok(&[]))
        .await;
    assert_eq!(status, 422);
    assert!(
        panel.contains("refused the token") && panel.contains("Last push"),
        "{panel}"
    );

    // Forgotten: nothing to push to, and the repository's history stays.
    let (status, _) = server.send(Method::DELETE, &remote_path, Value::Null).await;
    assert_eq!(status, 204);
    let (status, body) = server
        .post(&format!("/api/projects/{project}/push"), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no remote"),
        "{body}"
    );
}
