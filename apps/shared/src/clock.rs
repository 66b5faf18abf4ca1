//! Time as a dependency. Domain code asks a [`Clock`] for "now" so tests can fix and move time.

use chrono::{DateTime, Duration, Utc};
use std::fmt;
use std::sync::{Arc, Mutex};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until a test moves it.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<Mutex<DateTime<Utc>>>);

impl FixedClock {
    /// A clock fixed at `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A shareable clock handle.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let start = Utc
            .with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
            .single()
            .unwrap();
        let clock = FixedClock::at(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::minutes(61));
        assert_eq!(clock.now(), start + Duration::minutes(61));
        let shared: SharedClock = Arc::new(clock.clone());
        clock.set(start);
        assert_eq!(shared.now(), start);
    }
}
