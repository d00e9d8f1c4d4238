//! Bringing an existing app in: a zip from GitHub (one top folder) becomes v1 without what
//! must stay out; unsafe, oversized or unsupported apps are refused and nothing is stored; a
//! git repository comes in with its history below v1; a follow-up works on the import.

mod support;

use std::path::Path;

use serde_json::Value;
use support::fake_llm::Reply;
use support::git_server::GitServer;
use support::harness::Harness;

const PACKAGE: &str = r#"{"name":"notes","dependencies":{"next":"14.2.3","react":"18.3.1","react-dom":"18.3.1"},"devDependencies":{"tailwindcss":"^3.4.1"}}"#;
const PAGE: &str = "export default function Page() {\n  return <main>Imported notes</main>;\n}\n";

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in entries {
        writer.start_file(*name, options).unwrap();
        std::io::Write::write_all(&mut writer, content).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

async fn import(server: &Harness, form: reqwest::multipart::Form) -> (u16, Value) {
    let response = server
        .http
        .post(format!("{}/api/projects/import", server.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn zip_form(zip: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(zip).file_name("app.zip"),
    )
}

async fn project_count(server: &Harness) -> usize {
    let (_, list) = server.get("/api/projects").await;
    list["projects"].as_array().unwrap().len()
}

fn git(dir: &Path, args: &[&str]) -> String {
    support::git_server::stock_git(dir, &[], args, true)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zip_becomes_v1_without_what_must_stay_out_and_a_follow_up_works_on_it() {
    let server = Harness::start().await;
    let zip = zip_of(&[
        ("notes-main/package.json", PACKAGE.as_bytes()),
        ("notes-main/app/page.tsx", PAGE.as_bytes()),
        (
            "notes-main/tailwind.config.js",
            b"module.exports = { content: ['./app/**/*.tsx'] };\n",
        ),
        ("notes-main/.env.local", b"SECRET=never-sent"),
        (
            "notes-main/node_modules/react/index.js",
            b"module.exports = {};",
        ),
        ("notes-main/public/logo.png", b"\x89PNG\r\n\x1a\n\0\0\0"),
    ]);
    let (status, body) = import(&server, zip_form(zip)).await;
    assert_eq!(status, 201, "{body}");
    let project = body["id"].as_str().unwrap().to_string();
    assert!(
        body["preview_url"].as_str().unwrap().contains(&project),
        "{body}"
    );
    assert_eq!(body["import"]["stack"]["next_version"], "14.2.3", "{body}");
    assert_eq!(body["import"]["stack"]["app_router"], true);
    let skipped: Vec<&str> = body["import"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|skipped| skipped["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        [
            ".env.local",
            "node_modules/react/index.js",
            "public/logo.png"
        ]
    );
    let v1 = &body["messages"][0];
    assert_eq!(v1["version"], 1, "{body}");
    let files = v1["fragment"]["files"].as_object().unwrap();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["app/page.tsx", "package.json", "tailwind.config.js"]
    );
    assert_eq!(files["app/page.tsx"], PAGE);
    let described = v1["content"].as_str().unwrap();
    assert!(
        described.contains("Next.js 14.2.3 with the App Router, React 18.3.1, Tailwind CSS ^3.4.1"),
        "{described}"
    );
    assert!(
        !body.to_string().contains("never-sent"),
        "a secret never comes in"
    );

    // A follow-up: the model sees the import and its stack, and its change is v2.
    server.fake.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() {\n  return <main>Imported notes, edited</main>;\n}\n",
        ),
        Reply::summary("Edited the imported page."),
    ]);
    server.follow_up(&project, "change the heading").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let sent = server.fake.agent_requests()[0]["messages"].to_string();
    assert!(
        sent.contains("Next.js 14.2.3 with the App Router"),
        "the model is told the real stack: {sent}"
    );
    let (_, versions) = server
        .get(&format!("/api/projects/{project}/versions"))
        .await;
    assert_eq!(versions.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_oversized_and_unsupported_apps_are_refused_and_nothing_is_stored() {
    let server = Harness::start().await;
    let before = project_count(&server).await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            zip_of(&[
                ("package.json", PACKAGE.as_bytes()),
                ("../../evil.sh", b"rm -rf /"),
            ]),
            422,
            "leaves the app's folder",
        ),
        (
            zip_of(&[
                ("package.json", PACKAGE.as_bytes()),
                ("big.txt", &vec![b'a'; 30 * 1024 * 1024]),
            ]),
            413,
            "zip bomb",
        ),
        (
            zip_of(&[
                ("package.json", br#"{"devDependencies":{"vite":"5.4.0"}}"#),
                ("index.html", b"<div id=root>"),
            ]),
            422,
            "a Vite app",
        ),
        (
            zip_of(&[("main.py", b"print('hi')")]),
            422,
            "no package.json",
        ),
        (b"PK not really a zip".to_vec(), 422, "not a zip"),
    ];
    for (zip, status, says) in cases {
        let (got, body) = import(&server, zip_form(zip)).await;
        assert_eq!(got, status, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{says}: {body}"
        );
    }
    let (status, body) = import(&server, reqwest::multipart::Form::new().text("prompt", "x")).await;
    assert_eq!(status, 422, "{body}");
    // The home page's form says why, in the form.
    let form = zip_form(zip_of(&[("main.py", b"print(1)")]));
    let (status, html) = server.htmx_post("/projects/import", Err(form)).await;
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("id=\"import-form\"") && html.contains("no package.json"),
        "{html}"
    );
    let page = server.page("/").await;
    assert!(page.contains("Import an existing app"), "{page}");
    assert_eq!(
        project_count(&server).await,
        before,
        "a refused import stores nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_repository_comes_in_with_its_history_below_v1() {
    let token = "import-token-93b1";
    let remote = GitServer::start(token).await;
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(source.join("app")).unwrap();
    git(
        work.path(),
        &[
            "init",
            "--quiet",
            "--initial-branch=main",
            source.to_str().unwrap(),
        ],
    );
    std::fs::write(source.join("package.json"), PACKAGE).unwrap();
    git(&source, &["add", "-A"]);
    git(&source, &["commit", "--quiet", "-m", "Start the notes app"]);
    std::fs::write(source.join("app/page.tsx"), PAGE).unwrap();
    git(&source, &["add", "-A"]);
    git(&source, &["commit", "--quiet", "-m", "Add the page"]);
    let head = git(&source, &["rev-parse", "HEAD"]).trim().to_string();
    git(
        &source,
        &[
            "-c",
            &remote.auth_config(),
            "push",
            "--quiet",
            &remote.url,
            "main",
        ],
    );

    let server = Harness::start().await;
    let before = project_count(&server).await;
    let form = |token: &str| {
        reqwest::multipart::Form::new()
            .text("git_url", remote.url.clone())
            .text("git_token", token.to_string())
            .text("git_ref", "main")
    };
    let (status, body) = import(&server, form("wrong")).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("refused the token"),
        "{body}"
    );
    assert_eq!(project_count(&server).await, before);
    let git_root = server.data_dir.path().join("git");
    let leftovers: Vec<_> = std::fs::read_dir(&git_root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "a refused import leaves no repository: {leftovers:?}"
    );

    let (status, body) = import(&server, form(token)).await;
    assert_eq!(status, 201, "{body}");
    let project = body["id"].as_str().unwrap();
    let files = body["messages"][0]["fragment"]["files"]
        .as_object()
        .unwrap();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["app/page.tsx", "package.json"]
    );
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains(&head[..10]),
        "{body}"
    );
    assert!(!body.to_string().contains(token));

    // CodeFlux's own repository continues the imported history.
    let clone = work.path().join("clone");
    git(
        work.path(),
        &[
            "clone",
            "--quiet",
            &format!("{}/git/{project}.git", server.base),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(
        git(&clone, &["rev-parse", "v1^"]).trim(),
        head,
        "v1 follows the imported head"
    );
    assert_eq!(
        git(&clone, &["log", "--format=%s", "main"])
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        ["Add the page", "Start the notes app"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_import_command_sends_a_folder_without_what_must_stay_out() {
    let server = Harness::start().await;
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(folder.path().join("app")).unwrap();
    std::fs::create_dir_all(folder.path().join("node_modules/react")).unwrap();
    std::fs::write(folder.path().join("package.json"), PACKAGE).unwrap();
    std::fs::write(folder.path().join("app/page.tsx"), PAGE).unwrap();
    std::fs::write(folder.path().join(".env"), "SECRET=stays-here").unwrap();
    std::fs::write(folder.path().join("node_modules/react/index.js"), "x").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .arg("import")
        .arg(folder.path())
        .args(["--server", &server.base])
        .env_remove("CODEFLUX_AUTH_TOKEN")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Imported 2 files") && stdout.contains("left out .env"),
        "{stdout}"
    );
    let (_, list) = server.get("/api/projects").await;
    let project = list["projects"][0]["id"].as_str().unwrap().to_string();
    let (_, details) = server.get(&format!("/api/projects/{project}")).await;
    let files = details["messages"][0]["fragment"]["files"]
        .as_object()
        .unwrap();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["app/page.tsx", "package.json"]
    );
    assert!(!details.to_string().contains("stays-here"));

    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .arg("import")
        .arg(folder.path().join("app"))
        .args(["--server", &server.base])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no package.json"));
}
