//! What real models send, each shape from a scripted reply: streamed answers (and servers that
//! cannot stream), several tool calls in one turn,
//! arguments as objects, in code fences or with trailing chatter, reasoning in `<think>`
//! blocks and `reasoning_content` fields, tool calls written as text, other tool spellings.

mod support;

use serde_json::{Value, json};
use support::fake_llm::Reply;
use support::harness::Harness;

fn raw(message: Value, finish_reason: &str) -> Reply {
    Reply::Raw(json!({
        "id": "chatcmpl-raw", "object": "chat.completion", "created": 0, "model": "fake-model",
        "choices": [{ "index": 0, "message": message, "finish_reason": finish_reason }],
        "usage": { "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2 }
    }))
}

fn call(id: &str, name: &str, arguments: Value) -> Value {
    json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } })
}

fn files_of(answer: &Value) -> serde_json::Map<String, Value> {
    answer["fragment"]["files"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn several_calls_in_one_turn_run_in_order_each_with_its_own_answer() {
    let server = Harness::start().await;
    server.fake.push_all([
        raw(
            json!({ "role": "assistant", "content": null, "tool_calls": [
                call("a", "createOrUpdateFiles", json!(r#"{"files":[{"path":"one.txt","content":"1"}]}"#)),
                call("b", "terminal", json!(r#"{"command":"cat one.txt"}"#)),
                call("c", "readFiles", json!(r#"{"files":["one.txt"]}"#)),
            ] }),
            "tool_calls",
        ),
        Reply::summary("done"),
    ]);
    let project = server.create("three calls").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let second = &server.fake.agent_requests()[1];
    let tool_messages: Vec<&Value> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "tool")
        .collect();
    let ids: Vec<&str> = tool_messages
        .iter()
        .map(|message| message["tool_call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(
        tool_messages[1]["content"]
            .as_str()
            .unwrap()
            .contains("stdout:\n1")
    );
}

#[tokio::test]
async fn arguments_as_objects_in_fences_or_with_chatter_are_understood() {
    let server = Harness::start().await;
    server.fake.push_all([
        raw(
            json!({ "role": "assistant", "tool_calls": [
                call("a", "createOrUpdateFiles", json!({ "files": [{ "path": "object.txt", "content": "o" }] })),
                call("b", "createOrUpdateFiles", json!("```json\n{\"files\": [{\"path\": \"fenced.txt\", \"content\": \"f\"}]}\n```")),
                call("c", "createOrUpdateFiles", json!("{\"files\": [{\"path\": \"chatty.txt\", \"content\": \"c\"}]} Now I will continue.")),
            ] }),
            "tool_calls",
        ),
        Reply::summary("done"),
    ]);
    let project = server.create("odd arguments").await;
    let answer = server.last_message(&project).await;
    let files = files_of(&answer);
    for name in ["object.txt", "fenced.txt", "chatty.txt"] {
        assert!(files.contains_key(name), "{name} in {files:?}");
    }
}

#[tokio::test]
async fn reasoning_is_kept_out_of_the_reply_and_shown_folded() {
    let server = Harness::start().await;
    server.fake.push_all([
        raw(
            json!({ "role": "assistant", "content": "<think>I should write a page first.</think>",
                    "reasoning_content": "Deep thoughts about layout.",
                    "tool_calls": [call("a", "createOrUpdateFiles", json!(r#"{"files":[{"path":"app/page.tsx","content":"x"}]}"#))] }),
            "tool_calls",
        ),
        raw(
            json!({ "role": "assistant", "content": "<think>All done, summarise.</think>\n<task_summary>A page.</task_summary>" }),
            "stop",
        ),
    ]);
    let project = server.create("think first").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let events = events.as_array().unwrap();
    let thoughts: Vec<&str> = events
        .iter()
        .filter(|event| event["event"] == "model_thinking")
        .map(|event| event["text"].as_str().unwrap())
        .collect();
    assert_eq!(thoughts.len(), 2, "{events:?}");
    assert!(thoughts[0].contains("Deep thoughts") && thoughts[0].contains("write a page first"));
    let summary = events
        .iter()
        .find(|event| event["event"] == "summary")
        .unwrap();
    assert_eq!(summary["text"], "A page.");
    // Reasoning is never sent back to the model.
    let second = server.fake.agent_requests()[1].to_string();
    assert!(!second.contains("write a page first") && !second.contains("Deep thoughts"));
    assert!(
        !answer["content"]
            .as_str()
            .unwrap()
            .contains("All done, summarise")
    );
}

#[tokio::test]
async fn tool_calls_written_as_text_are_run() {
    let server = Harness::start().await;
    server.fake.push_all([
        raw(
            json!({ "role": "assistant", "content": "I will create the page.\n<tool_call>\n{\"name\": \"create_or_update_files\", \"arguments\": {\"files\": [{\"path\": \"app/page.tsx\", \"content\": \"from text\"}]}}\n</tool_call>" }),
            "stop",
        ),
        raw(
            json!({ "role": "assistant", "content": "```json\n{\"name\": \"Terminal\", \"arguments\": {\"command\": \"cat app/page.tsx\"}}\n```" }),
            "stop",
        ),
        Reply::summary("done"),
    ]);
    let project = server.create("no native tools").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert_eq!(files_of(&answer)["app/page.tsx"], "from text");
    let third = &server.fake.agent_requests()[2];
    let last_tool = third["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|message| message["role"] == "tool")
        .unwrap();
    assert!(last_tool["content"].as_str().unwrap().contains("from text"));
    let keep_going = third.to_string().matches("Keep going").count();
    assert_eq!(keep_going, 0, "recognised calls are not nudged");
}

#[tokio::test]
async fn tool_names_in_other_spellings_are_run() {
    let server = Harness::start().await;
    server.fake.push_all([
        raw(
            json!({ "role": "assistant", "tool_calls": [
                call("a", "create_or_update_files", json!(r#"{"files":[{"path":"snake.txt","content":"s"}]}"#)),
                call("b", "ReadFiles", json!(r#"{"files":["snake.txt"]}"#)),
            ] }),
            "tool_calls",
        ),
        Reply::summary("done"),
    ]);
    let project = server.create("snake case").await;
    let answer = server.last_message(&project).await;
    assert!(files_of(&answer).contains_key("snake.txt"), "{answer}");
    let second = server.fake.agent_requests()[1].to_string();
    assert!(!second.contains("no tool named"), "{second}");
}

// --- streaming ---

#[tokio::test]
async fn answers_stream_by_default_and_usage_is_still_recorded() {
    let server = Harness::start().await;
    server
        .fake
        .push_all([Reply::write("app/page.tsx", "x"), Reply::summary("done")]);
    let project = server.create("stream it").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    for request in server.fake.agent_requests() {
        assert_eq!(request["stream"], true);
        assert_eq!(request["stream_options"]["include_usage"], true);
    }
    // Two streamed agent turns plus the title and reply calls, each with its usage.
    assert_eq!(answer["usage"]["model_calls"], 4);
    assert_eq!(answer["usage"]["prompt_tokens"], 480);
}

#[tokio::test]
async fn the_file_being_written_streams_into_progress_and_a_late_viewer_sees_it() {
    let server = Harness::start().await;
    server
        .fake
        .set_chunk_delay(std::time::Duration::from_millis(25));
    let code: String = (0..60)
        .map(|line| format!("  <li>line {line}</li>\n"))
        .collect();
    server
        .fake
        .push_all([Reply::write("app/page.tsx", &code), Reply::summary("done")]);
    let project = server.create("watch the code").await;

    // A viewer that arrives while the file is being written sees the code so far.
    let mut late_viewer = None;
    for _ in 0..500 {
        let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
        if events
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["event"] == "model_streaming" && event["code"].is_string())
        {
            let url = format!(
                "{}/projects/{project}/ws",
                server.base.replace("http", "ws")
            );
            late_viewer = Some(tokio_tungstenite::connect_async(url).await.unwrap().0);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut late_viewer = late_viewer.expect("the file's code streamed into progress");
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        use futures::StreamExt;
        loop {
            let message = late_viewer.next().await.unwrap().unwrap();
            if let Ok(text) = message.to_text()
                && text.contains("id=\"live-output\"")
                && !text.contains("hidden></div>")
            {
                return text.to_string();
            }
        }
    })
    .await
    .expect("the late viewer is sent the live output");
    assert!(
        first.contains("Writing <code>app/page.tsx</code>") && first.contains("line 1"),
        "{first}"
    );

    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result");
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let snapshots: Vec<usize> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event"] == "model_streaming" && event["file"] == "app/page.tsx")
        .map(|event| event["code"].as_str().unwrap().len())
        .collect();
    assert!(
        snapshots.len() >= 3,
        "{snapshots:?} {:#?}",
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|event| format!(
                "{} {} {}",
                event["at"],
                event["event"],
                event["code"].as_str().map_or(0, str::len)
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        snapshots.windows(2).all(|pair| pair[0] <= pair[1])
            && snapshots[0] < snapshots[snapshots.len() - 1],
        "the code grows: {snapshots:?}"
    );
}

#[tokio::test]
async fn servers_that_cannot_stream_get_plain_calls() {
    let server = Harness::start().await;
    server.fake.refuse_streaming();
    server
        .fake
        .push_all([Reply::write("app/page.tsx", "x"), Reply::summary("done")]);
    let project = server.create("no streaming here").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let requests = server.fake.agent_requests();
    assert_eq!(requests[0]["stream"], true, "streaming is tried first");
    assert!(
        requests[1..]
            .iter()
            .all(|request| request.get("stream").is_none()),
        "then plain calls only"
    );
}

#[tokio::test]
async fn a_stream_broken_midway_is_retried() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::DropMidBody,
        Reply::write("app/page.tsx", "x"),
        Reply::summary("done"),
    ]);
    let project = server.create("flaky stream").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert_eq!(server.fake.agent_requests().len(), 3);
    assert!(
        server
            .fake
            .agent_requests()
            .iter()
            .all(|request| request["stream"] == true)
    );
}
