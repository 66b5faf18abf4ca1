//! The claims bordereau: claims open during a month, with status, paid and reserve as at the
//! month's end.

use crate::states::staff;
use crate::support::*;
use chrono::{TimeZone, Utc};
use claims::ClaimStatus;
use shared::Money;

#[tokio::test]
async fn rows_show_each_claim_as_it_stood_at_the_months_end() {
    let h = Harness::new().await;
    let d = h.driver("+447911100501", Product::Food).await;
    let ops = staff(&h).await;
    h.clock.set(t(15, 0));
    let s = h.driver_session(d.id, d.car, t(12, 0), t(13, 0)).await;
    let mut conn = h.conn().await;
    let covered = claims::report_claim(&mut conn, &h.clock, d.id, report(d.car, t(12, 30), "a"))
        .await
        .unwrap()
        .claim;
    h.clock.set(t(15, 1));
    let uncovered = claims::report_claim(&mut conn, &h.clock, d.id, report(d.car, t(14, 0), "b"))
        .await
        .unwrap()
        .claim;
    claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        covered.id,
        ClaimStatus::Acknowledged,
        "ok",
    )
    .await
    .unwrap();
    claims::set_claim_reserve(&mut conn, &h.clock, ops, covered.id, 80_000, "estimate")
        .await
        .unwrap();
    claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        uncovered.id,
        ClaimStatus::Declined,
        "No cover at the time",
    )
    .await
    .unwrap();
    // In December the covered claim is reviewed and settled.
    let december = |d: u32| {
        Utc.with_ymd_and_hms(2026, 12, d, 10, 0, 0)
            .single()
            .unwrap()
    };
    h.clock.set(december(3));
    claims::set_claim_reserve(&mut conn, &h.clock, ops, covered.id, 95_000, "revised")
        .await
        .unwrap();
    claims::transition_claim(
        &mut conn,
        &h.clock,
        ops,
        covered.id,
        ClaimStatus::UnderReview,
        "ok",
    )
    .await
    .unwrap();
    claims::settle_claim(&mut conn, &h.clock, ops, covered.id, 90_000, "paid")
        .await
        .unwrap();

    let november = claims::bordereau_rows(&mut conn, 2026, 11).await.unwrap();
    assert_eq!(november.len(), 2);
    let row = &november[0];
    assert_eq!(row.claim_reference, covered.reference);
    assert_eq!(
        row.certificate_reference.as_deref(),
        Some(s.certificate_number.as_str())
    );
    assert_eq!(row.date_of_loss, t(12, 30));
    assert_eq!(row.date_advised, t(15, 0));
    assert_eq!(row.status, ClaimStatus::Acknowledged);
    assert_eq!(row.paid, Money::gbp(0));
    assert_eq!(row.reserve, Money::gbp(80_000));
    let row = &november[1];
    assert_eq!(row.claim_reference, uncovered.reference);
    assert_eq!(row.certificate_reference, None);
    assert_eq!(row.status, ClaimStatus::Declined);

    // December: the declined claim closed in November is gone; the other settled.
    let dec = claims::bordereau_rows(&mut conn, 2026, 12).await.unwrap();
    assert_eq!(dec.len(), 1);
    assert_eq!(dec[0].status, ClaimStatus::Settled);
    assert_eq!(dec[0].paid, Money::gbp(90_000));
    assert_eq!(dec[0].reserve, Money::gbp(0));
    assert!(
        claims::bordereau_rows(&mut conn, 2026, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(claims::bordereau_rows(&mut conn, 2026, 13).await.is_err());
}
