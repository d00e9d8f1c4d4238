//! CodeFlux: a self-hosted AI app builder. A prompt becomes a project, a background job runs
//! the coding agent against an OpenAI-compatible model inside a sandbox, and the result is a
//! live preview plus the generated files.

pub mod agent;
pub mod auth;
pub mod cli;
pub mod data;
pub mod diff;
pub mod events;
pub mod git;
pub mod hosts;
pub mod import;
pub mod jobs;
pub mod llm;
pub mod metrics;
pub mod packages;
pub mod preview;
pub mod publish;
pub mod quick_edit;
pub mod sandbox;
pub mod server;
pub mod store;
pub mod ui;
pub mod web;
