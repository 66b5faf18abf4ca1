//! Reporting claims (cover found or flagged, idempotency, bad input) and their state machine:
//! every change with its reason, its history row, its audit entry and one text to the driver.

use crate::support::*;
use accounts::{Actor, NewStaff, Role, StaffId};
use claims::{ClaimCover, ClaimStatus, ClaimsError, CoverBasis, NoCoverReason};
use diesel_async::RunQueryDsl;

pub async fn staff(h: &Harness) -> StaffId {
    let mut conn = h.conn().await;
    accounts::create_staff(
        &mut conn,
        &h.clock,
        Actor::System,
        NewStaff {
            email: format!("{}@staff.test", uuid::Uuid::new_v4().simple()),
            name: "Claims Handler".into(),
            role: Role::Ops,
            password: "a long enough password".into(),
        },
    )
    .await
    .unwrap()
    .id
}

pub async fn count(h: &Harness, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = h.conn().await;
    diesel::sql_query(sql)
        .get_result::<N>(&mut conn)
        .await
        .unwrap()
        .n
}

fn code(e: ClaimsError) -> &'static str {
    e.user_error().expect("a user error").code
}

#[tokio::test]
async fn a_claim_is_tied_to_the_session_and_reported_once_per_key() {
    let h = Harness::new().await;
    let d = h.driver("+447911100201", Product::Food).await;
    h.clock.set(t(15, 0));
    let s = h.driver_session(d.id, d.car, t(12, 0), t(13, 30)).await;
    let mut conn = h.conn().await;
    let reported = claims::report_claim(&mut conn, &h.clock, d.id, report(d.car, t(12, 45), "k1"))
        .await
        .unwrap();
    assert!(!reported.replayed);
    let claim = reported.claim;
    assert!(claim.reference.starts_with("CLM-") && claim.reference.len() == 13);
    assert_eq!(claim.status, ClaimStatus::Reported);
    assert_eq!(claim.reported_at, t(15, 0));
    assert_eq!(
        claim.cover,
        ClaimCover::Covered {
            session_id: s.id,
            certificate_number: s.certificate_number.clone(),
            basis: CoverBasis::Working,
        }
    );
    // The same request again is the same claim; the key with another request is refused.
    let again = claims::report_claim(&mut conn, &h.clock, d.id, report(d.car, t(12, 45), "k1"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.claim.id, claim.id);
    let other = claims::report_claim(&mut conn, &h.clock, d.id, report(d.car, t(12, 50), "k1"))
        .await
        .unwrap_err();
    assert_eq!(code(other), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(count(&h, "SELECT count(*) AS n FROM claims").await, 1);
    // One text with the reference, one history row, one audit entry.
    let text = notifications::find_by_cause(&mut conn, &format!("claim_received:{}", claim.id))
        .await
        .unwrap()
        .unwrap();
    assert!(
        text.body_text.contains(&claim.reference),
        "{}",
        text.body_text
    );
    let history = claims::claim_history(&mut conn, claim.id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].from, None);
    assert_eq!(history[0].to, ClaimStatus::Reported);
    assert_eq!(
        count(
            &h,
            "SELECT count(*) AS n FROM audit_log WHERE action = 'claim.reported'"
        )
        .await,
        1
    );
    let found = claims::find_by_reference(&mut conn, &claim.reference.to_lowercase())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, claim.id);
}

#[tokio::test]
async fn a_loss_without_cover_is_flagged_with_the_nearest_session() {
    let h = Harness::new().await;
    let d = h.driver("+447911100202", Product::Food).await;
    h.clock.set(t(15, 0));
    let s = h.driver_session(d.id, d.car, t(12, 0), t(13, 30)).await;
    let mut conn = h.conn().await;
    let claim = claims::report_claim(&mut conn, &h.clock, d.id, report(d.car, t(14, 0), "k"))
        .await
        .unwrap()
        .claim;
    assert_eq!(
        claim.cover,
        ClaimCover::NotCovered {
            reason: NoCoverReason::NoSession,
            nearest_session_id: Some(s.id),
        }
    );
    assert_eq!(claim.status, ClaimStatus::Reported);
}

#[tokio::test]
async fn bad_reports_answer_their_own_codes() {
    let h = Harness::new().await;
    let d = h.driver("+447911100203", Product::Food).await;
    let other = h.driver("+447911100204", Product::Food).await;
    h.clock.set(t(15, 0));
    let mut conn = h.conn().await;
    let mut go = async |input: claims::ReportClaim| {
        code(
            claims::report_claim(&mut conn, &h.clock, d.id, input)
                .await
                .unwrap_err(),
        )
    };
    assert_eq!(
        go(report(d.car, t(16, 0), "a")).await,
        "LOSS_TIME_IN_FUTURE"
    );
    let old = t(15, 0) - chrono::Duration::days(400);
    assert_eq!(go(report(d.car, old, "b")).await, "LOSS_TIME_TOO_OLD");
    assert_eq!(
        go(report(other.car, t(14, 0), "c")).await,
        "VEHICLE_NOT_FOUND"
    );
    let mut blank = report(d.car, t(14, 0), "d");
    blank.location = "   ".into();
    assert_eq!(go(blank).await, "INVALID_LOCATION");
    let mut long = report(d.car, t(14, 0), "e");
    long.description = "x".repeat(4001);
    assert_eq!(go(long).await, "INVALID_DESCRIPTION");
    assert_eq!(
        go(report(d.car, t(14, 0), "")).await,
        "INVALID_IDEMPOTENCY_KEY"
    );
    let mut too_many = report(d.car, t(14, 0), "f");
    too_many.photo_ids = (0..11).map(|_| claims::ClaimPhotoId::new()).collect();
    assert_eq!(go(too_many).await, "TOO_MANY_PHOTOS");
    let mut unknown = report(d.car, t(14, 0), "g");
    unknown.photo_ids = vec![claims::ClaimPhotoId::new()];
    assert_eq!(go(unknown).await, "PHOTO_NOT_FOUND");
    // A few minutes of a fast phone clock are forgiven.
    let skew = report(d.car, t(15, 3), "h");
    claims::report_claim(&mut conn, &h.clock, d.id, skew)
        .await
        .unwrap();
    assert_eq!(count(&h, "SELECT count(*) AS n FROM claims").await, 1);
}

#[tokio::test]
async fn staff_move_a_claim_to_settlement_with_history_audit_and_one_text_per_change() {
    let h = Harness::new().await;
    let d = h.driver("+447911100205", Product::Food).await;
    let ops = staff(&h).await;
    h.clock.set(t(15, 0));
    let mut conn = h.conn().await;
    let claim = claims::report_claim(&mut conn, &h.clock, d.id, report(d.car, t(14, 0), "k"))
        .await
        .unwrap()
        .claim;
    // Straight to review or settlement is refused.
    let skip = claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        claim.id,
        ClaimStatus::UnderReview,
        "x",
    )
    .await
    .unwrap_err();
    assert_eq!(code(skip), "INVALID_TRANSITION");
    let settle_early = claims::settle_claim(&mut conn, &h.clock, ops, claim.id, 100, "x")
        .await
        .unwrap_err();
    assert_eq!(code(settle_early), "INVALID_TRANSITION");
    let via_transition = claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        claim.id,
        ClaimStatus::Settled,
        "x",
    )
    .await
    .unwrap_err();
    assert_eq!(code(via_transition), "INVALID_TRANSITION");
    let no_reason = claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        claim.id,
        ClaimStatus::Acknowledged,
        " ",
    )
    .await
    .unwrap_err();
    assert_eq!(code(no_reason), "INVALID_REASON");

    h.clock.set(t(15, 10));
    let acked = claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        claim.id,
        ClaimStatus::Acknowledged,
        "Handler assigned",
    )
    .await
    .unwrap();
    assert_eq!(acked.status, ClaimStatus::Acknowledged);
    let reserved = claims::set_claim_reserve(
        &mut conn,
        &h.clock,
        ops,
        claim.id,
        150_000,
        "Initial estimate",
    )
    .await
    .unwrap();
    assert_eq!(reserved.reserve, Some(shared::Money::gbp(150_000)));
    let negative = claims::set_claim_reserve(&mut conn, &h.clock, ops, claim.id, -1, "x")
        .await
        .unwrap_err();
    assert_eq!(code(negative), "INVALID_AMOUNT");
    claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        claim.id,
        ClaimStatus::UnderReview,
        "Engineer's report in",
    )
    .await
    .unwrap();
    let settled = claims::settle_claim(
        &mut conn,
        &h.clock,
        ops,
        claim.id,
        120_000,
        "Agreed repair cost",
    )
    .await
    .unwrap();
    assert_eq!(settled.status, ClaimStatus::Settled);
    assert_eq!(settled.paid, Some(shared::Money::gbp(120_000)));
    assert_eq!(settled.closed_at, Some(t(15, 10)));
    // Closed: nothing moves any more.
    let after = claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        claim.id,
        ClaimStatus::Declined,
        "x",
    )
    .await
    .unwrap_err();
    assert_eq!(code(after), "INVALID_TRANSITION");
    let reserve_after = claims::set_claim_reserve(&mut conn, &h.clock, ops, claim.id, 1, "x")
        .await
        .unwrap_err();
    assert_eq!(code(reserve_after), "CLAIM_CLOSED");
    let withdraw_after = claims::withdraw_claim(&mut conn, &h.clock, d.id, claim.id, "x")
        .await
        .unwrap_err();
    assert_eq!(code(withdraw_after), "INVALID_TRANSITION");

    let history = claims::claim_history(&mut conn, claim.id).await.unwrap();
    let steps: Vec<_> = history
        .iter()
        .map(|c| (c.from, c.to, c.actor_type.as_str()))
        .collect();
    use ClaimStatus::*;
    assert_eq!(
        steps,
        vec![
            (None, Reported, "driver"),
            (Some(Reported), Acknowledged, "staff"),
            (Some(Acknowledged), UnderReview, "staff"),
            (Some(UnderReview), Settled, "staff"),
        ]
    );
    assert_eq!(history[3].reason, "Agreed repair cost");
    assert_eq!(
        count(
            &h,
            "SELECT count(*) AS n FROM audit_log WHERE action LIKE 'claim.%'"
        )
        .await,
        5
    );
    for status in ["acknowledged", "under_review", "settled"] {
        let cause = format!("claim_status:{}:{status}", claim.id);
        assert!(
            notifications::find_by_cause(&mut conn, &cause)
                .await
                .unwrap()
                .is_some(),
            "{cause}"
        );
    }
    assert_eq!(
        count(
            &h,
            "SELECT count(*) AS n FROM notifications WHERE template = 'claim_updated'"
        )
        .await,
        3
    );
}

#[tokio::test]
async fn the_driver_withdraws_their_own_open_claim_only() {
    let h = Harness::new().await;
    let d = h.driver("+447911100206", Product::Food).await;
    let other = h.driver("+447911100207", Product::Food).await;
    let ops = staff(&h).await;
    h.clock.set(t(15, 0));
    let mut conn = h.conn().await;
    let claim = claims::report_claim(&mut conn, &h.clock, d.id, report(d.car, t(14, 0), "k"))
        .await
        .unwrap()
        .claim;
    let not_theirs = claims::withdraw_claim(&mut conn, &h.clock, other.id, claim.id, "mine now")
        .await
        .unwrap_err();
    assert_eq!(code(not_theirs), "CLAIM_NOT_FOUND");
    let withdrawn =
        claims::withdraw_claim(&mut conn, &h.clock, d.id, claim.id, "Sorted it privately")
            .await
            .unwrap();
    assert_eq!(withdrawn.status, ClaimStatus::Withdrawn);
    assert!(withdrawn.closed_at.is_some());
    let again = claims::withdraw_claim(&mut conn, &h.clock, d.id, claim.id, "again")
        .await
        .unwrap_err();
    assert_eq!(code(again), "INVALID_TRANSITION");
    let declined = claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        claim.id,
        ClaimStatus::Declined,
        "x",
    )
    .await
    .unwrap_err();
    assert_eq!(code(declined), "INVALID_TRANSITION");
    let unknown = claims::withdraw_claim(&mut conn, &h.clock, d.id, claims::ClaimId::new(), "x")
        .await
        .unwrap_err();
    assert_eq!(code(unknown), "CLAIM_NOT_FOUND");
}

#[tokio::test]
async fn lists_page_by_report_time_and_filter_by_status() {
    let h = Harness::new().await;
    let d = h.driver("+447911100208", Product::Food).await;
    let ops = staff(&h).await;
    let mut conn = h.conn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        h.clock.set(t(15, i));
        let c = claims::report_claim(
            &mut conn,
            &h.clock,
            d.id,
            report(d.car, t(14, 0), &format!("k{i}")),
        )
        .await
        .unwrap()
        .claim;
        ids.push(c.id);
    }
    claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        ids[1],
        ClaimStatus::Acknowledged,
        "ok",
    )
    .await
    .unwrap();
    let mine = claims::ClaimFilter {
        driver_id: Some(d.id),
        statuses: vec![],
    };
    let first = claims::list_claims(&mut conn, &mine, claims::ListOrder::NewestFirst, None, 2)
        .await
        .unwrap();
    assert!(first.has_next_page);
    let got: Vec<_> = first.edges.iter().map(|e| e.node.id).collect();
    assert_eq!(got, vec![ids[4], ids[3]]);
    let rest = claims::list_claims(
        &mut conn,
        &mine,
        claims::ListOrder::NewestFirst,
        Some(&first.edges[1].cursor),
        10,
    )
    .await
    .unwrap();
    assert!(!rest.has_next_page);
    let got: Vec<_> = rest.edges.iter().map(|e| e.node.id).collect();
    assert_eq!(got, vec![ids[2], ids[1], ids[0]]);
    let queue = claims::ClaimFilter {
        driver_id: None,
        statuses: vec![ClaimStatus::Reported],
    };
    let page = claims::list_claims(&mut conn, &queue, claims::ListOrder::OldestFirst, None, 10)
        .await
        .unwrap();
    let got: Vec<_> = page.edges.iter().map(|e| e.node.id).collect();
    assert_eq!(got, vec![ids[0], ids[2], ids[3], ids[4]]);
    let bad = claims::list_claims(
        &mut conn,
        &queue,
        claims::ListOrder::OldestFirst,
        Some("nope"),
        10,
    )
    .await
    .unwrap_err();
    assert_eq!(code(bad), "INVALID_CURSOR");
}
