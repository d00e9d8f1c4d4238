//! Stand-ins for what the test machine cannot reach, shared by the integration tests.
#![allow(dead_code)]

pub mod docker_env;
pub mod fake_e2b;
pub mod fake_llm;
pub mod harness;
pub mod host_sandbox;
