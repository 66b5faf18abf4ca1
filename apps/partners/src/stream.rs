//! Working periods from a driver's ordered shift events: the pure rule that turns a partner's
//! event stream into cover sessions.
//!
//! - Work starts at the first `job_accepted` (or at `online`, for partners whose cover starts
//!   when the driver goes online).
//! - Work stops at `offline`, or at the `job_completed` that leaves no accepted job open (for
//!   online-start partners, only at `offline` while the driver is online).
//! - A period ends the gap rule plus the tail cover after work stopped; work that resumes before
//!   then continues the same period (so periods never overlap, and a short break does not cost
//!   a second minimum charge).
//! - A period whose work has not stopped is open.
//!
//! Events are taken in `(occurred_at, kind)` order, with kinds at the same instant in the order
//! online, job accepted, job completed, offline; callers break remaining ties by event id. The
//! result depends only on the set of events, never on the order they arrived in.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a partner reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShiftEventKind {
    /// The driver is available for work.
    Online,
    /// The driver took a job.
    JobAccepted,
    /// The driver finished a job.
    JobCompleted,
    /// The driver stopped working.
    Offline,
}

impl ShiftEventKind {
    /// Every kind, in their order at one instant.
    pub const ALL: [ShiftEventKind; 4] = [
        ShiftEventKind::Online,
        ShiftEventKind::JobAccepted,
        ShiftEventKind::JobCompleted,
        ShiftEventKind::Offline,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShiftEventKind::Online => "online",
            ShiftEventKind::JobAccepted => "job_accepted",
            ShiftEventKind::JobCompleted => "job_completed",
            ShiftEventKind::Offline => "offline",
        }
    }
}

impl fmt::Display for ShiftEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ShiftEventKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ShiftEventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown shift event kind {s:?}"))
    }
}

/// Which event starts cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CoverStartsOn {
    /// The first accepted job (the default): waiting for work is not covered.
    #[default]
    JobAccepted,
    /// Going online.
    Online,
}

impl CoverStartsOn {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CoverStartsOn::JobAccepted => "job_accepted",
            CoverStartsOn::Online => "online",
        }
    }

    pub(crate) fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "job_accepted" => Ok(CoverStartsOn::JobAccepted),
            "online" => Ok(CoverStartsOn::Online),
            other => Err(anyhow::anyhow!("unknown cover start rule {other:?}")),
        }
    }
}

/// The rules a stream is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRules {
    /// Which event starts cover.
    pub starts_on: CoverStartsOn,
    /// The gap rule: how long after work stops a period ends, unless work resumes.
    pub gap: Duration,
    /// Tail cover added after the gap.
    pub tail: Duration,
}

/// One period of work, and so of cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkPeriod {
    /// When cover starts.
    pub start: DateTime<Utc>,
    /// When work stopped, if it has.
    pub stopped_at: Option<DateTime<Utc>>,
    /// When cover ends (`stopped_at` + gap + tail); `None` while work goes on.
    pub end: Option<DateTime<Utc>>,
}

impl WorkPeriod {
    /// Whether `at` falls inside the period (an open period has no end).
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        at >= self.start && self.end.is_none_or(|end| at <= end)
    }
}

/// The working periods of a stream of `(occurred_at, kind)`, in order (see the module docs).
/// The input need not be sorted.
pub fn work_periods(
    events: &[(DateTime<Utc>, ShiftEventKind)],
    rules: StreamRules,
) -> Vec<WorkPeriod> {
    let mut sorted = events.to_vec();
    sorted.sort();
    let window = rules.gap + rules.tail;
    let mut out = Vec::new();
    let mut start: Option<DateTime<Utc>> = None;
    let mut stopped_at: Option<DateTime<Utc>> = None;
    let mut open_jobs: u32 = 0;
    let mut online = false;
    for (at, kind) in sorted {
        if let (Some(s), Some(stop)) = (start, stopped_at)
            && at > stop + window
        {
            out.push(WorkPeriod {
                start: s,
                stopped_at: Some(stop),
                end: Some(stop + window),
            });
            start = None;
            stopped_at = None;
        }
        match kind {
            ShiftEventKind::Online => {
                online = true;
                if rules.starts_on == CoverStartsOn::Online {
                    start.get_or_insert(at);
                    stopped_at = None;
                }
            }
            ShiftEventKind::JobAccepted => {
                open_jobs = open_jobs.saturating_add(1);
                start.get_or_insert(at);
                stopped_at = None;
            }
            ShiftEventKind::JobCompleted => {
                open_jobs = open_jobs.saturating_sub(1);
                let still_online = rules.starts_on == CoverStartsOn::Online && online;
                if start.is_some() && open_jobs == 0 && !still_online {
                    stopped_at = Some(at);
                }
            }
            ShiftEventKind::Offline => {
                online = false;
                open_jobs = 0;
                if start.is_some() {
                    stopped_at = Some(at);
                }
            }
        }
    }
    if let Some(s) = start {
        out.push(WorkPeriod {
            start: s,
            stopped_at,
            end: stopped_at.map(|stop| stop + window),
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ShiftEventKind::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0)
            .single()
            .unwrap()
    }

    fn rules(starts_on: CoverStartsOn) -> StreamRules {
        StreamRules {
            starts_on,
            gap: Duration::minutes(10),
            tail: Duration::minutes(15),
        }
    }

    #[test]
    fn periods_follow_jobs_with_the_gap_and_tail() {
        let events = [
            (t(8, 50), Online),
            (t(9, 0), JobAccepted),
            (t(9, 30), JobCompleted),
            // Resumes within the gap: same period.
            (t(9, 35), JobAccepted),
            (t(10, 0), JobCompleted),
            // After gap + tail: a new period.
            (t(11, 0), JobAccepted),
            (t(11, 20), JobCompleted),
            (t(11, 21), Offline),
        ];
        let periods = work_periods(&events, rules(CoverStartsOn::JobAccepted));
        assert_eq!(
            periods,
            vec![
                WorkPeriod {
                    start: t(9, 0),
                    stopped_at: Some(t(10, 0)),
                    end: Some(t(10, 25))
                },
                WorkPeriod {
                    start: t(11, 0),
                    stopped_at: Some(t(11, 21)),
                    end: Some(t(11, 46))
                },
            ]
        );
        // Any arrival order gives the same periods.
        let mut reversed = events.to_vec();
        reversed.reverse();
        assert_eq!(
            work_periods(&reversed, rules(CoverStartsOn::JobAccepted)),
            periods
        );
    }

    #[test]
    fn overlapping_jobs_keep_work_going_and_open_periods_have_no_end() {
        let events = [
            (t(9, 0), JobAccepted),
            (t(9, 5), JobAccepted),
            (t(9, 20), JobCompleted),
        ];
        let periods = work_periods(&events, rules(CoverStartsOn::JobAccepted));
        assert_eq!(
            periods,
            vec![WorkPeriod {
                start: t(9, 0),
                stopped_at: None,
                end: None
            }]
        );
        assert!(periods[0].contains(t(23, 0)));
    }

    #[test]
    fn online_start_partners_cover_from_online_to_offline() {
        let events = [
            (t(8, 50), Online),
            (t(9, 0), JobAccepted),
            (t(9, 30), JobCompleted),
            (t(12, 0), Offline),
        ];
        assert_eq!(
            work_periods(&events, rules(CoverStartsOn::Online)),
            vec![WorkPeriod {
                start: t(8, 50),
                stopped_at: Some(t(12, 0)),
                end: Some(t(12, 25))
            }]
        );
        // Online alone starts nothing for job-start partners.
        assert!(work_periods(&[(t(8, 50), Online)], rules(CoverStartsOn::JobAccepted)).is_empty());
    }
}
