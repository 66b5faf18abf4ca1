//! Charge disputes: only a charged session, once; the evidence behind the charge; resolutions
//! that refund through payments and leave the ledger balanced.

use crate::states::{count, staff};
use crate::support::*;
use claims::{DisputeCharge, DisputeReason, DisputeStatus, Resolution};
use cover::SessionStatus;
use partners::ShiftEventKind::{JobAccepted, JobCompleted};
use shared::Money;

fn code(e: claims::ClaimsError) -> &'static str {
    e.user_error().expect("a user error").code
}

fn not_working(session: cover::CoverSessionId) -> DisputeCharge {
    DisputeCharge {
        session_id: session,
        reason: DisputeReason::NotWorking,
        details: Some("I had logged off the app at 9:30.".into()),
    }
}

async fn status_of(h: &Harness, session: cover::CoverSessionId) -> SessionStatus {
    let mut conn = h.conn().await;
    cover::get_session(&mut conn, session).await.unwrap().status
}

async fn ledger_is_clean(h: &Harness) {
    let mut conn = h.conn().await;
    let report = ledger::check_integrity(&mut conn).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn a_dispute_shows_the_partner_events_and_the_pricing_rule_and_a_full_refund_balances() {
    let h = Harness::new().await;
    let d = h.driver("+447911100301", Product::Hire).await;
    let ops = staff(&h).await;
    h.fund(d.id, 10_000).await;
    h.clock.set(t(11, 0));
    h.send(
        &d,
        &[("e1", JobAccepted, t(9, 0)), ("e2", JobCompleted, t(10, 0))],
    )
    .await;
    let session = h.sessions(d.id).await.remove(0);
    let session = h.charge(&session).await;
    let total = session.charge.unwrap().total;
    assert!(total.minor > 0);
    let before = {
        let mut conn = h.conn().await;
        payments::wallet_balance(&mut conn, d.id).await.unwrap()
    };
    let mut conn = h.conn().await;
    let dispute = claims::dispute_charge(&mut conn, &h.clock, d.id, not_working(session.id))
        .await
        .unwrap();
    assert_eq!(dispute.status, DisputeStatus::Open);
    assert_eq!(dispute.charge, total);

    let evidence = claims::dispute_evidence(&mut conn, session.id)
        .await
        .unwrap();
    let kinds: Vec<_> = evidence
        .partner_events
        .iter()
        .map(|e| (e.kind, e.occurred_at))
        .collect();
    assert_eq!(
        kinds,
        vec![(JobAccepted, t(9, 0)), (JobCompleted, t(10, 0))]
    );
    assert_eq!(
        evidence.partner_events[0].reference.as_deref(),
        Some("job-e1")
    );
    let pricing = evidence.pricing;
    assert_eq!(pricing.minimum_charge_minutes, 60);
    assert_eq!(pricing.gap_rule_minutes, 10);
    assert_eq!(pricing.tail_cover_minutes, 15);
    let charge = pricing.charge.unwrap();
    assert_eq!(charge.minutes, 85);
    assert_eq!(charge.rule, pricing::ChargeRule::PerMinute);
    assert_eq!(charge.total, total);

    let refunded = claims::resolve_dispute(
        &mut conn,
        &h.env,
        ops,
        dispute.id,
        Resolution::Refund,
        "Driver was offline: partner confirmed",
    )
    .await
    .unwrap();
    assert_eq!(refunded.status, DisputeStatus::Refunded);
    assert_eq!(refunded.refunded, Some(total));
    let refund = payments::get_refund(&mut conn, refunded.refund_id.unwrap())
        .await
        .unwrap();
    assert_eq!(refund.amount, total);
    assert_eq!(refund.status, payments::RefundStatus::Succeeded);
    let after = payments::wallet_balance(&mut conn, d.id).await.unwrap();
    assert_eq!(after.minor - before.minor, total.minor);
    ledger_is_clean(&h).await;
    // Resolved once; the session cannot be disputed again.
    let again =
        claims::resolve_dispute(&mut conn, &h.env, ops, dispute.id, Resolution::Uphold, "x")
            .await
            .unwrap_err();
    assert_eq!(code(again), "DISPUTE_ALREADY_RESOLVED");
    let second = claims::dispute_charge(&mut conn, &h.clock, d.id, not_working(session.id))
        .await
        .unwrap_err();
    assert_eq!(code(second), "ALREADY_DISPUTED");
    let text = notifications::find_by_cause(&mut conn, &format!("dispute_resolved:{}", dispute.id))
        .await
        .unwrap()
        .unwrap();
    assert!(
        text.body_text.contains("refunded to your wallet"),
        "{}",
        text.body_text
    );
    assert_eq!(
        count(&h, "SELECT count(*) AS n FROM audit_log WHERE action IN ('dispute.opened', 'dispute.resolved')").await,
        2
    );
}

#[tokio::test]
async fn an_adjustment_refunds_part_and_an_uphold_refunds_nothing() {
    let h = Harness::new().await;
    let d = h.driver("+447911100302", Product::Food).await;
    let ops = staff(&h).await;
    h.fund(d.id, 10_000).await;
    h.clock.set(t(20, 0));
    let first = h.driver_session(d.id, d.car, t(9, 0), t(11, 0)).await;
    let first = h.charge(&first).await;
    let second = h.driver_session(d.id, d.car, t(12, 0), t(13, 0)).await;
    let second = h.charge(&second).await;
    let mut conn = h.conn().await;
    let a = claims::dispute_charge(
        &mut conn,
        &h.clock,
        d.id,
        DisputeCharge {
            session_id: first.id,
            reason: DisputeReason::Other,
            details: Some("I ended cover at 10:00 but the app froze".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(status_of(&h, first.id).await, SessionStatus::Disputed);
    let total = first.charge.unwrap().total;
    for bad in [0, -5, total.minor] {
        let e = claims::resolve_dispute(
            &mut conn,
            &h.env,
            ops,
            a.id,
            Resolution::Adjust {
                refund: Money::gbp(bad),
            },
            "Half an hour off",
        )
        .await
        .unwrap_err();
        assert_eq!(code(e), "INVALID_ADJUSTMENT", "{bad}");
    }
    let part = Money::gbp(total.minor / 4);
    let adjusted = claims::resolve_dispute(
        &mut conn,
        &h.env,
        ops,
        a.id,
        Resolution::Adjust { refund: part },
        "Half an hour off",
    )
    .await
    .unwrap();
    assert_eq!(adjusted.status, DisputeStatus::Adjusted);
    assert_eq!(adjusted.refunded, Some(part));
    assert_eq!(status_of(&h, first.id).await, SessionStatus::Adjusted);
    ledger_is_clean(&h).await;

    let b = claims::dispute_charge(
        &mut conn,
        &h.clock,
        d.id,
        DisputeCharge {
            session_id: second.id,
            reason: DisputeReason::WrongVehicle,
            details: None,
        },
    )
    .await
    .unwrap();
    let upheld = claims::resolve_dispute(
        &mut conn,
        &h.env,
        ops,
        b.id,
        Resolution::Uphold,
        "Telematics show the car",
    )
    .await
    .unwrap();
    assert_eq!(upheld.status, DisputeStatus::Upheld);
    assert_eq!(upheld.refund_id, None);
    // The charge stands: the session is charged again.
    assert_eq!(status_of(&h, second.id).await, SessionStatus::Charged);
    // The driver's list finds each by its status.
    for (status, expected) in [
        (SessionStatus::Adjusted, first.id),
        (SessionStatus::Charged, second.id),
    ] {
        let page = cover::list_sessions(
            &mut conn,
            d.id,
            &cover::SessionFilter {
                status: Some(status),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
        let ids: Vec<_> = page.edges.iter().map(|e| e.node.id).collect();
        assert_eq!(ids, vec![expected], "{status:?}");
    }
    assert_eq!(
        count(&h, "SELECT count(*) AS n FROM refunds").await,
        1,
        "only the adjustment refunded"
    );
    ledger_is_clean(&h).await;
    let queue = claims::list_disputes(
        &mut conn,
        &claims::DisputeFilter {
            driver_id: None,
            statuses: vec![DisputeStatus::Open],
        },
        claims::ListOrder::OldestFirst,
        None,
        10,
    )
    .await
    .unwrap();
    assert!(queue.edges.is_empty());
    let mine = claims::list_disputes(
        &mut conn,
        &claims::DisputeFilter {
            driver_id: Some(d.id),
            statuses: vec![],
        },
        claims::ListOrder::NewestFirst,
        None,
        10,
    )
    .await
    .unwrap();
    assert_eq!(mine.edges.len(), 2);
}

#[tokio::test]
async fn only_a_charged_session_of_ones_own_can_be_disputed_once() {
    let h = Harness::new().await;
    let d = h.driver("+447911100303", Product::Food).await;
    let other = h.driver("+447911100304", Product::Food).await;
    h.fund(d.id, 10_000).await;
    h.clock.set(t(20, 0));
    let ended = h.driver_session(d.id, d.car, t(9, 0), t(10, 0)).await;
    let mut conn = h.conn().await;
    let e = claims::dispute_charge(&mut conn, &h.clock, d.id, not_working(ended.id))
        .await
        .unwrap_err();
    assert_eq!(code(e), "SESSION_NOT_CHARGED");
    let charged = h.charge(&ended).await;
    let e = claims::dispute_charge(&mut conn, &h.clock, other.id, not_working(charged.id))
        .await
        .unwrap_err();
    assert_eq!(code(e), "SESSION_NOT_FOUND");
    let e = claims::dispute_charge(
        &mut conn,
        &h.clock,
        d.id,
        DisputeCharge {
            session_id: charged.id,
            reason: DisputeReason::Other,
            details: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(e), "INVALID_DISPUTE_DETAILS");
    // Two at once: one opens, the other is told it is already disputed.
    let (mut c1, mut c2) = (h.conn().await, h.conn().await);
    let (r1, r2) = tokio::join!(
        claims::dispute_charge(&mut c1, &h.clock, d.id, not_working(charged.id)),
        claims::dispute_charge(&mut c2, &h.clock, d.id, not_working(charged.id)),
    );
    let oks = [&r1, &r2].iter().filter(|r| r.is_ok()).count();
    assert_eq!(oks, 1, "{r1:?} {r2:?}");
    let err = r1.err().or(r2.err()).unwrap();
    assert_eq!(code(err), "ALREADY_DISPUTED");
    assert_eq!(
        count(&h, "SELECT count(*) AS n FROM charge_disputes").await,
        1
    );
}
