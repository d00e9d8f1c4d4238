//! Every shape real model servers were seen to send, replayed from our own fixtures in
//! `tests/fixtures/wire/` as the model's first answer (streamed as `.sse`, whole as `.json`),
//! one test per shape. Each checks that the calls run and that what goes back to the model
//! is well formed: real ids, one tool message per call, no markup or reasoning.

mod support;

use serde_json::Value;
use support::fake_llm::Reply;
use support::harness::Harness;

fn fixture(name: &str) -> Reply {
    let path = format!("{}/tests/fixtures/wire/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    if name.ends_with(".sse") {
        Reply::RawStream(text)
    } else {
        Reply::Raw(serde_json::from_str(&text).unwrap())
    }
}

/// Runs a job whose model answers with `first`, then with a summary.
async fn replay(first: Vec<Reply>) -> (Harness, String, Value) {
    let server = Harness::start().await;
    server.fake.push_all(first);
    server.fake.push(Reply::summary("done"));
    let project = server.create("show me a shape").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    (server, project, answer)
}

/// The conversation as sent with the turn after the first answer.
fn sent_back(server: &Harness) -> Vec<Value> {
    let requests = server.fake.agent_requests();
    assert!(
        requests.len() >= 2,
        "a second turn was asked for: {requests:#?}"
    );
    requests[1]["messages"].as_array().unwrap().clone()
}

/// Checks the first answer's calls as sent back: each has a real, unique id, a tool name and
/// JSON arguments, and is answered by one tool message with its id, holding `outputs[i]`.
fn assert_calls_answered(server: &Harness, outputs: &[&str]) -> Vec<Value> {
    let messages = sent_back(server);
    let assistant = messages
        .iter()
        .find(|message| message["role"] == "assistant")
        .expect("the model's turn is in the history");
    let calls = assistant["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(calls.len(), outputs.len(), "{assistant}");
    let tools: Vec<&Value> = messages
        .iter()
        .filter(|message| message["role"] == "tool")
        .collect();
    assert_eq!(tools.len(), calls.len(), "{messages:#?}");
    let mut ids = std::collections::HashSet::new();
    for ((call, tool), output) in calls.iter().zip(&tools).zip(outputs) {
        let id = call["id"].as_str().unwrap();
        assert!(!id.is_empty() && ids.insert(id.to_string()), "{calls:?}");
        assert_eq!(tool["tool_call_id"], id);
        assert_eq!(call["type"], "function");
        assert!(!call["function"]["name"].as_str().unwrap().is_empty());
        let arguments = call["function"]["arguments"].as_str().unwrap();
        serde_json::from_str::<Value>(arguments)
            .unwrap_or_else(|error| panic!("arguments {arguments:?} are JSON: {error}"));
        let content = tool["content"].as_str().unwrap();
        assert!(content.contains(output), "{output:?} in {content}");
    }
    calls
}

/// Runs a job whose model first answers with `first` (a failure or a broken stream), then runs
/// a command and sums up. Returns the note the retry carried, and every agent request.
async fn retried(first: Reply) -> (String, Vec<Value>) {
    let server = Harness::start().await;
    server.fake.push_all([
        first,
        Reply::terminal("echo after-retry"),
        Reply::summary("done"),
    ]);
    let project = server.create("retry it").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let requests = server.fake.agent_requests();
    let note = requests[1]["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(note["role"], "user");
    (note["content"].as_str().unwrap().to_string(), requests)
}

/// A failure answer with a recorded error body.
fn failure(status: u16, name: &str) -> Reply {
    match fixture(name) {
        Reply::Raw(body) => Reply::RawFail { status, body },
        _ => unreachable!("{name} is a JSON body"),
    }
}

async fn events(server: &Harness, project: &str) -> Vec<Value> {
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    events.as_array().unwrap().clone()
}

#[tokio::test]
async fn parallel_calls_run_in_order_each_answered() {
    for name in ["parallel_calls.json", "parallel_calls.sse"] {
        let (server, _, _) = replay(vec![fixture(name)]).await;
        let calls = assert_calls_answered(&server, &["first-call", "second-call"]);
        assert_eq!(calls[0]["id"], "call_one", "{name}");
        assert_eq!(calls[1]["id"], "call_two", "{name}");
    }
}

#[tokio::test]
async fn a_turn_without_content_runs_its_calls() {
    for name in ["missing_content.json", "missing_content.sse"] {
        let (server, _, _) = replay(vec![fixture(name)]).await;
        assert_calls_answered(&server, &["no-content"]);
    }
}

#[tokio::test]
async fn a_call_without_arguments_is_a_call_with_empty_arguments() {
    for name in ["missing_arguments.json", "missing_arguments.sse"] {
        let (server, _, _) = replay(vec![fixture(name)]).await;
        // `readFiles` needs its list: the model is told so, and the job goes on.
        let calls = assert_calls_answered(&server, &["missing field `files`"]);
        assert_eq!(calls[0]["function"]["arguments"], "{}", "{name}");
        assert_eq!(calls[0]["id"], "toolu_01", "{name}");
    }
}

#[tokio::test]
async fn later_empty_ids_and_names_never_overwrite_real_ones() {
    let (server, _, _) = replay(vec![fixture("empty_ids.sse")]).await;
    let calls = assert_calls_answered(&server, &["kept-id"]);
    assert_eq!(calls[0]["id"], "call_dashscope");
    assert_eq!(calls[0]["function"]["name"], "terminal");
}

#[tokio::test]
async fn call_indexes_that_start_at_one_or_are_absent_make_no_phantom_calls() {
    let (server, _, _) = replay(vec![fixture("index_from_one.sse")]).await;
    let calls = assert_calls_answered(&server, &["index-one"]);
    assert_eq!(calls[0]["id"], "toolu_idx");

    let (server, _, _) = replay(vec![fixture("no_index.sse")]).await;
    assert_calls_answered(&server, &["no-index-a", "no-index-b"]);
}

#[tokio::test]
async fn llama_cpp_flat_calls_without_ids_are_run() {
    for name in ["llamacpp_flat.json", "llamacpp_flat.sse"] {
        let (server, _, _) = replay(vec![fixture(name)]).await;
        let calls = assert_calls_answered(&server, &["flat-call"]);
        assert!(
            calls[0]["id"].as_str().unwrap().starts_with("call_"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn calls_run_whatever_the_finish_reason_says() {
    for label in ["empty", "tool", "stop"] {
        for form in ["json", "sse"] {
            let (server, _, _) = replay(vec![fixture(&format!("finish_{label}.{form}"))]).await;
            assert_calls_answered(&server, &[&format!("finish-{label}")]);
        }
    }
}

#[tokio::test]
async fn usage_counts_in_the_finish_chunk_or_after_it() {
    for name in ["usage_in_finish_chunk.sse", "usage_in_empty_choices.sse"] {
        let server = Harness::start().await;
        server.fake.push(fixture(name));
        let project = server.create("usage").await;
        let answer = server.last_message(&project).await;
        assert_eq!(answer["type"], "result", "{answer}");
        // 1000 from the recorded turn, 120 from each of the title and reply calls.
        assert_eq!(answer["usage"]["prompt_tokens"], 1240, "{name}: {answer}");
    }
}

#[tokio::test]
async fn a_repeated_finish_chunk_runs_the_call_once() {
    let (server, _, _) = replay(vec![fixture("duplicate_finish.sse")]).await;
    let messages = sent_back(&server);
    let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(
        tool["content"].as_str().unwrap().matches("once").count(),
        1,
        "{tool}"
    );
    assert_calls_answered(&server, &["once"]);
}

#[tokio::test]
async fn an_error_at_the_end_of_a_stream_is_retried_with_a_note_to_the_model() {
    let (note, requests) = retried(fixture("error_in_stream.sse")).await;
    assert!(
        note.contains("could not be used") && note.contains("invalid tool call"),
        "{note}"
    );
    // The note was for that retry only; the conversation goes on without it.
    let after = requests[2]["messages"].to_string();
    assert!(!after.contains("could not be used"), "{after}");
    assert!(after.contains("after-retry"));
}

#[tokio::test]
async fn groq_tool_use_failed_is_retried_with_what_the_model_generated() {
    let (note, _) = retried(failure(400, "groq_tool_use_failed.json")).await;
    assert!(note.contains("Failed to call a function"), "{note}");
    assert!(
        note.contains("<function=terminal{\"command\": \"echo groq\"}"),
        "{note}"
    );
}

#[tokio::test]
async fn reasoning_in_every_field_is_folded_and_never_sent_back() {
    for name in [
        "reasoning_field.json",
        "reasoning_field.sse",
        "reasoning_content.json",
        "reasoning_content.sse",
        "think_tags.json",
        "think_tags.sse",
        "harmony.json",
        "harmony.sse",
    ] {
        let (server, project, _) = replay(vec![fixture(name)]).await;
        let output = if name.starts_with("harmony") {
            "harmony-call"
        } else {
            "reasoned"
        };
        assert_calls_answered(&server, &[output]);
        let thoughts: Vec<String> = events(&server, &project)
            .await
            .iter()
            .filter(|event| event["event"] == "model_thinking")
            .map(|event| event["text"].as_str().unwrap().to_string())
            .collect();
        assert!(
            thoughts.iter().any(|text| text.starts_with("Reasoning in")),
            "{name}: {thoughts:?}"
        );
        let history = serde_json::to_string(&sent_back(&server)).unwrap();
        assert!(!history.contains("Reasoning in"), "{name}: {history}");
        assert!(!history.contains("<|"), "{name}: {history}");
        assert!(!history.contains("think>"), "{name}: {history}");
    }
}

#[tokio::test]
async fn an_empty_id_is_made_up_once_and_used_for_the_answer() {
    for name in ["gemini_empty_id.json", "gemini_empty_id.sse"] {
        let (server, _, _) = replay(vec![fixture(name)]).await;
        let calls = assert_calls_answered(&server, &["gemini"]);
        let id = calls[0]["id"].as_str().unwrap();
        assert!(id.starts_with("call_"), "{name}");
        // The same id in every later request.
        for request in &server.fake.agent_requests()[1..] {
            assert!(request.to_string().contains(id), "{name}");
        }
    }
}

#[tokio::test]
async fn xml_calls_written_as_text_are_run() {
    for (name, output) in [
        ("qwen_xml.json", "xml-attribute"),
        ("qwen_xml.sse", "xml-attribute"),
        ("qwen_xml_fenced.json", "xml-element"),
        ("qwen_xml_fenced.sse", "xml-element"),
    ] {
        let (server, _, _) = replay(vec![fixture(name)]).await;
        assert_calls_answered(&server, &[output]);
        let history = serde_json::to_string(&sent_back(&server)).unwrap();
        assert!(!history.contains("<terminal"), "{name}: {history}");
    }
}

#[tokio::test]
async fn leaked_tool_call_markup_is_run_and_never_shown() {
    for name in ["llamacpp_leaked.json", "llamacpp_leaked.sse"] {
        let (server, project, _) = replay(vec![fixture(name)]).await;
        assert_calls_answered(&server, &["leaked-call"]);
        let history = serde_json::to_string(&sent_back(&server)).unwrap();
        assert!(
            history.contains("I'll check the folder."),
            "{name}: {history}"
        );
        assert!(
            !history.contains("<tool_call>") && !history.contains("<function="),
            "{name}: {history}"
        );
        for event in events(&server, &project).await {
            let text = event["text"].as_str().unwrap_or_default();
            assert!(
                !text.contains("<tool_call")
                    && !text.contains("<function")
                    && !text.contains("<parameter"),
                "{name}: shown to people: {event}"
            );
        }
    }
}

#[tokio::test]
async fn ollama_tool_call_parse_errors_are_retried_with_a_note() {
    let (note, _) = retried(failure(500, "ollama_tool_parse_error.json")).await;
    assert!(
        note.contains("could not be used") && note.contains("error parsing tool call"),
        "{note}"
    );
}
