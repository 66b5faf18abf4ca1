//! An account's history in keyset pages.

use crate::support::*;
use diesel_async::AsyncConnection;
use ledger::{
    EntryCursor, LedgerError, Page, PageOrder, SystemAccount, TransactionId,
    transactions_for_account,
};
use testkit::TestDb;

/// Reads every page of `account` in `order`, `size` at a time.
async fn read_all(
    conn: &mut diesel_async::AsyncPgConnection,
    account: &ledger::AccountRef,
    order: PageOrder,
    size: u32,
) -> Vec<(TransactionId, i64)> {
    let mut seen = Vec::new();
    let mut after: Option<EntryCursor> = None;
    loop {
        let page = transactions_for_account(
            conn,
            account,
            Page {
                after,
                first: size,
                order,
            },
        )
        .await
        .unwrap();
        assert!(page.entries.len() <= size as usize);
        seen.extend(
            page.entries
                .iter()
                .map(|e| (e.transaction.id, e.amount.minor)),
        );
        if !page.has_next_page {
            assert!(page.entries.len() <= size as usize);
            break;
        }
        assert_eq!(page.entries.len(), size as usize);
        after = page.end_cursor();
    }
    seen
}

#[tokio::test]
async fn pages_walk_an_accounts_history_in_both_orders_without_gaps_or_repeats() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();

    let mut posted = Vec::new();
    for i in 0..12 {
        posted.push(top_up(&mut conn, &me, 100 + i).await);
    }
    // Several in one database transaction share a booking time: the id breaks the tie.
    let batch = conn
        .transaction::<_, LedgerError, _>(async |conn| {
            let mut batch = Vec::new();
            for i in 0..6 {
                batch.push(top_up(conn, &me, 500 + i).await);
            }
            batch.push(charge(conn, &me, 112, 90, 10, 12).await);
            Ok(batch)
        })
        .await
        .unwrap();
    assert!(
        batch
            .iter()
            .all(|p| p.transaction.created_at == batch[0].transaction.created_at)
    );
    posted.extend(batch);
    for i in 0..5 {
        posted.push(top_up(&mut conn, &me, 900 + i).await);
    }
    // Someone else's activity is not in my history.
    top_up(&mut conn, &new_owner(), 1).await;

    let mut expected: Vec<_> = posted
        .iter()
        .map(|p| {
            (
                (p.transaction.created_at, p.id()),
                (p.id(), p.amount_for(&wallet(&me)).unwrap().minor),
            )
        })
        .collect();
    expected.sort_by_key(|(key, _)| *key);
    let oldest_first: Vec<_> = expected.into_iter().map(|(_, v)| v).collect();
    let mut newest_first = oldest_first.clone();
    newest_first.reverse();
    assert_eq!(oldest_first.len(), 24);

    for size in [1, 5, 7, 24, 25, 200] {
        assert_eq!(
            read_all(&mut conn, &wallet(&me), PageOrder::OldestFirst, size).await,
            oldest_first,
            "oldest first, pages of {size}"
        );
        assert_eq!(
            read_all(&mut conn, &wallet(&me), PageOrder::NewestFirst, size).await,
            newest_first,
            "newest first, pages of {size}"
        );
    }

    // The charge appears in the insurer's history too; the wallet's entry is its debit.
    let insurer = transactions_for_account(
        &mut conn,
        &gbp(SystemAccount::InsurerPayable),
        Page::newest(10),
    )
    .await
    .unwrap();
    assert_eq!(insurer.entries.len(), 1);
    assert_eq!(insurer.entries[0].amount.minor, -90);
    assert!(!insurer.has_next_page);
}

#[tokio::test]
async fn entries_added_while_paging_are_neither_repeated_nor_skipped() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();
    for i in 0..6 {
        top_up(&mut conn, &me, 10 + i).await;
    }

    // Oldest first: a new entry turns up on a later page.
    let first = transactions_for_account(&mut conn, &wallet(&me), Page::oldest(4))
        .await
        .unwrap();
    assert!(first.has_next_page);
    let late = top_up(&mut conn, &me, 99).await;
    let rest = transactions_for_account(
        &mut conn,
        &wallet(&me),
        Page::oldest(4).after(first.end_cursor()),
    )
    .await
    .unwrap();
    assert_eq!(rest.entries.len(), 3);
    assert_eq!(rest.entries[2].transaction.id, late.id());
    assert!(!rest.has_next_page);

    // Newest first: a new entry is before the cursor and does not disturb later pages.
    let first = transactions_for_account(&mut conn, &wallet(&me), Page::newest(3))
        .await
        .unwrap();
    assert_eq!(first.entries[0].transaction.id, late.id());
    top_up(&mut conn, &me, 77).await;
    let rest = transactions_for_account(
        &mut conn,
        &wallet(&me),
        Page::newest(10).after(first.end_cursor()),
    )
    .await
    .unwrap();
    assert_eq!(rest.entries.len(), 4);
    let mut ids: Vec<_> = first
        .entries
        .iter()
        .chain(&rest.entries)
        .map(|e| e.transaction.id)
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 7);

    // A cursor survives its text form.
    let cursor = first.end_cursor().unwrap();
    assert_eq!(cursor.to_string().parse::<EntryCursor>().unwrap(), cursor);

    for bad in [0, ledger::MAX_PAGE_SIZE + 1] {
        let err = transactions_for_account(&mut conn, &wallet(&me), Page::newest(bad))
            .await
            .unwrap_err();
        assert_eq!(code(&err), "INVALID_PAGE_SIZE");
    }
}
