//! Prometheus metrics of the API process: request counts and latencies by route, database pool
//! usage, and outbox job counts by status (read at scrape time).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use shared::core::Core;
use std::time::Duration;

/// The API process's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    jobs: IntGaugeVec,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new_custom(Some("shiftcover".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["method", "route"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )?;
        let jobs = IntGaugeVec::new(
            Opts::new("outbox_jobs", "Outbox jobs by status"),
            &["status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            pool,
            jobs,
        })
    }

    /// Records one finished request. `route` is the matched pattern, never the raw path, so that
    /// ids in paths cannot explode the number of series.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// Refreshes the gauges and renders the text exposition format.
    pub async fn render(&self, core: &Core) -> String {
        let status = core.pool.status();
        for (state, value) in [
            ("max", status.max_size),
            ("open", status.size),
            ("idle", status.available),
            ("waiting", status.waiting),
        ] {
            self.pool
                .with_label_values(&[state])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        let counts = tokio::time::timeout(Duration::from_secs(1), async {
            let mut conn = core.pool.get().await.ok()?;
            shared::outbox::counts_by_status(&mut conn).await.ok()
        })
        .await
        .ok()
        .flatten();
        if let Some(counts) = counts {
            self.jobs.reset();
            for (status, n) in counts {
                self.jobs.with_label_values(&[&status]).set(n);
            }
        }
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
