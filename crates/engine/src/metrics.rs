//! What the request core counts, for the Prometheus endpoint (`/metrics`, outside the FHIR
//! base): requests by interaction and status, their latency, operations by code, and the
//! state of the store, the jobs and the lanes, read when scraped. Measured once, in
//! [`Engine::handle`], so that every way in is counted the same.
//!
//! Label values come from closed sets (interaction names, status codes, the operations in
//! the catalog), so that no client can grow the series without bound.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use flint_store::{JobState, Store};

use crate::Engine;

/// The content type of [`Engine::metrics_text`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    interaction: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Interaction {
    interaction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationOutcome {
    operation: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

type Latency<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 100 µs to about 26 s.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.5, 14,
    ))
}

/// The request core's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<Outcome, Counter>,
    errors: Family<Interaction, Counter>,
    latency: Latency<Interaction>,
    operations: Family<OperationOutcome, Counter>,
    operation_errors: Family<Operation, Counter>,
    operation_latency: Latency<Operation>,
    last_transaction: Gauge,
    jobs: Family<State, Gauge>,
    jobs_here: Gauge,
    quick_in_flight: Gauge,
    costly_in_use: Gauge,
    requests_in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flint");
        let m = Metrics {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            operations: Family::default(),
            operation_errors: Family::default(),
            operation_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            last_transaction: Gauge::default(),
            jobs: Family::default(),
            jobs_here: Gauge::default(),
            quick_in_flight: Gauge::default(),
            costly_in_use: Gauge::default(),
            requests_in_flight: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "FHIR requests answered, by interaction and HTTP status",
            m.requests.clone(),
        );
        registry.register(
            "request_errors",
            "FHIR requests answered with a 4xx or 5xx status, by interaction",
            m.errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request reaching the core to its answer, by interaction",
            m.latency.clone(),
        );
        registry.register(
            "operation_requests",
            "Operation invocations answered, by operation code and HTTP status",
            m.operations.clone(),
        );
        registry.register(
            "operation_errors",
            "Operation invocations answered with a 4xx or 5xx status, by operation code",
            m.operation_errors.clone(),
        );
        registry.register(
            "operation_duration_seconds",
            "Time from an invocation reaching the core to its answer, by operation code",
            m.operation_latency.clone(),
        );
        registry.register(
            "store_last_transaction",
            "The number of the store's last committed transaction",
            m.last_transaction.clone(),
        );
        registry.register(
            "jobs",
            "Background jobs (asynchronous requests) in the store, by state",
            m.jobs.clone(),
        );
        registry.register(
            "jobs_running_here",
            "Background jobs running on this node",
            m.jobs_here.clone(),
        );
        registry.register(
            "lane_quick_in_flight",
            "Quick requests (reads, single writes) running now",
            m.quick_in_flight.clone(),
        );
        registry.register(
            "lane_costly_in_use",
            "Costly requests (searches, history, Bundles, operations) running or queued now",
            m.costly_in_use.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests in the lanes now, of every kind",
            m.requests_in_flight.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub(crate) fn observe(
        &self,
        interaction: &'static str,
        operation: Option<&str>,
        status: u16,
        took: Duration,
    ) {
        let seconds = took.as_secs_f64();
        self.requests
            .get_or_create(&Outcome {
                interaction,
                status,
            })
            .inc();
        let key = Interaction { interaction };
        if status >= 400 {
            self.errors.get_or_create(&key).inc();
        }
        self.latency.get_or_create(&key).observe(seconds);
        if let Some(code) = operation {
            let operation = code.to_string();
            self.operations
                .get_or_create(&OperationOutcome {
                    operation: operation.clone(),
                    status,
                })
                .inc();
            let key = Operation { operation };
            if status >= 400 {
                self.operation_errors.get_or_create(&key).inc();
            }
            self.operation_latency.get_or_create(&key).observe(seconds);
        }
    }
}

impl<S: Store> Engine<S> {
    /// The metrics in the Prometheus (OpenMetrics) text format, with the gauges read now.
    pub fn metrics_text(&self) -> String {
        let m = &self.metrics;
        if let Ok(tx) = self.store().last_tx() {
            m.last_transaction
                .set(i64::try_from(tx).unwrap_or(i64::MAX));
        }
        for state in [
            JobState::Running,
            JobState::Done,
            JobState::Failed,
            JobState::Cancelled,
        ] {
            if let Ok(n) = self.store().count_jobs(state) {
                m.jobs
                    .get_or_create(&State {
                        state: state.as_str(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        m.jobs_here.set(self.running.lock().len() as i64);
        let (quick, costly) = self.lanes.in_use();
        m.quick_in_flight.set(quick as i64);
        m.costly_in_use.set(costly as i64);
        m.requests_in_flight.set(self.in_flight.lock().len() as i64);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &m.registry);
        text
    }
}
