//! Many writers at once.

use crate::support::*;
use ledger::{Cause, Portion, check_integrity, post, reverse, wallet_balance};
use shared::{Currency, Money};
use testkit::TestDb;
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posts_to_one_new_wallet_add_up_exactly() {
    let db = TestDb::new().await.unwrap();
    let me = new_owner();
    const TASKS: i64 = 40;

    // The wallet does not exist yet: every task races to create it as well.
    let mut tasks = JoinSet::new();
    for i in 1..=TASKS {
        let pool = db.pool().clone();
        let me = me.clone();
        tasks.spawn(async move {
            let mut conn = pool.get().await.unwrap();
            post(
                &mut conn,
                top_up_tx(&me, 100 + i, i % 3, &format!("top_c{i}")),
            )
            .await
            .unwrap();
            if i % 4 == 0 {
                post(
                    &mut conn,
                    charge_tx(&me, 28, 20, 5, 3, &format!("ses_c{i}")),
                )
                .await
                .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    let mut conn = db.conn().await.unwrap();
    let topped: i64 = (1..=TASKS).map(|i| 100 + i).sum();
    let charged = 28 * (TASKS / 4);
    assert_eq!(
        wallet_balance(&mut conn, &me, Currency::Gbp).await.unwrap(),
        Money::gbp(topped - charged)
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM ledger_accounts WHERE kind = 'driver_wallet'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_transactions").await,
        TASKS + TASKS / 4
    );
    assert!(check_integrity(&mut conn).await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cause_posted_from_many_tasks_at_once_is_posted_once() {
    let db = TestDb::new().await.unwrap();
    let me = new_owner();

    let mut tasks = JoinSet::new();
    for _ in 0..12 {
        let pool = db.pool().clone();
        let me = me.clone();
        tasks.spawn(async move {
            let mut conn = pool.get().await.unwrap();
            match post(&mut conn, top_up_tx(&me, 1000, 0, "top_webhook_retry")).await {
                Ok(posted) => (true, posted.id()),
                Err(e) => (false, e.already_posted().expect("only ALREADY_POSTED")),
            }
        });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        results.push(done.unwrap());
    }
    assert_eq!(results.iter().filter(|(won, _)| *won).count(), 1);
    assert!(results.iter().all(|(_, id)| *id == results[0].1));

    let mut conn = db.conn().await.unwrap();
    assert_eq!(
        wallet_balance(&mut conn, &me, Currency::Gbp).await.unwrap(),
        Money::gbp(1000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_partial_refunds_never_exceed_the_original() {
    let db = TestDb::new().await.unwrap();
    let me = new_owner();
    let original = {
        let mut conn = db.conn().await.unwrap();
        top_up(&mut conn, &me, 2000).await;
        charge(&mut conn, &me, 1000, 700, 200, 100).await
    };

    // Ten refunds of £1.50 race for £10.00: six fit, four must be refused.
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let pool = db.pool().clone();
        let id = original.id();
        tasks.spawn(async move {
            let mut conn = pool.get().await.unwrap();
            reverse(
                &mut conn,
                id,
                Cause::new("refund", format!("ref_{i}")),
                Portion::Amount(150),
            )
            .await
            .map_err(|e| code(&e))
        });
    }
    let mut ok = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(_) => ok += 1,
            Err(code) => assert_eq!(code, "REVERSAL_EXCEEDS_REMAINING"),
        }
    }
    assert_eq!(ok, 6);
    let mut conn = db.conn().await.unwrap();
    assert_eq!(
        wallet_balance(&mut conn, &me, Currency::Gbp).await.unwrap(),
        Money::gbp(2000 - 1000 + 6 * 150)
    );
    assert!(check_integrity(&mut conn).await.unwrap().is_clean());
}
