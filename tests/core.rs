//! The generation pipeline end to end, over HTTP: prompt → job → agent tools → summary →
//! stored result; follow-ups; every error path; restart with a job in flight.

mod support;

use std::sync::Arc;
use std::time::Duration;

use codeflux::store::{JobStatus, Store};
use serde_json::{Value, json};
use support::fake_llm::{FRIENDLY_REPLY, FakeLlm, Reply, TITLE_REPLY};
use support::harness::{Harness, PREVIEW_TEMPLATE};
use support::host_sandbox::HostSandboxes;

fn tool_messages(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "tool")
        .map(|message| message["content"].as_str().unwrap().to_string())
        .collect()
}

fn count_occurrences(request: &Value, needle: &str) -> usize {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["content"].as_str())
        .map(|content| content.matches(needle).count())
        .sum()
}

#[tokio::test]
async fn prompt_becomes_a_stored_result_with_a_fragment() {
    let server = Harness::start().await;
    let page = "export default function Page() {\n  return <main>Habits</main>;\n}\n";
    server.fake.push_all([
        Reply::terminal("echo hello-from-sandbox; echo warn >&2"),
        Reply::write("app/page.tsx", page),
        Reply::tool("readFiles", json!({ "files": ["/home/user/app/page.tsx"] })),
        Reply::summary("Built a habit tracker page."),
    ]);

    let project = server.create("  build me a habit tracker  ").await;
    let done = server.settled(&project).await;

    let messages = done["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(
        messages[0]["content"], "build me a habit tracker",
        "prompt is trimmed"
    );
    let answer = &messages[1];
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["type"], "result");
    assert_eq!(answer["content"], FRIENDLY_REPLY);
    assert_eq!(
        answer["usage"]["model_calls"], 6,
        "4 agent turns + title + reply"
    );
    let fragment = &answer["fragment"];
    assert_eq!(fragment["title"], TITLE_REPLY);
    assert_eq!(fragment["files"]["app/page.tsx"], page);
    assert_eq!(
        fragment["sandbox_url"],
        PREVIEW_TEMPLATE.replace("{project}", &project)
    );
    assert_eq!(done["preview_url"], fragment["sandbox_url"]);

    // The file really is in the sandbox.
    let on_disk = std::fs::read_to_string(
        server
            .sandboxes
            .workspace(project.parse().unwrap())
            .join("app/page.tsx"),
    )
    .unwrap();
    assert_eq!(on_disk, page);

    // What the model was offered and told.
    let requests = server.fake.agent_requests();
    assert_eq!(requests.len(), 4);
    let tools: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        ["terminal", "createOrUpdateFiles", "editFile", "readFiles"]
    );
    assert_eq!(
        count_occurrences(&requests[0], "build me a habit tracker"),
        1,
        "the prompt is sent once"
    );
    let results = tool_messages(&requests[3]);
    assert!(results[0].contains("exit code 0") && results[0].contains("hello-from-sandbox"));
    assert!(
        results[0].contains("warn"),
        "stderr is returned on success too"
    );
    assert!(
        results[1].contains("Wrote 1 file(s): app/page.tsx (3 lines)"),
        "{}",
        results[1]
    );
    assert!(
        results[2].contains("return <main>Habits</main>"),
        "{}",
        results[2]
    );

    // Progress was recorded and can be replayed.
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"queued"));
    assert_eq!(kinds.last(), Some(&"finished"));
    for expected in [
        "started",
        "sandbox_ready",
        "model_turn",
        "tool_started",
        "tool_finished",
        "summary",
    ] {
        assert!(kinds.contains(&expected), "missing {expected} in {kinds:?}");
    }
    let wrote = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "tool_finished" && e["tool"] == "createOrUpdateFiles")
        .unwrap();
    assert_eq!(wrote["summary"], "wrote app/page.tsx (3 lines)");
    assert_eq!(wrote["ok"], true);
}

#[tokio::test]
async fn follow_up_builds_on_the_previous_files_and_conversation() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::Tools(vec![
            (
                "createOrUpdateFiles".into(),
                json!({ "files": [{ "path": "app/page.tsx", "content": "v1" }] }).to_string(),
            ),
            (
                "createOrUpdateFiles".into(),
                json!({ "files": [{ "path": "components/list.tsx", "content": "list" }] })
                    .to_string(),
            ),
        ]),
        Reply::summary("First version."),
    ]);
    let project = server.create("make a todo list").await;
    server.settled(&project).await;

    server.fake.push_all([
        Reply::tool("readFiles", json!({ "files": ["app/page.tsx"] })),
        Reply::write("app/page.tsx", "v2"),
        Reply::summary("Made it blue."),
    ]);
    server.follow_up(&project, "make it blue").await;
    let answer = server.last_message(&project).await;

    assert_eq!(answer["type"], "result");
    let files = &answer["fragment"]["files"];
    assert_eq!(files["app/page.tsx"], "v2");
    assert_eq!(
        files["components/list.tsx"], "list",
        "files from earlier versions are kept"
    );

    let requests = server.fake.agent_requests();
    let follow_up = &requests[2];
    assert_eq!(count_occurrences(follow_up, "make it blue"), 1);
    assert_eq!(
        count_occurrences(follow_up, "make a todo list"),
        1,
        "earlier prompt is context"
    );
    assert_eq!(
        count_occurrences(follow_up, FRIENDLY_REPLY),
        1,
        "earlier answer is context"
    );
    assert!(
        count_occurrences(follow_up, "components/list.tsx") >= 1,
        "existing files are listed"
    );
    let read = &tool_messages(&requests[3])[0];
    assert!(
        read.contains("\"content\":\"v1\""),
        "the sandbox still has v1: {read}"
    );
    assert_eq!(
        *server.sandboxes.created.lock().unwrap(),
        1,
        "the same sandbox is reused"
    );
}

#[tokio::test]
async fn an_expired_sandbox_is_recreated_with_the_projects_files() {
    let server = Harness::start().await;
    server
        .fake
        .push_all([Reply::write("app/page.tsx", "kept"), Reply::summary("v1")]);
    let project = server.create("a page").await;
    server.settled(&project).await;

    server.sandboxes.expire(project.parse().unwrap());
    server.fake.push_all([
        Reply::tool("readFiles", json!({ "files": ["app/page.tsx"] })),
        Reply::summary("checked"),
    ]);
    server.follow_up(&project, "check the page").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result");
    let read = &tool_messages(&server.fake.agent_requests()[3])[0];
    assert!(read.contains("\"content\":\"kept\""), "{read}");
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let ready = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "sandbox_ready")
        .unwrap();
    assert_eq!(ready["created"], true);
    assert_eq!(ready["restored_files"], 1);
}

#[tokio::test]
async fn model_down_ends_the_job_with_a_clear_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let server =
        Harness::start_with(|settings| settings.llm.base_url = format!("http://{address}/v1"))
            .await;
    let project = server.create("anything").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["type"], "error");
    let content = answer["content"].as_str().unwrap();
    assert!(content.contains("cannot reach the model API"), "{content}");
    assert!(content.contains("after 3 attempts"), "{content}");
    assert!(answer["fragment"].is_null());
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let server = Harness::start().await;
    for _ in 0..3 {
        server.fake.push(Reply::Fail {
            status: 503,
            retry_after: None,
        });
    }
    let project = server.create("anything").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error");
    let content = answer["content"].as_str().unwrap();
    assert!(
        content.contains("HTTP 503") && content.contains("after 3 attempts"),
        "{content}"
    );
}

#[tokio::test]
async fn rate_limits_are_retried_honouring_retry_after() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::Fail {
            status: 429,
            retry_after: Some(0),
        },
        Reply::Fail {
            status: 500,
            retry_after: None,
        },
        Reply::write("app/page.tsx", "ok"),
        Reply::summary("done"),
    ]);
    let project = server.create("anything").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert_eq!(server.fake.agent_requests().len(), 4);
}

#[tokio::test]
async fn malformed_tool_arguments_get_a_tool_error_and_the_job_goes_on() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::raw_tool(
            "createOrUpdateFiles",
            "{\"files\": [{\"path\": \"app/page.tsx\", ",
        ),
        Reply::raw_tool("unknownTool", "{}"),
        Reply::write("app/page.tsx", "fixed"),
        Reply::summary("done"),
    ]);
    let project = server.create("anything").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result");
    let results = tool_messages(&server.fake.agent_requests()[3]);
    assert!(results[0].contains("not valid JSON"), "{}", results[0]);
    assert!(
        results[1].contains("no tool named \"unknownTool\""),
        "{}",
        results[1]
    );
}

#[tokio::test]
async fn paths_outside_the_workspace_are_refused_and_nothing_is_written() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::tool(
            "createOrUpdateFiles",
            json!({ "files": [
                { "path": "app/ok.tsx", "content": "fine" },
                { "path": "../escaped.txt", "content": "evil" }
            ] }),
        ),
        Reply::write("/etc/evil.txt", "evil"),
        Reply::tool("readFiles", json!({ "files": ["../../etc/passwd"] })),
        Reply::write("app/page.tsx", "good"),
        Reply::summary("done"),
    ]);
    let project = server.create("anything").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result");
    let results = tool_messages(&server.fake.agent_requests()[4]);
    assert!(
        results[0].contains("outside the workspace") && results[0].contains("Nothing was written")
    );
    assert!(results[1].contains("outside the workspace"));
    assert!(results[2].contains("outside the workspace"));
    let workspace = server.sandboxes.workspace(project.parse().unwrap());
    assert!(
        !workspace.join("app/ok.tsx").exists(),
        "a refused batch writes nothing"
    );
    assert!(!server.sandboxes.base().join("escaped.txt").exists());
    let files = answer["fragment"]["files"].as_object().unwrap();
    assert_eq!(files.keys().collect::<Vec<_>>(), ["app/page.tsx"]);
}

#[tokio::test]
async fn reaching_the_step_cap_with_files_is_still_a_result() {
    let server = Harness::start_with(|settings| settings.agent.max_iterations = 2).await;
    server.fake.push_all([
        Reply::write("app/page.tsx", "partial"),
        Reply::terminal("true"),
    ]);
    let project = server.create("anything").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result");
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .contains("limit of 2 steps"),
        "{answer}"
    );
    assert_eq!(answer["fragment"]["files"]["app/page.tsx"], "partial");
}

#[tokio::test]
async fn reaching_the_step_cap_without_files_is_an_error() {
    let server = Harness::start_with(|settings| settings.agent.max_iterations = 2).await;
    // The first turn without a tool call or summary is nudged without counting as a step;
    // the second counts.
    server.fake.push_all([
        Reply::terminal("ls"),
        Reply::Text("thinking...".into()),
        Reply::Text("still thinking...".into()),
    ]);
    let project = server.create("anything").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(server.fake.agent_requests().len(), 3);
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .contains("used all 2 steps without writing any files")
    );
    // A text-only turn without a summary is answered with a nudge to keep going; a tool
    // turn is not.
    let requests = server.fake.agent_requests();
    assert_eq!(
        count_occurrences(&requests[1], "Keep going"),
        0,
        "no nudge after a tool turn"
    );
    assert_eq!(
        count_occurrences(&requests[2], "Keep going"),
        1,
        "the text-only turn is answered with the nudge"
    );
}

/// Writes a project whose job a killed process left `running`, as if after `attempts` starts.
async fn crashed_job(data_dir: &std::path::Path, attempts: u32) -> String {
    let store = Store::open(data_dir).unwrap();
    let (project, _, mut job) = store.create_project("rebuild me").unwrap();
    job.status = JobStatus::Running;
    job.attempts = attempts;
    store.put_job(&job).unwrap();
    store.flush().await.unwrap();
    project.id.to_string()
}

#[tokio::test]
async fn a_job_interrupted_by_a_restart_runs_again() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let project = crashed_job(data_dir.path(), 1).await;
    let fake = FakeLlm::start().await;
    fake.push_all([
        Reply::write("app/page.tsx", "recovered"),
        Reply::summary("done"),
    ]);
    let server = Harness::start_on(fake, data_dir, HostSandboxes::new(), |_| {}).await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert_eq!(answer["fragment"]["files"]["app/page.tsx"], "recovered");
}

#[tokio::test]
async fn a_job_interrupted_twice_fails_with_a_message() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let project = crashed_job(data_dir.path(), 2).await;
    let server = Harness::start_on(
        FakeLlm::start().await,
        data_dir,
        HostSandboxes::new(),
        |_| {},
    )
    .await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error");
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .contains("stopped twice")
    );
    assert!(
        server.fake.requests().is_empty(),
        "the job is not run a third time"
    );
}

#[tokio::test]
async fn the_queue_survives_a_clean_restart_with_work_waiting() {
    let server = Harness::start().await;
    // The first job is held in its model call, so the follow-up waits behind it.
    server.fake.set_delay(Duration::from_secs(60));
    let project = server.create("first").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, detail) = server.get(&format!("/api/projects/{project}")).await;
        if detail["status"] == "running" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first job never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Into its model call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.follow_up(&project, "second").await;
    let (_, detail) = server.get(&format!("/api/projects/{project}")).await;
    assert_ne!(
        detail["status"], "idle",
        "work is running and waiting at the stop"
    );
    let (fake, data_dir, sandboxes) = server.stop().await;

    fake.clear();
    fake.set_delay(Duration::ZERO);
    fake.push_all([
        Reply::write("app/page.tsx", "one"),
        Reply::summary("one"),
        Reply::write("app/page.tsx", "two"),
        Reply::summary("two"),
    ]);
    let server = Harness::start_on(fake, data_dir, sandboxes, |_| {}).await;
    let detail = server.settled(&project).await;
    let messages = detail["messages"].as_array().unwrap();
    let answers: Vec<&Value> = messages
        .iter()
        .filter(|message| message["role"] == "assistant")
        .collect();
    assert_eq!(
        answers.len(),
        2,
        "both prompts were answered once: {detail:#}"
    );
    assert!(
        answers.iter().all(|answer| answer["type"] == "result"),
        "{detail:#}"
    );
    // The waiting prompt ran after the interrupted one, on its files.
    let last = answers.last().unwrap();
    assert_eq!(
        last["fragment"]["files"]["app/page.tsx"], "two",
        "{detail:#}"
    );
}

#[tokio::test]
async fn prompts_are_validated() {
    let server = Harness::start().await;
    for bad in [
        json!({}),
        json!({ "prompt": "" }),
        json!({ "prompt": "   \n " }),
        json!({ "prompt": "x".repeat(10_001) }),
    ] {
        let (status, body) = server.post("/api/projects", bad.clone()).await;
        assert_eq!(status, 422, "{bad}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let (_, body) = server
        .post("/api/projects", json!({ "prompt": "x".repeat(10_001) }))
        .await;
    assert!(body["error"].as_str().unwrap().contains("10001"));
    let response = server
        .http
        .post(format!("{}/api/projects", server.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());

    let (status, body) = server.get("/api/projects").await;
    assert_eq!(status, 200);
    assert!(
        body["projects"].as_array().unwrap().is_empty(),
        "nothing was created by bad input"
    );

    let longest = "é".repeat(10_000);
    server
        .fake
        .push_all([Reply::write("app/page.tsx", "x"), Reply::summary("x")]);
    let project = server.create(&longest).await;
    server.settled(&project).await;
}

#[tokio::test]
async fn unknown_projects_are_404_json() {
    let server = Harness::start().await;
    let missing = uuid::Uuid::now_v7();
    let (status, body) = server.get(&format!("/api/projects/{missing}")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "project not found");
    let (status, body) = server
        .post(
            &format!("/api/projects/{missing}/messages"),
            json!({ "prompt": "hi" }),
        )
        .await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn projects_list_newest_first_in_pages_and_delete_cascades() {
    let server = Harness::start().await;
    let mut ids = Vec::new();
    for prompt in ["one", "two", "three"] {
        server
            .fake
            .push_all([Reply::write("app/page.tsx", prompt), Reply::summary(prompt)]);
        let id = server.create(prompt).await;
        server.settled(&id).await;
        ids.push(id);
    }
    let (_, first) = server.get("/api/projects?limit=2").await;
    let page: Vec<&str> = first["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[2].as_str(), ids[1].as_str()]);
    assert_eq!(first["projects"][0]["status"], "idle");
    let name = first["projects"][0]["name"].as_str().unwrap();
    assert!(
        name.split('-').count() == 2 && name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
        "{name}"
    );
    let cursor = first["next"].as_str().unwrap();
    let (_, second) = server
        .get(&format!("/api/projects?limit=2&before={cursor}"))
        .await;
    let page: Vec<&str> = second["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[0].as_str()]);
    assert!(second["next"].is_null());

    let response = server
        .http
        .delete(format!("{}/api/projects/{}", server.base, ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, _) = server.get(&format!("/api/projects/{}", ids[1])).await;
    assert_eq!(status, 404);
    let (_, events) = server
        .get(&format!("/api/projects/{}/events", ids[1]))
        .await;
    assert_eq!(events["error"], "project not found");
    let (_, list) = server.get("/api/projects").await;
    assert_eq!(list["projects"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_fake_model_speaks_the_protocol_the_official_openai_client_expects() {
    let fake = FakeLlm::start().await;
    fake.require_key("sk-test");
    fake.push_all([
        Reply::write("app/page.tsx", "hello"),
        Reply::Fail {
            status: 429,
            retry_after: Some(0),
        },
        Reply::summary("all done"),
        Reply::write("app/streamed.tsx", "streamed"),
        Reply::summary("streamed summary"),
    ]);
    let stdout = support::run_sdk_check(
        "openai_check.py",
        &[
            ("OPENAI_BASE_URL", fake.base_url.as_str()),
            ("OPENAI_API_KEY", "sk-test"),
        ],
    )
    .await;
    assert!(stdout.contains("openai SDK check passed"), "{stdout}");
    assert_eq!(fake.remaining(), 0);
    // The fake reads images the way the SDK sends them (the shape CodeFlux sends too).
    assert!(
        fake.requests()
            .iter()
            .any(support::fake_llm::has_image_parts)
    );
}

async fn wait_for_tool(server: &Harness, project: &str, tool: &str) {
    for _ in 0..3000 {
        let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
        if events.as_array().is_some_and(|events| {
            events
                .iter()
                .any(|event| event["event"] == "tool_started" && event["tool"] == tool)
        }) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the {tool} call never started");
}

#[tokio::test]
async fn stop_ends_a_running_job_and_its_files_join_the_next_version() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::write("app/page.tsx", "v1"),
        Reply::summary("v1"),
        Reply::write("app/extra.tsx", "written before the stop"),
        Reply::terminal("sleep 30"),
    ]);
    let project = server.create("first").await;
    server.settled(&project).await;
    server.follow_up(&project, "more").await;
    wait_for_tool(&server, &project, "terminal").await;

    let (status, body) = server
        .post(&format!("/api/projects/{project}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let done = server
        .settled_within(&project, std::time::Duration::from_secs(10))
        .await;
    let last = done["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "stopped", "{last}");
    assert!(last["fragment"].is_null(), "a stopped job makes no version");
    assert!(
        last["content"].as_str().unwrap().contains("1 file"),
        "{last}"
    );
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let end = events.as_array().unwrap().last().unwrap();
    assert_eq!(end["event"], "finished");
    assert_eq!(end["stopped"], true);

    // Nothing runs now.
    let (status, _) = server
        .post(&format!("/api/projects/{project}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409);
    let (status, _) = server
        .post(
            &format!("/api/projects/{}/cancel", uuid::Uuid::now_v7()),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);

    // The next prompt builds on the last version plus what the stopped job wrote.
    server
        .fake
        .push_all([Reply::write("app/more.tsx", "after"), Reply::summary("v2")]);
    server.follow_up(&project, "go on").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let files = answer["fragment"]["files"].as_object().unwrap();
    assert_eq!(files["app/page.tsx"], "v1");
    assert_eq!(files["app/extra.tsx"], "written before the stop");
    assert_eq!(files["app/more.tsx"], "after");
    let last_request = server.fake.agent_requests().last().unwrap().clone();
    assert!(
        last_request.to_string().contains("app/extra.tsx"),
        "the model is told about the kept file"
    );
}

#[tokio::test]
async fn stop_ends_a_queued_job_before_it_starts() {
    let server = Harness::start_with(|settings| settings.max_jobs = 1).await;
    server.fake.push(Reply::terminal("sleep 30"));
    let busy = server.create("keeps the only worker busy").await;
    wait_for_tool(&server, &busy, "terminal").await;
    let waiting = server.create("waits in the queue").await;
    let (status, _) = server
        .post(&format!("/api/projects/{waiting}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202);
    let done = server
        .settled_within(&waiting, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(done["messages"][1]["type"], "stopped");
    assert_eq!(done["messages"].as_array().unwrap().len(), 2);
    let (status, _) = server
        .post(&format!("/api/projects/{busy}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202);
    server
        .settled_within(&busy, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(
        server.fake.agent_requests().len(),
        1,
        "the stopped queued job never asked the model"
    );
}

#[tokio::test]
async fn versions_are_listed_and_restoring_makes_an_old_one_the_newest() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::write("app/page.tsx", "one"),
        Reply::summary("v1"),
        Reply::tool(
            "createOrUpdateFiles",
            json!({ "files": [
                { "path": "app/page.tsx", "content": "two" },
                { "path": "app/extra.tsx", "content": "only in two" }
            ] }),
        ),
        Reply::summary("v2"),
    ]);
    let project = server.create("first").await;
    server.settled(&project).await;
    server.follow_up(&project, "second").await;
    server.settled(&project).await;

    let (status, versions) = server
        .get(&format!("/api/projects/{project}/versions"))
        .await;
    assert_eq!(status, 200);
    let versions = versions.as_array().unwrap().clone();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["files"], 1);
    assert_eq!(versions[1]["version"], 2);
    assert_eq!(versions[1]["files"], 2);

    let v1 = versions[0]["id"].as_str().unwrap();
    let (status, restored) = server
        .post(
            &format!("/api/projects/{project}/versions/{v1}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{restored}");
    assert_eq!(restored["version"], 3);
    assert_eq!(restored["files"], 1);

    // The sandbox holds exactly v1's files again; v2 is still listed.
    let workspace = server.sandboxes.workspace(project.parse().unwrap());
    assert_eq!(
        std::fs::read_to_string(workspace.join("app/page.tsx")).unwrap(),
        "one"
    );
    assert!(
        !workspace.join("app/extra.tsx").exists(),
        "files the restored version lacks are removed"
    );
    let (_, versions) = server
        .get(&format!("/api/projects/{project}/versions"))
        .await;
    assert_eq!(versions.as_array().unwrap().len(), 3);
    let last = server.last_message(&project).await;
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .contains("Restored version 1"),
        "{last}"
    );
    assert_eq!(last["version"], 3);
    assert_eq!(last["fragment"]["files"]["app/page.tsx"], "one");

    // The next prompt builds on the restored files.
    server
        .fake
        .push_all([Reply::write("app/new.tsx", "new"), Reply::summary("v4")]);
    server.follow_up(&project, "go on").await;
    let answer = server.last_message(&project).await;
    let files = answer["fragment"]["files"].as_object().unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files["app/page.tsx"], "one");

    // Unknown versions are 404; nothing is restored while a job runs.
    let (status, _) = server
        .post(
            &format!(
                "/api/projects/{project}/versions/{}/restore",
                uuid::Uuid::now_v7()
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    server.fake.push(Reply::terminal("sleep 30"));
    server.follow_up(&project, "slow").await;
    wait_for_tool(&server, &project, "terminal").await;
    let (status, body) = server
        .post(
            &format!("/api/projects/{project}/versions/{v1}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    server
        .post(&format!("/api/projects/{project}/cancel"), json!({}))
        .await;
    server.settled(&project).await;
}

#[tokio::test]
async fn an_offline_sandbox_is_described_to_the_model() {
    for offline in [false, true] {
        let server = Harness::start_with(|settings| settings.agent.offline = offline).await;
        server
            .fake
            .push_all([Reply::write("app/page.tsx", "x"), Reply::summary("done")]);
        let project = server.create("offline").await;
        server.settled(&project).await;
        let system = server.fake.agent_requests()[0]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(system.contains("no network access"), offline);
        assert_eq!(
            system.contains("recharts"),
            offline,
            "preinstalled packages listed"
        );
    }
}

/// The value of the sample `name` (with its labels, exactly as exposed) in `/metrics`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_jobs_model_calls_and_tokens_for_prometheus() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() { return null; }\n",
        ),
        Reply::summary("done"),
    ]);
    let project = server.create("a page").await;
    server.settled(&project).await;

    let response = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = response.text().await.unwrap();
    assert_eq!(
        sample(&text, r#"codeflux_jobs_finished_total{outcome="done"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"codeflux_job_duration_seconds_count{outcome="done"}"#
        ),
        1.0
    );
    assert_eq!(sample(&text, r#"codeflux_jobs{state="running"}"#), 0.0);
    assert_eq!(sample(&text, r#"codeflux_jobs{state="queued"}"#), 0.0);
    // Two agent turns, the title and the reply: every call the fake answered is counted.
    let calls = server.fake.requests().len() as f64;
    assert_eq!(
        sample(&text, r#"codeflux_model_calls_total{result="ok"}"#),
        calls
    );
    assert_eq!(
        sample(&text, r#"codeflux_model_tokens_total{kind="prompt"}"#),
        120.0 * calls
    );
    assert_eq!(
        sample(&text, r#"codeflux_model_tokens_total{kind="completion"}"#),
        30.0 * calls
    );
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    const TOKEN: &str = "metrics-test-token-0123456789";
    let server = Harness::start_with(|settings| {
        settings.auth = codeflux::auth::Auth::new(Some(TOKEN.into())).unwrap();
    })
    .await;
    let client = reqwest::Client::new();
    let anonymous = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        401,
        "a scraper gets 401, not the sign-in page"
    );
    let scraper = client
        .get(format!("{}/metrics", server.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(scraper.status(), 200);
    assert!(scraper.text().await.unwrap().contains("codeflux_jobs"));
}

/// The host test sandbox behind the core, reliability, selection and images tests passes
/// the same conformance suite as Docker and E2B, so what those tests see is what a real
/// backend does.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_test_sandbox_passes_the_conformance_suite() {
    use codeflux::sandbox::SandboxProvider;
    let sandboxes = support::host_sandbox::HostSandboxes::new();
    let acquired = sandboxes.acquire(uuid::Uuid::now_v7()).await.unwrap();
    codeflux::sandbox::conformance::all(acquired.sandbox.as_ref()).await;
}
