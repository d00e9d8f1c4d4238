//! The model: any OpenAI-compatible chat-completions API with tool calling
//! (OpenRouter, OpenAI, Ollama, vLLM, LM Studio).

mod completion;
mod config;
mod openai;
mod replay;
mod stream;
mod types;

use async_trait::async_trait;

pub use config::{DEFAULT_BASE_URL, DEFAULT_MODEL, LlmConfig, Prices};
pub use openai::OpenAiClient;
pub use replay::{DEMO_MODEL, ReplayLlm};
pub use stream::Partial;
pub use types::*;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("cannot reach the model API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the model API rejected the API key (HTTP {status}): {message}. Set CODEFLUX_LLM_API_KEY (or OPENROUTER_API_KEY)"
    )]
    Unauthorized { status: u16, message: String },
    #[error("the model API is rate limiting us and still was after {attempts} attempts: {message}")]
    RateLimited { attempts: u32, message: String },
    #[error("the model API failed (HTTP {status}) after {attempts} attempts: {message}")]
    Server {
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("the model API refused the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("the model API answered something that is not a chat completion: {0}")]
    BadResponse(String),
}

#[async_trait]
pub trait Llm: Send + Sync {
    /// The model name, for logs and the UI.
    fn model(&self) -> &str;

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Like [`Llm::chat`], streaming the answer where the server can: `on_progress` sees the
    /// answer as it grows. Servers that cannot stream get a plain call.
    async fn chat_streaming(
        &self,
        request: &ChatRequest,
        on_progress: &(dyn for<'p> Fn(Partial<'p>) + Send + Sync),
    ) -> Result<ChatResponse, LlmError> {
        let _ = on_progress;
        self.chat(request).await
    }
}
