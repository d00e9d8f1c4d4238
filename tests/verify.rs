//! Verify and fix on the real Docker sandbox with the scripted model: after the summary the
//! app is type-checked, its pages are fetched through the dev server, and what fails goes
//! back to the agent until it works, the budget is spent, or the same failure returns.

mod support;

use std::sync::Arc;

use support::checks::{events_of, feedback_turns};
use support::docker_env::{Cleanup, provider, test_config};
use support::fake_llm::{FakeLlm, Reply};
use support::harness::Harness;

async fn checked_server(fake: FakeLlm, fix_attempts: u32) -> (Harness, Cleanup) {
    let (provider, cleanup) = provider(test_config()).await;
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandboxes: Arc<dyn codeflux::sandbox::SandboxProvider> = provider;
    let server = Harness::start_with_provider(fake, sandboxes, preview_listener, move |settings| {
        settings.agent.verify = true;
        settings.agent.fix_attempts = fix_attempts;
    })
    .await;
    (server, cleanup)
}

fn page(body: &str) -> Reply {
    Reply::write(
        "app/page.tsx",
        &format!("export default function Page() {{\n{body}\n}}\n"),
    )
}

const WORKING: &str = "  return <main>It works</main>;";

#[tokio::test(flavor = "multi_thread")]
async fn a_type_error_is_fixed_on_feedback() {
    let fake = FakeLlm::start().await;
    fake.push_all([
        page("  const count: number = \"three\";\n  return <main>{count}</main>;"),
        Reply::summary("v1"),
        page(WORKING),
        Reply::summary("fixed"),
    ]);
    let (server, _cleanup) = checked_server(fake, 3).await;
    let project = server.create("count things").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert_eq!(
        answer["fragment"]["verification"]["status"], "passed",
        "{answer}"
    );
    let feedback = feedback_turns(&server.fake);
    assert_eq!(feedback.len(), 1);
    assert!(
        feedback[0].contains("app/page.tsx(2,") && feedback[0].contains("TS2322"),
        "{}",
        feedback[0]
    );
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let failed = events_of(&events, "check_failed");
    assert_eq!(failed.len(), 1, "{events:#}");
    assert_eq!(failed[0]["fixing"], true);
    assert!(
        failed[0]["summary"]
            .as_str()
            .unwrap()
            .contains("1 type error")
    );
    assert_eq!(events_of(&events, "check_passed").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_that_throws_is_caught_by_fetching_it_and_fixed() {
    let fake = FakeLlm::start().await;
    fake.push_all([
        page("  throw new Error(\"boom-render-check\");"),
        Reply::summary("v1"),
        page(WORKING),
        Reply::summary("fixed"),
    ]);
    let (server, _cleanup) = checked_server(fake, 3).await;
    let project = server.create("a page").await;
    let answer = server.last_message(&project).await;
    assert_eq!(
        answer["fragment"]["verification"]["status"],
        "passed",
        "{answer}\n{:#?}",
        feedback_turns(&server.fake)
    );
    let feedback = feedback_turns(&server.fake);
    assert_eq!(feedback.len(), 1);
    assert!(
        feedback[0].contains("/ answered HTTP 500") && feedback[0].contains("boom-render-check"),
        "{}",
        feedback[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_that_never_works_ends_after_the_budget_with_the_error_shown() {
    let fake = FakeLlm::start().await;
    fake.push_all([
        page("  const count: number = \"three\";\n  return <main>{count}</main>;"),
        Reply::summary("v1"),
        page("  return <main>{missingName}</main>;"),
        Reply::summary("v2"),
        page("  const text = \"a\";\n  return <main>{text.notThere}</main>;"),
        Reply::summary("v3"),
    ]);
    let (server, _cleanup) = checked_server(fake, 2).await;
    let project = server.create("never works").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let verification = &answer["fragment"]["verification"];
    assert_eq!(verification["status"], "failed", "{answer}");
    assert!(
        verification["errors"][0]
            .as_str()
            .unwrap()
            .contains("TS2339"),
        "{verification}"
    );
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .contains("Still failing after 2 fix attempts"),
        "{answer}"
    );
    assert_eq!(feedback_turns(&server.fake).len(), 2);
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let last_check = events_of(&events, "check_failed").pop().unwrap();
    assert_eq!(last_check["fixing"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_failure_twice_stops_early() {
    let fake = FakeLlm::start().await;
    let broken = || page("  const count: number = \"three\";\n  return <main>{count}</main>;");
    fake.push_all([
        broken(),
        Reply::summary("v1"),
        broken(),
        Reply::summary("tried"),
    ]);
    let (server, _cleanup) = checked_server(fake, 3).await;
    let project = server.create("stubborn").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["fragment"]["verification"]["status"], "failed");
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .contains("Still failing after 1 fix attempt"),
        "{answer}"
    );
    assert_eq!(server.fake.remaining(), 0);
    assert_eq!(
        feedback_turns(&server.fake).len(),
        1,
        "no second round for a failure seen before"
    );
}
