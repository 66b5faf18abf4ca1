//! Authorization entries for quotes, enrolment and cover sessions.

use super::Entry;

pub(super) fn entries() -> Vec<Entry> {
    Vec::new()
}
