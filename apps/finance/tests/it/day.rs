//! A day of real money movements against localstripe — top-ups, charged sessions, a card refund
//! and a wallet refund — imported, reconciled and reported; then the ledger is tampered with and
//! reconciliation names each difference.

use crate::support::*;
use chrono::{Duration, Utc};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use finance::period::Month;
use finance::reconcile::run_items;
use finance::reports;
use ledger::{AccountRef, SystemAccount};
use payments::{RefundRequest, RefundTarget};
use shared::{Clock, Currency, Money};

async fn system_balance(conn: &mut AsyncPgConnection, kind: SystemAccount) -> i64 {
    ledger::balance(conn, &AccountRef::system(kind, Currency::Gbp))
        .await
        .unwrap()
        .minor
}

#[tokio::test]
async fn a_day_at_localstripe_reconciles_reports_and_names_each_tampered_row() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let period_start = Utc::now() - Duration::minutes(5);
    let today = Utc::now().date_naive();

    let ada = w.driver_with_card(&mut conn, "07911 123456").await;
    let bob = w.driver_with_card(&mut conn, "+44 7700 123456").await;
    let t1 = payments::top_up_wallet(&mut conn, &w.env, ada, Money::gbp(2000), "t-1")
        .await
        .unwrap();
    let t2 = payments::top_up_wallet(&mut conn, &w.env, ada, Money::gbp(3000), "t-2")
        .await
        .unwrap();
    let t3 = payments::top_up_wallet(&mut conn, &w.env, bob, Money::gbp(1500), "t-3")
        .await
        .unwrap();
    let car = w.car_enrolled(&mut conn, ada).await;
    let s1 = w.charged_ride(&mut conn, ada, car, "s-1", 60).await;
    let _s2 = w.charged_ride(&mut conn, ada, car, "s-2", 95).await;
    let staff = accounts::Actor::Staff(accounts::StaffId::new());
    payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::TopUp(t1.id),
            amount: Money::gbp(500),
            reason: "Topped up twice by mistake".into(),
            actor: staff,
        },
    )
    .await
    .unwrap();
    let half = s1.charge.as_ref().unwrap().total.minor / 2;
    payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::SessionCharge(s1.id),
            amount: Money::gbp(half),
            reason: "Cover ran on after the shift".into(),
            actor: staff,
        },
    )
    .await
    .unwrap();

    // Import: three charges and one refund at Stripe; again, nothing new.
    let end = Utc::now() + Duration::hours(1);
    let first =
        finance::import_balance_transactions(&mut conn, &w.reader(), &w.clock, period_start, end)
            .await
            .unwrap();
    assert_eq!(
        (first.fetched, first.inserted, first.resumed),
        (4, 4, false)
    );
    let again =
        finance::import_balance_transactions(&mut conn, &w.reader(), &w.clock, period_start, end)
            .await
            .unwrap();
    assert_eq!((again.fetched, again.inserted), (4, 0));
    assert_ne!(again.run_id, first.run_id);

    // Everything matches, and Stripe's balance moved exactly as the ledger's clearing did.
    let summary = finance::reconcile_day(&mut conn, &w.clock, today)
        .await
        .unwrap();
    assert_eq!(summary.count("matched"), 4, "{summary:#?}");
    assert_eq!(summary.statuses.len(), 1, "{summary:#?}");
    assert_eq!(summary.new_exceptions, 0);
    let cash = &summary.cash[0];
    assert_eq!(cash.stripe_net, 2000 + 3000 + 1500 - 500);
    assert_eq!(cash.ledger_clearing, cash.stripe_net);
    assert_eq!(
        finance::reconcile::latest_summary(&mut conn, &w.clock, today)
            .await
            .unwrap()
            .unwrap(),
        summary
    );

    // The bordereau: two charges and a refund; its totals are the ledger's premium accounts.
    let month = Month::of(w.clock.now().date_naive());
    let b = reports::bordereau(&mut conn, &w.clock, month)
        .await
        .unwrap();
    let kinds: Vec<&str> = b
        .lines
        .iter()
        .map(|l| l.transaction_type.as_str())
        .collect();
    assert_eq!(kinds, ["charge", "charge", "refund"]);
    let line = &b.lines[0];
    assert_eq!(
        line.certificate_ref.as_deref(),
        Some(s1.certificate_number.as_str())
    );
    assert_eq!(line.insured.as_deref(), Some("Grace Hopper"));
    assert_eq!(line.vehicle_registration.as_deref(), Some("AB12CDE"));
    assert_eq!(line.ipt_rate_bp, Some(1200));
    assert_eq!(line.gross_premium, s1.charge.as_ref().unwrap().total.minor);
    assert_eq!(b.lines[2].gross_premium, -half);
    let totals = &b.totals[0];
    let net = -system_balance(&mut conn, SystemAccount::InsurerPayable).await;
    let commission = -system_balance(&mut conn, SystemAccount::CommissionIncome).await;
    let ipt = -system_balance(&mut conn, SystemAccount::IptPayable).await;
    assert_eq!(
        (
            totals.net_premium_due,
            totals.commission,
            totals.ipt,
            totals.gross_premium
        ),
        (net, commission, ipt, net + commission + ipt)
    );
    assert_eq!((totals.charges, totals.refunds), (2, 1));
    let csv = finance::csv::bordereau_csv(&b);
    assert_eq!(csv.lines().count(), 1 + 3 + 1);
    assert!(csv.contains("Grace Hopper"));

    let tb = reports::trial_balance(&mut conn, &w.clock, today)
        .await
        .unwrap();
    assert!(tb.balances(), "{tb:#?}");
    let wallets = tb
        .lines
        .iter()
        .find(|l| l.account_kind == "driver_wallet")
        .unwrap();
    let held = ledger::wallet_balance(&mut conn, &ada.to_string(), Currency::Gbp)
        .await
        .unwrap()
        .minor
        + ledger::wallet_balance(&mut conn, &bob.to_string(), Currency::Gbp)
            .await
            .unwrap()
            .minor;
    assert_eq!(wallets.balance.abs(), held.abs());
    let ipt_months = reports::ipt_by_month(&mut conn, &w.clock, month, month)
        .await
        .unwrap();
    assert_eq!(ipt_months.len(), 1);
    assert_eq!(ipt_months[0].payable, ipt);

    // Ada's statement of the week: her wallet's movements, opening to closing; a PDF; an email
    // to each driver whose wallet moved, once however often the job runs.
    let st = finance::statements::weekly_statement(&mut conn, &ada.to_string(), today)
        .await
        .unwrap();
    let ada_held = ledger::wallet_balance(&mut conn, &ada.to_string(), Currency::Gbp)
        .await
        .unwrap()
        .minor;
    assert_eq!(st.opening_balance, 0);
    assert_eq!(st.closing_balance.abs(), ada_held.abs());
    assert_eq!(st.top_ups, 5000);
    assert_eq!(st.entries.len(), 2 + 2 + 2);
    let pdf = finance::statements::render_statement_pdf(&st);
    assert!(pdf.starts_with(b"%PDF"));
    let sent = finance::jobs::send_weekly_statements(&mut conn, &w.settings, today)
        .await
        .unwrap();
    assert_eq!(sent, 2);
    finance::jobs::send_weekly_statements(&mut conn, &w.settings, today)
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query(
        "SELECT count(*) AS n FROM notifications WHERE template = 'weekly_statement'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(n.n, 2);

    // The same totals from the rollups once the days are closed.
    let later = finance::rollups::refresh_ledger_daily(
        &mut conn,
        &shared::FixedClock::at(w.clock.now() + Duration::days(2)),
    )
    .await
    .unwrap();
    assert!(later.unwrap() > today);
    assert!(
        finance::rollups::watermark(&mut conn)
            .await
            .unwrap()
            .unwrap()
            > today
    );
    assert_eq!(
        reports::bordereau_totals(&mut conn, &w.clock, month)
            .await
            .unwrap(),
        b.totals
    );
    assert_eq!(
        reports::trial_balance(&mut conn, &w.clock, today)
            .await
            .unwrap(),
        tb
    );

    // The suite's closing ledger check must not count what follows as a real problem.
    w.db.broken_on_purpose();
    // Tamper: alter one top-up's clearing by £1, remove another from the ledger, book a top-up
    // Stripe never saw, and add a duplicate and an unknown type on Stripe's side.
    let t2_tx = t2.ledger_transaction_id.unwrap().uuid();
    let t3_tx = t3.ledger_transaction_id.unwrap().uuid();
    diesel::sql_query("SET session_replication_role = replica")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(format!(
        "UPDATE ledger_postings SET amount = amount - 100 * sign(amount) WHERE transaction_id = '{t2_tx}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(format!(
        "DELETE FROM ledger_postings WHERE transaction_id = '{t3_tx}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(format!(
        "DELETE FROM ledger_transactions WHERE id = '{t3_tx}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("SET session_replication_role = origin")
        .execute(&mut conn)
        .await
        .unwrap();
    let t1_key = t1.id.to_string();
    diesel::sql_query(format!(
        "INSERT INTO finance_stripe_balance_transactions \
         SELECT 'txn_duplicate1', created + interval '1 second', type, known_type, amount, fee, net, currency, \
                status, reporting_category, available_on, 'ch_duplicate1', payment_intent_id, match_kind, \
                match_cause_type, match_cause_id, description, raw, import_run_id, imported_at \
           FROM finance_stripe_balance_transactions WHERE match_cause_id = '{t1_key}' AND type = 'charge'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO finance_stripe_balance_transactions \
         SELECT 'txn_climate1', created, 'climate_order_purchase', false, -25, 0, -25, currency, \
                status, 'other', available_on, NULL, NULL, NULL, NULL, NULL, NULL, raw, import_run_id, imported_at \
           FROM finance_stripe_balance_transactions WHERE match_cause_id = '{t1_key}' AND type = 'charge' AND id <> 'txn_duplicate1'"
            .replace("{t1_key}", &t1_key),
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let ghost = ledger::post(
        &mut conn,
        ledger::NewTransaction {
            kind: ledger::TransactionKind::TopUp,
            cause: ledger::Cause::new("top_up", "top_ghost"),
            currency: Currency::Gbp,
            description: "Card top-up".into(),
            lines: ledger::top_up_lines(&bob.to_string(), Money::gbp(700), Money::gbp(0)).unwrap(),
            metadata: serde_json::json!({}),
        },
    )
    .await
    .unwrap()
    .id();

    let summary = finance::reconcile_day(&mut conn, &w.clock, today)
        .await
        .unwrap();
    let counts: Vec<(String, i64)> = summary
        .statuses
        .iter()
        .map(|s| (s.status.clone(), s.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("matched".to_owned(), 2),
            ("amount_mismatch".to_owned(), 1),
            ("missing_in_ledger".to_owned(), 2),
            ("missing_at_stripe".to_owned(), 1),
            ("duplicate".to_owned(), 1),
        ],
        "{summary:#?}"
    );
    assert_eq!(summary.new_exceptions, 5);
    let all = run_items(&mut conn, summary.run_id, today, None, 100)
        .await
        .unwrap();
    let items = |status: &str| -> Vec<finance::reconcile::ReconItem> {
        all.iter().filter(|i| i.status == status).cloned().collect()
    };
    let mismatch = items("amount_mismatch");
    assert_eq!(mismatch[0].ledger_transaction_id, Some(t2_tx));
    assert_eq!(
        mismatch[0].detail.as_deref(),
        Some("net: Stripe 3000, ledger clearing 2900 (difference 100)")
    );
    assert_eq!(
        (mismatch[0].stripe_amount, mismatch[0].ledger_amount),
        (Some(3000), Some(2900))
    );
    let missing = items("missing_in_ledger");
    let details: Vec<String> = missing.iter().map(|i| i.detail.clone().unwrap()).collect();
    assert!(
        details.contains(&format!(
            "no ledger transaction top_up for top_up {}",
            t3.id
        )),
        "{details:?}"
    );
    assert!(
        details
            .contains(&"unknown Stripe balance transaction type climate_order_purchase".to_owned())
    );
    let at_stripe = items("missing_at_stripe");
    assert_eq!(at_stripe[0].ledger_transaction_id, Some(ghost.uuid()));
    assert_eq!(at_stripe[0].ledger_amount, Some(700));
    let dup = items("duplicate");
    assert_eq!(dup[0].stripe_id.as_deref(), Some("txn_duplicate1"));

    let open = finance::exceptions::list_exceptions(&mut conn, Some("open"), None, 100)
        .await
        .unwrap();
    let mut kinds: Vec<&str> = open.iter().map(|e| e.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "amount_mismatch",
            "duplicate",
            "missing_at_stripe",
            "missing_in_ledger",
            "unknown_type"
        ]
    );
    // Reconciling again opens nothing new.
    let rerun = finance::reconcile_day(&mut conn, &w.clock, today)
        .await
        .unwrap();
    assert_eq!(rerun.new_exceptions, 0);
}

/// A session priced nothing (here: cover resumed within the working period's minimum, already
/// paid) had a certificate all the same: the bordereau lists it, with zero amounts and no
/// ledger transaction, and its totals still tie to the ledger's premium accounts.
#[tokio::test]
async fn a_session_priced_nothing_is_on_the_bordereau() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let ada = w.driver_with_card(&mut conn, "07911 123457").await;
    payments::top_up_wallet(&mut conn, &w.env, ada, Money::gbp(2000), "t-1")
        .await
        .unwrap();
    let car = w.car_enrolled(&mut conn, ada).await;
    let paid = w.charged_ride(&mut conn, ada, car, "s-1", 10).await;
    let free = w.charged_ride(&mut conn, ada, car, "s-2", 10).await;
    assert!(paid.charge.as_ref().unwrap().total.minor > 0);
    assert_eq!(free.charge.as_ref().unwrap().total.minor, 0);

    let month = Month::of(w.clock.now().date_naive());
    let b = reports::bordereau(&mut conn, &w.clock, month)
        .await
        .unwrap();
    let lines: Vec<(&str, Option<&str>, i64, bool)> = b
        .lines
        .iter()
        .map(|l| {
            (
                l.transaction_type.as_str(),
                l.certificate_ref.as_deref(),
                l.gross_premium + l.commission.abs() + l.ipt.abs() + l.net_premium_due.abs(),
                l.ledger_transaction_id.is_some(),
            )
        })
        .collect();
    let gross = paid.charge.as_ref().unwrap().total.minor;
    let parts = {
        let c = paid.charge.as_ref().unwrap();
        c.total.minor + c.commission.minor + c.ipt.minor + c.net_premium.minor
    };
    assert_eq!(
        lines,
        [
            (
                "charge",
                Some(paid.certificate_number.as_str()),
                parts,
                true
            ),
            (
                "no_premium",
                Some(free.certificate_number.as_str()),
                0,
                false
            ),
        ]
    );
    assert_eq!(b.totals[0].charges, 1);
    assert_eq!(b.totals[0].gross_premium, gross);
    finance::rollups::refresh_ledger_daily(&mut conn, &w.clock)
        .await
        .unwrap();
    assert_eq!(
        reports::bordereau_totals(&mut conn, &w.clock, month)
            .await
            .unwrap(),
        b.totals
    );
    let csv = finance::csv::bordereau_csv(&b);
    assert!(
        csv.lines()
            .any(|l| l.contains(",no_premium,") && l.contains(&free.certificate_number)),
        "{csv}"
    );
}
