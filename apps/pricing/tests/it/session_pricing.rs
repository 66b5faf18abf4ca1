//! Properties of session pricing and of the charge breakdown (pure; no database).

use crate::support::demo_terms;
use chrono::{DateTime, Duration, TimeZone, Utc};
use pricing::{ChargeRule, VersionTerms, charge_breakdown};
use proptest::prelude::*;
use shared::Money;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
        .single()
        .unwrap()
}

fn terms() -> VersionTerms {
    demo_terms("food_delivery_hourly")
}

fn charge(t: &VersionTerms, hourly: i64, seconds: i64, before: i64) -> pricing::SessionCharge {
    t.price_session(
        Money::gbp(hourly),
        start(),
        start() + Duration::seconds(seconds),
        Money::gbp(before),
    )
    .unwrap()
}

#[test]
fn worked_examples() {
    let t = terms(); // minimum 60 minutes, per started minute, cap £20.00
    // 10 minutes at £2.34/hour: the minimum charge, one hour.
    let c = charge(&t, 234, 600, 0);
    assert_eq!(
        (c.minutes, c.billed_minutes, c.rule),
        (10, 60, ChargeRule::Minimum)
    );
    assert_eq!(c.breakdown.total, Money::gbp(234));
    // 61 minutes and 1 second: 62 started minutes = 234 × 62 / 60 = 241.8 → 242.
    let c = charge(&t, 234, 61 * 60 + 1, 0);
    assert_eq!((c.minutes, c.rule), (62, ChargeRule::PerMinute));
    assert_eq!(c.breakdown.total, Money::gbp(242));
    // 10 hours at £2.34 would be £23.40: capped at £20.00.
    let c = charge(&t, 234, 10 * 3600, 0);
    assert_eq!(c.rule, ChargeRule::Capped);
    assert_eq!(c.uncapped, Money::gbp(2340));
    assert_eq!(c.breakdown.total, Money::gbp(2000));
    // Already charged £19.00 today: only £1.00 more.
    let c = charge(&t, 234, 3600, 1900);
    assert_eq!(
        (c.rule, c.breakdown.total),
        (ChargeRule::Capped, Money::gbp(100))
    );
    // Already over the cap (e.g. a cap lowered by a new version): nothing, not a refund.
    let c = charge(&t, 234, 3600, 2500);
    assert_eq!(
        (c.rule, c.breakdown.total),
        (ChargeRule::Capped, Money::gbp(0))
    );
    // A 5-minute increment rounds started minutes beyond the minimum up to 5.
    let mut five = t.clone();
    five.rules.billing_increment_minutes = 5;
    let c = charge(&five, 600, 61 * 60, 0);
    assert_eq!((c.billed_minutes, c.breakdown.total), (65, Money::gbp(650)));
    // Mistakes are refused.
    assert!(
        t.price_session(
            Money::gbp(234),
            start(),
            start() - Duration::seconds(1),
            Money::gbp(0)
        )
        .is_err()
    );
    let eur = Money {
        minor: 234,
        currency: shared::Currency::Eur,
    };
    assert!(
        t.price_session(eur, start(), start(), Money::gbp(0))
            .is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn parts_always_add_up_to_the_total(
        total in -1_000_000_000i64..1_000_000_000,
        commission_bp in 0u32..10_000,
        ipt_bp in 0u32..=10_000,
    ) {
        let b = charge_breakdown(Money::gbp(total), commission_bp, ipt_bp).unwrap();
        prop_assert_eq!(b.net_premium.minor + b.commission.minor + b.ipt.minor, total);
        prop_assert_eq!(b.ipt_basis.minor + b.ipt.minor, total);
        // IPT never exceeds its exact value, and is within a penny of it.
        let exact_ipt_num = i128::from(total.abs()) * i128::from(ipt_bp);
        let den = 10_000 + i128::from(ipt_bp);
        let ipt = i128::from(b.ipt.minor.abs());
        prop_assert!(ipt * den <= exact_ipt_num && exact_ipt_num < (ipt + 1) * den);
        // Signs agree with the total.
        if total >= 0 {
            prop_assert!(b.net_premium.minor >= 0 && b.commission.minor >= 0 && b.ipt.minor >= 0);
        }
    }

    #[test]
    fn session_charges_hold_their_rules(
        hourly in 1i64..5_000,
        seconds in 0i64..(36 * 3600),
        extra in 1i64..600,
        before in 0i64..3_000,
        increment in 1u32..=15,
    ) {
        let mut t = terms();
        t.rules.billing_increment_minutes = increment;
        let cap = t.rules.daily_cap_minor;
        let left = (cap - before).max(0);
        let minimum = t.minimum_charge(Money::gbp(hourly)).unwrap().minor;
        let a = charge(&t, hourly, seconds, before);
        let b = charge(&t, hourly, seconds + extra, before);

        // Parts add up.
        for c in [&a, &b] {
            let p = &c.breakdown;
            prop_assert_eq!(p.net_premium.minor + p.commission.minor + p.ipt.minor, p.total.minor);
            prop_assert!(p.total.minor >= 0);
            // Never below the minimum charge unless a day's cap binds.
            if c.rule != ChargeRule::Capped {
                prop_assert!(p.total.minor >= minimum);
                prop_assert_eq!(p.total.minor, c.uncapped.minor);
            } else {
                prop_assert!(c.uncapped.minor > p.total.minor);
            }
            prop_assert!(c.billed_minutes >= c.minutes);
            prop_assert!(c.billed_minutes >= i64::from(t.rules.minimum_charge_minutes));
        }
        // By day: each part within what was left of its own day's cap, the parts adding up.
        let by_day = t
            .price_session_by_day(
                Money::gbp(hourly),
                start(),
                start() + Duration::seconds(seconds),
                None,
                |day| Money::gbp(if day == pricing::uk_day(start()) { before } else { 0 }),
            )
            .unwrap();
        prop_assert_eq!(&by_day.charge, &a);
        for (i, d) in by_day.days.iter().enumerate() {
            let cap_left = if i == 0 { left } else { cap };
            prop_assert_eq!(d.charged.minor, d.uncapped.minor.min(cap_left));
        }
        prop_assert_eq!(by_day.days.iter().map(|d| d.charged.minor).sum::<i64>(), a.breakdown.total.minor);
        prop_assert_eq!(by_day.days.iter().map(|d| d.minutes).sum::<i64>(), a.minutes);
        prop_assert_eq!(by_day.days.iter().map(|d| d.billed_minutes).sum::<i64>(), a.billed_minutes);
        // Longer never costs less (up to the cap, which holds it flat).
        prop_assert!(b.breakdown.total.minor >= a.breakdown.total.minor);
        prop_assert!(b.uncapped.minor >= a.uncapped.minor);
        // Already charged more today never costs more now.
        let later = charge(&t, hourly, seconds, before + extra);
        prop_assert!(later.breakdown.total.minor <= a.breakdown.total.minor);
    }
}

/// A session that continues a working period pays no second minimum: only what the period's
/// billed minutes grow by.
#[test]
fn a_continuation_pays_what_the_period_grows_by() {
    let t = terms(); // minimum 60 minutes, per started minute
    let cont = |seconds: i64, minutes_before: Option<i64>| {
        t.price_session_by_day(
            Money::gbp(600),
            start(),
            start() + Duration::seconds(seconds),
            minutes_before,
            |_| Money::gbp(0),
        )
        .unwrap()
        .charge
    };
    // 20 minutes of cover, then 30 more within the gap rule: 50 minutes, one minimum.
    let c = cont(30 * 60, Some(20));
    assert_eq!(
        (c.minutes, c.billed_minutes, c.rule),
        (30, 0, ChargeRule::Minimum)
    );
    assert_eq!(c.breakdown.total, Money::gbp(0));
    // 20 then 50: the period's 70 minutes bill 70, of which 60 were paid.
    let c = cont(50 * 60, Some(20));
    assert_eq!((c.billed_minutes, c.rule), (10, ChargeRule::PerMinute));
    assert_eq!(c.breakdown.total, Money::gbp(100));
    // 60 then 5 (a late partner job's tail after the driver's own hour): 5 minutes.
    let c = cont(5 * 60, Some(60));
    assert_eq!(c.billed_minutes, 5);
    assert_eq!(c.breakdown.total, Money::gbp(50));
    // Nothing before: the ordinary price.
    assert_eq!(cont(10 * 60, None), charge(&t, 600, 600, 0));
    // After a session of no time at all, its minimum still covers the first hour.
    assert_eq!(cont(30 * 60, Some(0)).billed_minutes, 0);
}

proptest! {
    /// However a working period is cut into sessions, its sessions together bill what one
    /// session over the same minutes would.
    #[test]
    fn a_period_bills_the_same_however_it_is_cut(parts in proptest::collection::vec(0i64..300, 1..6)) {
        let t = terms();
        let mut before = 0;
        let mut billed = 0;
        for (i, minutes) in parts.iter().enumerate() {
            let c = t
                .price_session_by_day(
                    Money::gbp(600),
                    start(),
                    start() + Duration::minutes(*minutes),
                    (i > 0).then_some(before),
                    |_| Money::gbp(0),
                )
                .unwrap()
                .charge;
            billed += c.billed_minutes;
            before += minutes;
        }
        let whole = charge(&t, 600, before * 60, 0);
        prop_assert_eq!(billed, whole.billed_minutes);
    }
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap()
}

/// The cap is by UK day: a session after the day's cap was reached is free until midnight, and
/// its part on the next day is charged against the next day's cap.
#[test]
fn a_session_across_midnight_pays_each_days_cap() {
    let t = terms(); // minimum 60 minutes, per started minute, cap £20.00
    let first = pricing::uk_day(at(2026, 11, 23, 23, 50));
    // 23:50 to 15:50 at £2.34/hour, the day's £20.00 already charged.
    let priced = t
        .price_session_by_day(
            Money::gbp(234),
            at(2026, 11, 23, 23, 50),
            at(2026, 11, 24, 15, 50),
            None,
            |day| Money::gbp(if day == first { 2000 } else { 0 }),
        )
        .unwrap();
    let parts: Vec<(String, i64, i64, i64)> = priced
        .days
        .iter()
        .map(|d| {
            (
                d.day.to_string(),
                d.minutes,
                d.billed_minutes,
                d.charged.minor,
            )
        })
        .collect();
    // 10 minutes on the 23rd, free (that day's cap is reached); 950 minutes on the 24th, priced
    // 234 × 960 / 60 − 234 × 10 / 60 = 3744 − 39 = 3705, capped at that day's £20.00.
    assert_eq!(
        parts,
        vec![
            ("2026-11-23".into(), 10, 10, 0),
            ("2026-11-24".into(), 950, 950, 2000),
        ]
    );
    assert_eq!(priced.charge.uncapped, Money::gbp(3744));
    assert_eq!(priced.charge.rule, ChargeRule::Capped);
    assert_eq!(priced.charge.breakdown.total, Money::gbp(2000));
    assert_eq!(priced.charge.minutes, 960);
    // A shorter one, 23:50 to 01:50: the 24th's 110 minutes are charged in full.
    let priced = t
        .price_session_by_day(
            Money::gbp(600),
            at(2026, 11, 23, 23, 50),
            at(2026, 11, 24, 1, 50),
            None,
            |day| Money::gbp(if day == first { 2000 } else { 0 }),
        )
        .unwrap();
    assert_eq!(
        priced
            .days
            .iter()
            .map(|d| d.charged.minor)
            .collect::<Vec<_>>(),
        vec![0, 1100]
    );
    assert_eq!(priced.charge.breakdown.total, Money::gbp(1100));
    // 23:50 to 00:20 on days with nothing charged: the minimum, £6.00, split by time (£1 + £5).
    let priced = t
        .price_session_by_day(
            Money::gbp(600),
            at(2026, 11, 23, 23, 50),
            at(2026, 11, 24, 0, 20),
            None,
            |_| Money::gbp(0),
        )
        .unwrap();
    assert_eq!(
        priced
            .days
            .iter()
            .map(|d| (d.billed_minutes, d.charged.minor))
            .collect::<Vec<_>>(),
        vec![(10, 100), (50, 500)]
    );
    assert_eq!(priced.charge.rule, ChargeRule::Minimum);
}

/// On the days the clocks change, a UK day is 23 or 25 hours long: the cap follows the UK day.
#[test]
fn dst_change_days_price_by_the_uk_day() {
    let t = terms();
    // 29 March 2026, clocks forward at 01:00 UTC: the UK day ends at 23:00 UTC.
    let priced = t
        .price_session_by_day(
            Money::gbp(600),
            at(2026, 3, 29, 22, 0),
            at(2026, 3, 30, 0, 0),
            None,
            |_| Money::gbp(0),
        )
        .unwrap();
    let parts: Vec<(String, i64)> = priced
        .days
        .iter()
        .map(|d| (d.day.to_string(), d.minutes))
        .collect();
    assert_eq!(
        parts,
        vec![("2026-03-29".into(), 60), ("2026-03-30".into(), 60)]
    );
    // 25 October 2026, clocks back at 01:00 UTC: 23:00 UTC on the 24th to 00:00 UTC on the 26th
    // is the whole 25-hour day of the 25th plus an hour each side.
    let priced = t
        .price_session_by_day(
            Money::gbp(600),
            at(2026, 10, 24, 22, 0),
            at(2026, 10, 26, 1, 0),
            None,
            |_| Money::gbp(0),
        )
        .unwrap();
    let parts: Vec<(String, i64, i64)> = priced
        .days
        .iter()
        .map(|d| (d.day.to_string(), d.minutes, d.charged.minor))
        .collect();
    // £6/hour: 60 minutes (the minimum) £6; 25 hours £150 capped at £20; 60 minutes £6.
    assert_eq!(
        parts,
        vec![
            ("2026-10-24".into(), 60, 600),
            ("2026-10-25".into(), 25 * 60, 2000),
            ("2026-10-26".into(), 60, 600),
        ]
    );
    assert_eq!(priced.charge.breakdown.total, Money::gbp(3200));
}
