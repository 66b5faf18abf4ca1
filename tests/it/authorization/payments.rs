//! Authorization entries for the wallet, cards, top-ups, payments and refunds.

use super::Entry;

pub(super) fn entries() -> Vec<Entry> {
    Vec::new()
}
