//! What one request may spend: a token budget that stops the run between calls, keeps what
//! was written as a version, skips the title and reply calls once spent, and shows the count
//! in the progress.

mod support;

use support::checks::events_of;
use support::fake_llm::Reply;
use support::harness::Harness;

/// The fake server counts 150 tokens for every call (120 prompt, 30 completion).
const PER_CALL: u64 = 150;

#[tokio::test]
async fn a_request_that_reaches_its_token_budget_stops_and_keeps_its_files_as_a_version() {
    let server =
        Harness::start_with(|settings| settings.agent.token_budget = Some(2 * PER_CALL)).await;
    server.fake.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() { return <main>Half</main>; }\n",
        ),
        Reply::write("lib/data.ts", "export const items = [];\n"),
        Reply::write("lib/never.ts", "never written: the budget is spent\n"),
        Reply::summary("Never reached."),
    ]);
    let project = server.create("build me a large app").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let content = answer["content"].as_str().unwrap();
    assert!(
        content.contains("budget of 300 tokens")
            && content.contains("files it wrote so far are saved"),
        "{content}"
    );
    let files = answer["fragment"]["files"].as_object().unwrap();
    let mut paths: Vec<&str> = files.keys().map(String::as_str).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["app/page.tsx", "lib/data.ts"],
        "what was written is the version"
    );
    assert_eq!(
        answer["usage"]["prompt_tokens"].as_u64().unwrap()
            + answer["usage"]["completion_tokens"].as_u64().unwrap(),
        2 * PER_CALL
    );
    assert_eq!(
        server.fake.requests().len(),
        2,
        "no third turn, no title or reply call"
    );
    assert_eq!(server.fake.remaining(), 2);

    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let turns: Vec<(u64, u64)> = events_of(&events, "model_turn")
        .iter()
        .map(|turn| {
            (
                turn["tokens"].as_u64().unwrap(),
                turn["token_budget"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(turns, [(0, 300), (PER_CALL, 300)], "{events}");
}

#[tokio::test]
async fn a_request_that_spends_its_budget_before_writing_anything_is_told_so() {
    let server = Harness::start_with(|settings| settings.agent.token_budget = Some(100)).await;
    server
        .fake
        .push_all([Reply::terminal("ls"), Reply::summary("Never reached.")]);
    let project = server.create("build me an app").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .contains("budget of 100 tokens (CODEFLUX_REQUEST_TOKEN_BUDGET)"),
        "{answer}"
    );
    assert_eq!(server.fake.requests().len(), 1);
}

#[tokio::test]
async fn each_answer_keeps_its_calls_ids_and_what_they_cost() {
    let server = Harness::start_with(|settings| {
        settings.prices = Some(codeflux::llm::Prices {
            input_per_million: 2.0,
            output_per_million: 10.0,
        })
    })
    .await;
    server.fake.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() { return <main>Hi</main>; }\n",
        ),
        Reply::summary("A page."),
    ]);
    let project = server.create("build me a page").await;
    let answer = server.last_message(&project).await;
    let usage = &answer["usage"];
    let calls = usage["calls"].as_array().unwrap();
    assert_eq!(
        calls.len() as u64,
        usage["model_calls"].as_u64().unwrap(),
        "{usage}"
    );
    for call in calls {
        assert!(
            call["id"].as_str().unwrap().starts_with("chatcmpl-"),
            "{call}"
        );
        assert!(
            call["request_id"].as_str().unwrap().starts_with("req_"),
            "{call}"
        );
    }
    // 120 prompt and 30 completion tokens a call, at $2 and $10 per million.
    let expected = calls.len() as f64 * (120.0 * 2.0 + 30.0 * 10.0) / 1_000_000.0;
    let cost = usage["cost_usd"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-9, "{cost} against {expected}");
    let (_, details) = server.get(&format!("/api/projects/{project}")).await;
    assert!(
        (details["spent"]["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{details}"
    );
    let metrics = support::text_of(&format!("{}/metrics", server.base)).await;
    let line = metrics
        .lines()
        .find(|line| line.starts_with("codeflux_model_cost_usd_total "))
        .unwrap_or_else(|| panic!("{metrics}"));
    let counted: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((counted - expected).abs() < 1e-9, "{line}");
}
