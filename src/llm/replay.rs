//! `serve --demo`: a stand-in for the model that replays a recorded transcript bundled in
//! the binary, so a newcomer sees a real build in a real sandbox without an API key. The
//! tools run for real; only the model's answers are canned, and the UI says so.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{ChatMessage, ChatRequest, ChatResponse, ChatRole, Llm, LlmError};
use crate::store::TokenUsage;

/// What the demo calls its model in the UI and the logs.
pub const DEMO_MODEL: &str = "recorded demo (replay)";

/// The answer to anything the recording does not cover (follow-ups, fix requests), as the
/// agent's closing summary so the job ends there.
const BEYOND_THE_RECORDING: &str = "<task_summary>\nThis is the demo: it replays one recorded build and cannot act on new requests. To change the app, start CodeFlux without `--demo` and with a model (see `codeflux doctor`).\n</task_summary>";

#[derive(Deserialize)]
struct Transcript {
    turns: Vec<ChatMessage>,
    title: String,
}

pub struct ReplayLlm {
    turns: Vec<ChatMessage>,
    title: String,
    /// A pause before each answer, so the build can be watched as it happens.
    pace: Duration,
}

impl ReplayLlm {
    /// The bundled habit-tracker build.
    pub fn demo() -> Self {
        let transcript: Transcript = serde_json::from_str(include_str!("demo-transcript.json"))
            .expect("the bundled demo transcript is valid");
        Self {
            turns: transcript.turns,
            title: transcript.title,
            pace: Duration::from_millis(800),
        }
    }
}

#[async_trait]
impl Llm for ReplayLlm {
    fn model(&self) -> &str {
        DEMO_MODEL
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        tokio::time::sleep(self.pace).await;
        // Without tools it is a side request: the app's title, or the reply to the user,
        // which is the summary it is given.
        if request.tools.is_empty() {
            let text = match request.messages.as_slice() {
                [system, _] if system.text_content() == crate::agent::prompt::TITLE_PROMPT => {
                    self.title.clone()
                }
                [.., last] => last.text_content().to_string(),
                [] => String::new(),
            };
            return Ok(ChatResponse {
                message: ChatMessage::assistant(text),
                usage: TokenUsage::default(),
                finish_reason: Some("stop".to_string()),
            });
        }
        let count = |role| {
            request
                .messages
                .iter()
                .filter(|message| message.role == role)
                .count()
        };
        // The recording answers one prompt from the start; any later user message is a
        // follow-up or the app check's feedback, which it cannot answer.
        let answered = count(ChatRole::Assistant);
        let message = match self.turns.get(answered) {
            Some(turn) if count(ChatRole::User) == 1 => turn.clone(),
            _ => ChatMessage::assistant(BEYOND_THE_RECORDING),
        };
        let finish_reason = if message.tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        Ok(ChatResponse {
            message,
            usage: TokenUsage::default(),
            finish_reason: Some(finish_reason.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(messages: Vec<ChatMessage>) -> ChatRequest {
        ChatRequest {
            messages,
            tools: crate::agent::tools::specs(),
            temperature: 0.0,
        }
    }

    #[tokio::test]
    async fn replays_the_turns_in_order_and_declines_anything_else() {
        let replay = ReplayLlm {
            pace: Duration::ZERO,
            ..ReplayLlm::demo()
        };
        let mut messages = vec![
            ChatMessage::system("system"),
            ChatMessage::user("anything at all"),
        ];
        for (index, turn) in replay.turns.iter().enumerate() {
            let answer = replay.chat(&request(messages.clone())).await.unwrap();
            assert_eq!(answer.message, *turn, "turn {index}");
            messages.push(answer.message);
        }
        assert!(replay.turns.len() >= 4, "a multi-step build");
        assert!(
            replay.turns[..replay.turns.len() - 1]
                .iter()
                .all(|turn| !turn.tool_calls.is_empty())
        );
        let last = replay.chat(&request(messages.clone())).await.unwrap();
        assert!(
            last.message
                .text_content()
                .contains("replays one recorded build")
        );

        messages.push(ChatMessage::user("make it blue"));
        let follow_up = replay.chat(&request(messages)).await.unwrap();
        assert!(follow_up.message.tool_calls.is_empty());
        assert!(
            follow_up
                .message
                .text_content()
                .contains("cannot act on new requests")
        );

        let title = replay
            .chat(&ChatRequest {
                messages: vec![
                    ChatMessage::system(crate::agent::prompt::TITLE_PROMPT),
                    ChatMessage::user("summary"),
                ],
                tools: Vec::new(),
                temperature: 0.3,
            })
            .await
            .unwrap();
        assert_eq!(title.message.text_content(), "Habit Tracker");
    }
}
