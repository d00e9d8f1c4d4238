//! Elements selected in the preview and sent with a follow-up: the model gets each one's
//! file, line and the lines around it; the prompt keeps them (conversation, history); bad
//! selections are refused with nothing stored, and the page form keeps its chips.
//! The picking itself runs in Chromium (tests/browser.rs) on the Docker template
//! (tests/docker.rs).

mod support;

use serde_json::{Value, json};
use support::fake_llm::Reply;
use support::harness::Harness;

const PAGE: &str = "import { Button } from \"@/components/ui/button\";

export default function Page() {
  return (
    <main className=\"p-8\">
      <h1>Habits</h1>
      <Button variant=\"outline\">Skip today</Button>
    </main>
  );
}
";

/// The text of the last user message in a model request.
fn last_user_text(request: &Value) -> String {
    let messages = request["messages"].as_array().unwrap();
    let last = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
    last["content"].as_str().unwrap().to_string()
}

async fn project_with_page(server: &Harness) -> String {
    server.fake.push_all([
        Reply::write("app/page.tsx", PAGE),
        Reply::summary("A habit page."),
    ]);
    let project = server.create("a habit page").await;
    server.settled(&project).await;
    project
}

async fn message_count(server: &Harness, project: &str) -> usize {
    let (_, detail) = server.get(&format!("/api/projects/{project}")).await;
    detail["messages"].as_array().unwrap().len()
}

#[tokio::test]
async fn selected_elements_reach_the_model_with_their_lines_and_stay_with_the_prompt() {
    let server = Harness::start().await;
    let project = project_with_page(&server).await;

    server.fake.push_all([
        Reply::write("app/page.tsx", &PAGE.replace("outline", "destructive")),
        Reply::summary("Made it red."),
    ]);
    let (status, sent) = server
        .post(
            &format!("/api/projects/{project}/messages"),
            json!({
                "prompt": "make this red",
                "selected": [
                    "app/page.tsx:7:7:Button",
                    { "file": "components/ui/card.tsx", "line": 1 },
                ],
            }),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["selected"][0]["file"], "app/page.tsx");
    assert_eq!(sent["selected"][0]["line"], 7);
    assert_eq!(sent["selected"][1]["name"], "element");
    server.settled(&project).await;

    let turn = last_user_text(server.fake.agent_requests().last().unwrap());
    assert!(turn.starts_with("make this red"), "{turn}");
    for expected in [
        "1. <Button> in app/page.tsx:7 (column 7)",
        "  5 |     <main className=\"p-8\">",
        "> 7 |       <Button variant=\"outline\">Skip today</Button>",
        // A file the agent never wrote comes from the template.
        "2. <element> in components/ui/card.tsx:1\n```tsx\n> 1 | ",
    ] {
        assert!(
            turn.contains(expected),
            "{expected:?} missing from:\n{turn}"
        );
    }

    // The next request names the earlier selection in its history.
    server.fake.push_all([Reply::summary("Nothing to change.")]);
    server.follow_up(&project, "thanks").await;
    server.settled(&project).await;
    let history = server.fake.agent_requests().last().unwrap().to_string();
    assert!(
        history.contains(
            "[selected in the preview: <Button> in app/page.tsx:7, <element> in components/ui/card.tsx:1]"
        ),
        "{history}"
    );

    // The conversation shows the selection with its prompt.
    let page = support::text_of(&format!("{}/projects/{project}", server.base)).await;
    assert!(
        page.contains("<code>&lt;Button&gt; in app/page.tsx:7</code>"),
        "{page}"
    );
}

#[tokio::test]
async fn bad_selections_are_refused_and_nothing_is_stored() {
    let server = Harness::start().await;
    let project = project_with_page(&server).await;
    let before = message_count(&server, &project).await;
    let path = format!("/api/projects/{project}/messages");

    for (selected, why) in [
        (json!(["../../etc/passwd:1:1:div"]), "inside the app"),
        (json!(["app/page.tsx:seven:1:div"]), "file:line:column:Name"),
        (
            json!([{ "file": "app/page.tsx", "line": 0 }]),
            "starts at 1",
        ),
        (json!(["app/page.tsx:1:1:img onerror=x"]), "JSX tag name"),
        (
            json!(vec!["app/page.tsx:1:1:div"; 11]),
            "at most 10 elements",
        ),
    ] {
        let (status, body) = server
            .post(
                &path,
                json!({ "prompt": "change it", "selected": selected }),
            )
            .await;
        assert_eq!(status, 422, "{selected} was accepted: {body}");
        assert!(body.to_string().contains(why), "{why:?} not in {body}");
    }
    assert_eq!(message_count(&server, &project).await, before);

    // A new project has no preview to select in.
    let (status, body) = server
        .post(
            "/api/projects",
            json!({ "prompt": "an app", "selected": ["app/page.tsx:1:1:div"] }),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    // The page form keeps its chips and what was typed when something else is wrong.
    let form = reqwest::multipart::Form::new()
        .text("prompt", "   ")
        .text("selected", "app/page.tsx:7:7:Button");
    let response = reqwest::Client::new()
        .post(format!("{}/projects/{project}/messages", server.base))
        .header("origin", &server.base)
        .header("hx-request", "true")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body = response.text().await.unwrap();
    assert!(
        body.contains(r#"<input type="hidden" name="selected" value="app/page.tsx:7:7:Button">"#),
        "the chip is kept: {body}"
    );
    let form = reqwest::multipart::Form::new()
        .text("prompt", "paint it")
        .text("selected", "/etc/passwd:1:1:div");
    let response = reqwest::Client::new()
        .post(format!("{}/projects/{project}/messages", server.base))
        .header("origin", &server.base)
        .header("hx-request", "true")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body = response.text().await.unwrap();
    assert!(body.contains("a path inside the app"), "{body}");
    assert!(body.contains(">paint it</textarea>"), "{body}");
    assert_eq!(message_count(&server, &project).await, before);
}
