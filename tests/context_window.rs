//! A model with a small context window, refusing longer requests as OpenAI does
//! (`context_length_exceeded`): older traffic is cut and the turn is tried again, so a build
//! finishes inside the window; a request that cannot fit ends with a message that says so.

mod support;

use support::checks::events_of;
use support::fake_llm::Reply;
use support::harness::Harness;

/// The bytes of messages a new project's first request sends (system prompt and request).
async fn first_request_bytes(server: &Harness) -> usize {
    server
        .fake
        .push_all([Reply::write("app/page.tsx", "x"), Reply::summary("Probe.")]);
    let probe = server.create("probe").await;
    server.last_message(&probe).await;
    let bytes = server.fake.agent_requests()[0]["messages"]
        .to_string()
        .len();
    server.fake.clear();
    bytes
}

#[tokio::test]
async fn older_traffic_is_cut_when_the_model_says_the_conversation_is_too_long() {
    let server = Harness::start().await;
    let base = first_request_bytes(&server).await;
    let big = format!("export const data = \"{}\";\n", "a".repeat(8000));
    let small = format!("export const more = \"{}\";\n", "b".repeat(1500));
    server.fake.set_window(base + 9_000);
    server.fake.push_all([
        Reply::write("lib/data.ts", &big),
        Reply::write("lib/more.ts", &small),
        Reply::summary("Wrote the data."),
    ]);
    let project = server.create("build me a data app").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let files = &answer["fragment"]["files"];
    assert_eq!(
        files["lib/data.ts"],
        big.as_str(),
        "the file itself is whole"
    );
    assert_eq!(files["lib/more.ts"], small.as_str());
    assert_eq!(
        server.fake.refused_as_too_long(),
        2,
        "two refusals, then it fit"
    );
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let compacted = events_of(&events, "compacted");
    assert_eq!(compacted.len(), 2, "{events}");
    assert!(
        compacted[1]["saved_bytes"].as_u64().unwrap() > 7_000,
        "{compacted:?}"
    );
    let last = server.fake.agent_requests().last().unwrap()["messages"].to_string();
    assert!(
        !last.contains(&"a".repeat(8000)),
        "the old write's contents are gone"
    );
    assert!(last.contains("already written"), "and said: {last}");
    assert!(last.contains(&"b".repeat(1500)), "the newest turn is whole");
}

#[tokio::test]
async fn a_request_that_cannot_fit_ends_with_a_message_naming_the_window() {
    let server = Harness::start().await;
    let base = first_request_bytes(&server).await;
    server.fake.set_window(base + 200);
    server.fake.push_all([Reply::summary("Never reached.")]);
    let project = server
        .create(&format!("build me {}", "a very long request ".repeat(60)))
        .await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error", "{answer}");
    let content = answer["content"].as_str().unwrap();
    assert!(
        content.contains("no longer fits the model") && content.contains("context window"),
        "{content}"
    );
    assert!(
        content.contains("maximum context length"),
        "the server's words: {content}"
    );
}
