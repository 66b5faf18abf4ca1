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
    r.register(cover::jobs::close_due_sessions_handler);
    r.register(payments::jobs::run_charge_auto_top_up);
    r.register(payments::jobs::run_apply_stripe_event);
    r.register(payments::jobs::run_charge_session);

    r.schedule(
        "close_due_sessions",
        cover::jobs::CloseDueSessions::for_tick,
    );
    r
}
