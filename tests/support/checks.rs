//! Reading what a job's check did: its progress events, and the failed-check turns the
//! agent was sent.

use serde_json::Value;

use super::fake_llm::FakeLlm;

/// The events of one kind (`check_failed`, `browser_checked`, …) in a project's events.
pub fn events_of(events: &Value, kind: &str) -> Vec<Value> {
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event"] == kind)
        .cloned()
        .collect()
}

/// The user turns that reported a failed check, in order.
pub fn feedback_turns(fake: &FakeLlm) -> Vec<String> {
    let last = fake.agent_requests().last().cloned().unwrap();
    last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "user")
        .filter_map(|message| message["content"].as_str())
        .filter(|content| content.starts_with("The app does not work yet"))
        .map(str::to_owned)
        .collect()
}
