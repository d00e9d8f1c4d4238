//! Reliability under load and abuse: many writers at once, bad input, model faults, shutdown.
//! Everything here runs in-process against the scripted model and the host test sandbox.

mod support;

use std::time::Duration;

use serde_json::json;
use support::harness::Harness;

/// 8 clients × 400 creates at once: every write answers, and the queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_all_answer_and_every_job_ends() {
    let server = Harness::start_with(|settings| settings.max_jobs = 4).await;
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let http = reqwest::Client::new();
            let url = format!("{}/api/projects", server.base);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..400 {
                    let response = http
                        .post(&url)
                        .json(&json!({ "prompt": format!("app {client}-{n}") }))
                        .send()
                        .await
                        .expect("the server answers");
                    assert_eq!(response.status(), 201, "create {client}-{n}");
                    let body: serde_json::Value = response.json().await.unwrap();
                    ids.push(body["id"].as_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();
    let burst = tokio::time::timeout(Duration::from_secs(300), futures::future::join_all(clients))
        .await
        .expect("3,200 concurrent creates finished instead of wedging");
    let ids: Vec<String> = burst.into_iter().flat_map(Result::unwrap).collect();
    assert_eq!(ids.len(), 3200);

    // A create after the burst still answers.
    let last = server.create("one more after the burst").await;

    // The fake model has no script, so every job ends quickly with an error message; what
    // matters is that each one ends.
    for id in ids.iter().chain([&last]) {
        let project = server.settled(id).await;
        let messages = project["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{project}");
        assert_eq!(messages[1]["role"], "assistant");
    }
}
