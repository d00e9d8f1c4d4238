//! Every version a git commit, cloned with the stock `git` client over smart HTTP: each tag
//! holds that version's files, a fetch brings new versions, pushing is refused, a lost
//! repository is made again with the same commits, and a token guards it.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::fake_llm::Reply;
use support::harness::Harness;

const TOKEN: &str = "git-test-token-0123456789abcdef";

/// Runs the stock git client; its output, or its error output when `expect_ok` is false.
fn git(dir: &Path, args: &[&str], expect_ok: bool) -> String {
    support::git_server::stock_git(dir, &[], args, expect_ok)
}

/// Each version's files as the API lists them, in order.
async fn version_files(server: &Harness, project: &str) -> Vec<serde_json::Map<String, Value>> {
    let settled = server.settled(project).await;
    settled["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["fragment"]["files"].as_object().cloned())
        .collect()
}

fn assert_clone_holds(clone: &Path, versions: &[serde_json::Map<String, Value>]) {
    for (index, files) in versions.iter().enumerate() {
        let tag = format!("v{}", index + 1);
        let listed = git(clone, &["ls-tree", "-r", "--name-only", &tag], true);
        let mut listed: Vec<&str> = listed.lines().collect();
        listed.sort();
        let mut expected: Vec<&str> = files.keys().map(String::as_str).collect();
        expected.sort();
        assert_eq!(listed, expected, "the files of {tag}");
        for (path, content) in files {
            assert_eq!(
                git(clone, &["show", &format!("{tag}:{path}")], true),
                content.as_str().unwrap(),
                "{path} in {tag}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_version_is_a_commit_that_the_stock_git_client_clones_and_fetches() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::tool(
            "createOrUpdateFiles",
            json!({ "files": [
                { "path": "app/page.tsx", "content": "export default function Page() {\n  return <main>Habits</main>;\n}\n" },
                { "path": "lib/streak.ts", "content": "export const streak = (days: number) => days;\n" },
                { "path": "app/my notes.md", "content": "A file name with a space.\n" },
            ]}),
        ),
        Reply::summary("A habit tracker."),
    ]);
    let project = server
        .create("build me a habit tracker\nwith streaks")
        .await;
    server.last_message(&project).await;
    server.fake.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() {\n  return <main>Habits, in blue</main>;\n}\n",
        ),
        Reply::summary("Made it blue."),
    ]);
    server.follow_up(&project, "make it blue").await;
    server.last_message(&project).await;
    let (_, versions) = server
        .get(&format!("/api/projects/{project}/versions"))
        .await;
    let v1 = versions[0]["id"].as_str().unwrap();
    let (status, _) = server
        .post(
            &format!("/api/projects/{project}/versions/{v1}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, details) = server.get(&format!("/api/projects/{project}")).await;
    let name = details["name"].as_str().unwrap().to_string();

    let work = tempfile::tempdir().unwrap();
    let url = format!("{}/git/{name}.git", server.base);
    git(work.path(), &["clone", "--quiet", &url, "app"], true);
    let clone = work.path().join("app");
    let expected = version_files(&server, &project).await;
    assert_eq!(expected.len(), 3);
    assert_eq!(git(&clone, &["tag", "--list"], true), "v1\nv2\nv3\n");
    assert_clone_holds(&clone, &expected);
    assert_eq!(
        git(&clone, &["log", "--format=%s|%an <%ae>", "main"], true),
        "Restored version 1 (“Habit Tracker”) as version 3.|CodeFlux <codeflux@localhost>\nmake it blue|CodeFlux <codeflux@localhost>\nbuild me a habit tracker|CodeFlux <codeflux@localhost>\n",
        "one commit per version, newest first, named after its request"
    );
    let body = git(&clone, &["log", "-1", "--format=%b", "v1"], true);
    let answer = server.settled(&project).await["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(body.trim(), answer.trim(), "the body is the answer");
    assert_eq!(
        git(&clone, &["rev-parse", "--abbrev-ref", "HEAD"], true).trim(),
        "main"
    );

    // A new version reaches a fetch.
    server.fake.push_all([
        Reply::write(
            "lib/streak.ts",
            "export const streak = (days: number) => days * 2;\n",
        ),
        Reply::summary("Doubled streaks."),
    ]);
    server.follow_up(&project, "double the streaks").await;
    server.last_message(&project).await;
    git(&clone, &["fetch", "--quiet", "--tags", "origin"], true);
    assert_eq!(git(&clone, &["tag", "--list"], true), "v1\nv2\nv3\nv4\n");
    assert_eq!(
        git(&clone, &["show", "origin/main:lib/streak.ts"], true),
        "export const streak = (days: number) => days * 2;\n"
    );
    assert_clone_holds(&clone, &version_files(&server, &project).await);

    // Read-only: a push is refused and changes nothing.
    std::fs::write(clone.join("pushed.txt"), "no\n").unwrap();
    git(&clone, &["add", "pushed.txt"], true);
    git(
        &clone,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "--quiet",
            "-m",
            "push?",
        ],
        true,
    );
    let refused = git(&clone, &["push", "origin", "HEAD:main"], false);
    assert!(
        refused.contains("403") || refused.contains("read-only"),
        "{refused}"
    );
    let heads_before = git(&clone, &["ls-remote", "origin"], true);

    // The repository is a projection of the versions: lost, it is made again, commit for commit.
    std::fs::remove_dir_all(server.data_dir.path().join("git")).unwrap();
    assert_eq!(git(&clone, &["ls-remote", "origin"], true), heads_before);
    // The project id names the repository too.
    git(
        work.path(),
        &[
            "clone",
            "--quiet",
            &format!("{}/git/{project}.git", server.base),
            "by-id",
        ],
        true,
    );
    // A repository of no project is not found.
    let missing = git(
        work.path(),
        &[
            "clone",
            "--quiet",
            &format!("{}/git/no-such-app.git", server.base),
            "none",
        ],
        false,
    );
    assert!(
        missing.contains("not found") || missing.contains("404"),
        "{missing}"
    );

    // Deleting the project removes its repository.
    let (_, _) = server.get(&format!("/api/projects/{project}")).await;
    let deleted = server
        .http
        .delete(format!("{}/api/projects/{project}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(
        !server
            .data_dir
            .path()
            .join(format!("git/{project}.git"))
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_a_clone_needs_it_as_the_password() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() {\n  return <main>Secret</main>;\n}\n",
        ),
        Reply::summary("A page."),
    ]);
    let project = server.create("a private app").await;
    server.last_message(&project).await;
    let (fake, data_dir, sandboxes) = server.stop().await;
    let server = Harness::start_on(fake, data_dir, sandboxes, |settings| {
        settings.auth = codeflux::auth::Auth::new(Some(TOKEN.into())).unwrap();
    })
    .await;
    let address = server.base.trim_start_matches("http://").to_string();
    let work = tempfile::tempdir().unwrap();

    let anonymous = git(
        work.path(),
        &[
            "clone",
            "--quiet",
            &format!("http://{address}/git/{project}.git"),
            "a",
        ],
        false,
    );
    assert!(
        anonymous.contains("Authentication failed")
            || anonymous.contains("could not read Username"),
        "{anonymous}"
    );
    let wrong = git(
        work.path(),
        &[
            "clone",
            "--quiet",
            &format!("http://me:not-the-token@{address}/git/{project}.git"),
            "b",
        ],
        false,
    );
    assert!(wrong.contains("Authentication failed"), "{wrong}");
    git(
        work.path(),
        &[
            "clone",
            "--quiet",
            &format!("http://me:{TOKEN}@{address}/git/{project}.git"),
            "c",
        ],
        true,
    );
    assert!(work.path().join("c/app/page.tsx").exists());
}
