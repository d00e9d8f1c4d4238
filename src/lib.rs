//! CodeFlux: a self-hosted AI app builder. A prompt becomes a project, a background job runs
//! the coding agent against an OpenAI-compatible model inside a sandbox, and the result is a
//! live preview plus the generated files.

pub mod sandbox;
