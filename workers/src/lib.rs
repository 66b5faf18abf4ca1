//! The job runtime of `shiftcover work`: the outbox relay, one apalis worker per queue on Redis,
//! and the registry of job handlers (which live in the apps that own their effects).
//!
//! Delivery is at-least-once end to end (Redis may drop or repeat a message, a worker may die
//! mid-job); effects are exactly-once because every attempt first claims its outbox row
//! (`shared::outbox::claim`) and handlers claim their own effects. Retries, backoff and dead
//! letters are kept in PostgreSQL, where ops can see them, not in Redis. Cron schedules
//! ([`cron`]) enqueue their jobs through the same outbox, once per tick across all processes.

pub mod cron;
pub mod registry;
pub mod relay;
pub mod runtime;

pub use registry::{QueuePolicy, Registry, RegistryError};
pub use runtime::{QueuedJob, run};

/// Every job ShiftCover runs, with its queue's policy, and the cron schedules bound to jobs.
pub fn default_registry() -> Registry {
    let mut r = Registry::default();
    r.queue("default", QueuePolicy::default());
    r.queue(
        "notifications",
        QueuePolicy {
            concurrency: 8,
            ..QueuePolicy::default()
        },
    );
    r.register(shared::demo::run_demo_ping);
    r.register(notifications::jobs::deliver_notification);
    r.register(cover::jobs::run_close_due_sessions);
    r.register(payments::jobs::run_charge_auto_top_up);
    r.register(payments::jobs::run_apply_stripe_event);
    r.register(payments::jobs::run_charge_session);
    r.register(payments::jobs::run_enforce_overdraft);
    r.register(payments::jobs::run_schedule_due_auto_top_ups);
    r.register(payments::jobs::run_sweep_payments_limbo);
    r.schedule(
        "payments_limbo_sweep",
        payments::jobs::SweepPaymentsLimbo::for_tick,
    );
    r.schedule(
        "enforce_overdraft",
        payments::jobs::EnforceOverdraft::for_tick,
    );
    r.schedule(
        "auto_top_up_sweep",
        payments::jobs::ScheduleDueAutoTopUps::for_tick,
    );
    // Partner webhooks: an endpoint that fails is retried for three days (the delivery's own
    // deadline), with a backoff that reaches an hour.
    r.queue(
        partners::jobs::QUEUE,
        QueuePolicy {
            concurrency: 8,
            timeout: std::time::Duration::from_secs(30),
            backoff_base: std::time::Duration::from_secs(30),
            backoff_cap: std::time::Duration::from_secs(3600),
        },
    );
    r.register(partners::jobs::deliver_partner_webhook);
    r.register(partners::jobs::run_notify_ended_partner_sessions);
    r.register(partners::jobs::run_flag_stale_links);

    r.queue(finance::jobs::QUEUE, QueuePolicy::default());
    r.register(finance::jobs::run_reconcile_stripe_day);
    r.register(finance::jobs::run_build_monthly_bordereau);
    r.register(finance::jobs::run_send_weekly_statements);
    r.register(finance::exports::run_build_finance_export);
    r.schedule(
        "daily_reconciliation",
        finance::jobs::ReconcileStripeDay::for_tick,
    );
    r.schedule(
        "monthly_bordereau",
        finance::jobs::BuildMonthlyBordereau::for_tick,
    );
    r.schedule(
        "weekly_statements",
        finance::jobs::SendWeeklyStatements::for_tick,
    );

    r.schedule(
        "close_due_sessions",
        cover::jobs::CloseDueSessions::for_tick,
    );
    r.schedule(
        "notify_ended_partner_sessions",
        partners::jobs::NotifyEndedPartnerSessions::for_tick,
    );
    r.schedule(
        "flag_stale_partner_links",
        partners::jobs::FlagStaleLinks::for_tick,
    );
    r
}
