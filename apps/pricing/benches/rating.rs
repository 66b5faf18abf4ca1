//! Throughput of the pure pricing functions: `rate` and `price_session` on the demo products.
//!
//! `cargo bench -p shiftcover-pricing --bench rating` (criterion prints time per call and calls
//! per second).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use accounts::VehicleType;
use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shared::Money;
use shiftcover_pricing::{RatingInput, VersionTerms, charge_breakdown, demo_products};
use std::hint::black_box;

fn terms(code: &str) -> VersionTerms {
    demo_products()
        .unwrap()
        .into_iter()
        .find(|p| p.code == code)
        .unwrap()
        .terms
}

/// A spread of drivers, vehicles, areas and times, so no single path is measured alone.
fn inputs() -> Vec<RatingInput> {
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
    let types = [
        VehicleType::Bicycle,
        VehicleType::EBike,
        VehicleType::Scooter,
        VehicleType::Motorbike,
        VehicleType::Car,
    ];
    let postcodes = [
        "E1 6AN", "SW1A 1AA", "M1 1AE", "KT1 1AA", "B1 1AA", "OX1 2JD",
    ];
    (0..240u32)
        .map(|i| RatingInput {
            vehicle_type: types[i as usize % types.len()],
            driver_age: 18 + (i * 7) % 60,
            years_licensed: (i * 3) % 30,
            claims_5y: i % 3,
            postcode: postcodes[i as usize % postcodes.len()].to_owned(),
            start: start + Duration::minutes(i64::from(i) * 37),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let food = terms("food_delivery_hourly");
    let inputs = inputs();
    let mut group = c.benchmark_group("pricing");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("rate", |b| {
        b.iter(|| {
            for input in &inputs {
                black_box(food.rate(black_box(input)).unwrap());
            }
        })
    });

    let start = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let sessions: Vec<(Money, chrono::DateTime<Utc>, Money)> = (0..240i64)
        .map(|i| {
            (
                Money::gbp(100 + i * 3),
                start + Duration::seconds(i * 263),
                Money::gbp((i * 17) % 2500),
            )
        })
        .collect();
    group.throughput(Throughput::Elements(sessions.len() as u64));
    group.bench_function("price_session", |b| {
        b.iter(|| {
            for (hourly, end, before) in &sessions {
                black_box(
                    food.price_session(*hourly, start, black_box(*end), *before)
                        .unwrap(),
                );
            }
        })
    });
    group.bench_function("charge_breakdown", |b| {
        b.iter(|| {
            for (hourly, _, _) in &sessions {
                black_box(charge_breakdown(black_box(*hourly), 2500, 1200).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
