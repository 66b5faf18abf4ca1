//! Benchmark of the back office's search (`staffSearch`, the search box of `/admin`) on a large
//! table of drivers: each kind of text an agent types, timed through the same function the
//! GraphQL field runs, with p50 and p99 beside the 100 ms target.
//!
//! Builds a throwaway database with `BENCH_DRIVERS` drivers (default 1,000,000), each with a
//! name, an email, a phone and a car, then runs `BENCH_QUERIES` searches of each kind (default
//! 200) with different texts. A plain `ILIKE '%…%'` over the whole table, without the indexes
//! the search uses, is timed beside it for scale.
//!
//! ```text
//! cargo bench --bench search
//! BENCH_DRIVERS=200000 cargo bench --bench search
//! ```

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use std::time::{Duration, Instant};
use testkit::TestDb;

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}"))
        })
        .unwrap_or(default)
}

const FIRST: [&str; 12] = [
    "Ada", "Grace", "Alan", "Mary", "Tim", "Ruth", "Kofi", "Priya", "Wei", "Olu", "Sara", "Ivan",
];
const LAST: [&str; 12] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Somerville",
    "Berners",
    "Franklin",
    "Mensah",
    "Patel",
    "Zhang",
    "Adeyemi",
    "Novak",
    "Petrov",
];

/// The drivers: name `<first> <last> <n>`, email `driver<n>@example.com`, phone `+447<9 digits
/// from n>`, a car registered `BN<n in base 36>`.
const GENERATE: &str = r#"
INSERT INTO drivers (id, phone, name, email, created_at, updated_at)
SELECT gen_random_uuid(),
       '+447' || lpad(n::text, 9, '0'),
       (ARRAY['Ada','Grace','Alan','Mary','Tim','Ruth','Kofi','Priya','Wei','Olu','Sara','Ivan'])[1 + n % 12]
         || ' ' ||
       (ARRAY['Lovelace','Hopper','Turing','Somerville','Berners','Franklin','Mensah','Patel','Zhang','Adeyemi','Novak','Petrov'])[1 + (n / 12) % 12]
         || ' ' || n,
       'driver' || n || '@example.com', now(), now()
  FROM generate_series(1, $1) n
"#;

const VEHICLES: &str = r#"
INSERT INTO vehicles (id, driver_id, registration, vehicle_type, make, model, created_at)
SELECT gen_random_uuid(), d.id, 'BN' || upper(to_hex((substr(d.phone, 5))::bigint)), 'car', 'Toyota', 'Prius', now()
  FROM drivers d
"#;

/// The text of the i-th search of a kind.
type TextOf<'a> = Box<dyn Fn(i64) -> String + 'a>;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let drivers = env_num("BENCH_DRIVERS", 1_000_000);
    let queries = env_num("BENCH_QUERIES", 200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = TestDb::new().await?;
        let mut conn = db.conn().await?;
        let started = Instant::now();
        diesel::sql_query(GENERATE)
            .bind::<BigInt, _>(drivers)
            .execute(&mut conn)
            .await?;
        diesel::sql_query(VEHICLES).execute(&mut conn).await?;
        diesel::sql_query("ANALYZE drivers").execute(&mut conn).await?;
        diesel::sql_query("ANALYZE vehicles").execute(&mut conn).await?;
        println!(
            "{drivers} drivers and their cars generated and indexed in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let pick = |i: i64| 1 + (i * 7_919) % drivers;
        let kinds: Vec<(&str, TextOf<'_>)> = vec![
            (
                "surname part (trigram)",
                Box::new(|i| LAST[(i % 12) as usize][..5].to_lowercase()),
            ),
            (
                "full name",
                Box::new(move |i| {
                    let n = pick(i);
                    format!(
                        "{} {} {n}",
                        FIRST[(n % 12) as usize],
                        LAST[((n / 12) % 12) as usize]
                    )
                }),
            ),
            (
                "phone, national format",
                Box::new(move |i| format!("07{:09}", pick(i))),
            ),
            (
                "email prefix",
                Box::new(move |i| format!("driver{}@exa", pick(i))),
            ),
            (
                "registration",
                Box::new(move |i| format!("bn {:x}", pick(i))),
            ),
            (
                "certificate number",
                Box::new(|i| format!("SC-{:04}-AAAA", i % 10_000)),
            ),
        ];
        println!(
            "\n{:<26} {:>8} {:>10} {:>10} {:>10}",
            "search for", "queries", "p50", "p99", "hits/query"
        );
        for (name, text) in &kinds {
            // A few untimed searches first: the figures are of a server that has been running.
            for i in 0..5 {
                graphql::ops::search::search(&mut conn, &text(queries + i), 10).await?;
            }
            let mut times = Vec::with_capacity(queries as usize);
            let mut hits = 0usize;
            for i in 0..queries {
                let q = text(i);
                let t = Instant::now();
                let found = graphql::ops::search::search(&mut conn, &q, 10).await?;
                times.push(t.elapsed());
                hits += found.len();
            }
            times.sort();
            println!(
                "{name:<26} {queries:>8} {:>8.2}ms {:>8.2}ms {:>10.1}",
                percentile(&times, 0.5).as_secs_f64() * 1e3,
                percentile(&times, 0.99).as_secs_f64() * 1e3,
                hits as f64 / queries as f64
            );
        }
        // Beside it: the obvious query without an index that fits.
        let t = Instant::now();
        diesel::sql_query(
            "SELECT count(*) FROM drivers WHERE name ILIKE '%' || 'hoppe' || '%' OR email ILIKE '%hoppe%'",
        )
        .execute(&mut conn)
        .await?;
        println!(
            "\nbaseline: one unindexed ILIKE '%…%' scan of all drivers: {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        println!("target: every search under 100 ms at p99");
        anyhow::Ok(())
    })
}
