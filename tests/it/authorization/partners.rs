//! Authorization entries for partner links, shift events and webhooks.

use super::Entry;

pub(super) fn entries() -> Vec<Entry> {
    Vec::new()
}
