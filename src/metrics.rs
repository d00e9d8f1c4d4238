//! `/metrics` for Prometheus (OpenMetrics text, through `prometheus-client`): jobs by
//! outcome and duration, jobs queued and running, model calls and tokens, sandboxes running,
//! and preview requests. Counters are recorded where things happen; the gauges are read at
//! scrape time, so they are never stale.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::llm::{ChatRequest, ChatResponse, Llm, LlmError, Partial};
use crate::store::JobStatus;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Outcome {
    done,
    failed,
    cancelled,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    status: &'static str,
}

pub struct Metrics {
    registry: Registry,
    jobs_finished: Family<OutcomeLabels, Counter>,
    job_duration: Family<OutcomeLabels, Histogram>,
    jobs_open: Family<StateLabels, Gauge>,
    model_calls: Family<ResultLabels, Counter>,
    model_tokens: Family<KindLabels, Counter>,
    /// US dollars, where a call's cost is known.
    model_cost: Counter<f64, std::sync::atomic::AtomicU64>,
    sandboxes_running: Gauge,
    sandboxes_warm: Gauge,
    preview_requests: Family<StatusLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("codeflux");
        let jobs_finished = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "jobs_finished",
            "Jobs that ended, by outcome",
            jobs_finished.clone(),
        );
        // From a prompt's arrival to its answer: seconds for a scripted model, minutes for
        // a real one.
        let job_duration = Family::<OutcomeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0])
        });
        registry.register(
            "job_duration_seconds",
            "Time from a prompt's arrival to the end of its job",
            job_duration.clone(),
        );
        let jobs_open = Family::<StateLabels, Gauge>::default();
        registry.register("jobs", "Jobs not finished yet, by state", jobs_open.clone());
        let model_calls = Family::<ResultLabels, Counter>::default();
        registry.register(
            "model_calls",
            "Chat-completion calls to the model, by result",
            model_calls.clone(),
        );
        let model_tokens = Family::<KindLabels, Counter>::default();
        registry.register(
            "model_tokens",
            "Tokens the model reported, by kind",
            model_tokens.clone(),
        );
        let model_cost = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "model_cost_usd",
            "What the model calls cost in US dollars, where the server reported it or prices are set",
            model_cost.clone(),
        );
        let sandboxes_running = Gauge::default();
        registry.register(
            "sandboxes_running",
            "Sandboxes of this installation that are running",
            sandboxes_running.clone(),
        );
        let sandboxes_warm = Gauge::default();
        registry.register(
            "sandboxes_warm",
            "Warm sandboxes ready for new projects",
            sandboxes_warm.clone(),
        );
        let preview_requests = Family::<StatusLabels, Counter>::default();
        registry.register(
            "preview_requests",
            "Requests the preview proxy answered, by status class",
            preview_requests.clone(),
        );
        Self {
            registry,
            jobs_finished,
            job_duration,
            jobs_open,
            model_calls,
            model_tokens,
            model_cost,
            sandboxes_running,
            sandboxes_warm,
            preview_requests,
        }
    }

    /// A job ended with `status` after `seconds`.
    pub fn job_finished(&self, status: JobStatus, seconds: f64) {
        let outcome = match status {
            JobStatus::Done => Outcome::done,
            JobStatus::Cancelled => Outcome::cancelled,
            _ => Outcome::failed,
        };
        let labels = OutcomeLabels { outcome };
        self.jobs_finished.get_or_create(&labels).inc();
        self.job_duration
            .get_or_create(&labels)
            .observe(seconds.max(0.0));
    }

    pub fn preview_answered(&self, status: u16) {
        let status = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.preview_requests
            .get_or_create(&StatusLabels { status })
            .inc();
    }

    fn model_answered(&self, answer: &Result<ChatResponse, LlmError>) {
        let result = if answer.is_ok() { "ok" } else { "error" };
        self.model_calls
            .get_or_create(&ResultLabels { result })
            .inc();
        if let Ok(response) = answer {
            for (kind, tokens) in [
                ("prompt", response.usage.prompt_tokens),
                ("completion", response.usage.completion_tokens),
            ] {
                self.model_tokens
                    .get_or_create(&KindLabels { kind })
                    .inc_by(tokens);
            }
            if let Some(cost) = response.usage.cost_usd {
                self.model_cost.inc_by(cost);
            }
        }
    }

    /// The text exposition, with the gauges set from what is true now.
    pub fn encode(&self, jobs: JobCounts, sandboxes: Option<usize>, warm: usize) -> String {
        let JobCounts { queued, running } = jobs;
        for (state, count) in [("queued", queued), ("running", running)] {
            self.jobs_open
                .get_or_create(&StateLabels { state })
                .set(count as i64);
        }
        if let Some(sandboxes) = sandboxes {
            self.sandboxes_running.set(sandboxes as i64);
        }
        self.sandboxes_warm.set(warm as i64);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Jobs not finished, for the `codeflux_jobs` gauge.
pub struct JobCounts {
    pub queued: usize,
    pub running: usize,
}

/// The model client, counting every call and the tokens it reports.
pub struct MeteredLlm {
    pub inner: Arc<dyn Llm>,
    pub metrics: Arc<Metrics>,
    /// Prices set for a server that does not report costs.
    pub prices: Option<crate::llm::Prices>,
}

impl MeteredLlm {
    /// Counts the answer; gives it a cost from the prices when the server said none.
    fn answered(
        &self,
        mut answer: Result<ChatResponse, LlmError>,
    ) -> Result<ChatResponse, LlmError> {
        if let (Ok(response), Some(prices)) = (&mut answer, &self.prices)
            && response.usage.cost_usd.is_none()
        {
            response.usage.cost_usd = Some(prices.cost(&response.usage));
        }
        self.metrics.model_answered(&answer);
        answer
    }
}

#[async_trait]
impl Llm for MeteredLlm {
    fn model(&self) -> &str {
        self.inner.model()
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.answered(self.inner.chat(request).await)
    }

    async fn chat_streaming(
        &self,
        request: &ChatRequest,
        on_progress: &(dyn for<'p> Fn(Partial<'p>) + Send + Sync),
    ) -> Result<ChatResponse, LlmError> {
        self.answered(self.inner.chat_streaming(request, on_progress).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_with_its_labels() {
        let metrics = Metrics::new();
        metrics.job_finished(JobStatus::Done, 12.0);
        metrics.job_finished(JobStatus::Failed, 3.0);
        metrics.preview_answered(200);
        metrics.preview_answered(502);
        metrics.model_answered(&Err(LlmError::BadResponse("x".into())));
        let text = metrics.encode(
            JobCounts {
                queued: 3,
                running: 1,
            },
            Some(2),
            1,
        );
        for line in [
            r#"codeflux_jobs_finished_total{outcome="done"} 1"#,
            r#"codeflux_jobs_finished_total{outcome="failed"} 1"#,
            r#"codeflux_job_duration_seconds_count{outcome="done"} 1"#,
            r#"codeflux_job_duration_seconds_sum{outcome="done"} 12.0"#,
            r#"codeflux_jobs{state="queued"} 3"#,
            r#"codeflux_jobs{state="running"} 1"#,
            r#"codeflux_model_calls_total{result="error"} 1"#,
            "codeflux_sandboxes_running 2",
            "codeflux_sandboxes_warm 1",
            r#"codeflux_preview_requests_total{status="2xx"} 1"#,
            r#"codeflux_preview_requests_total{status="5xx"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
