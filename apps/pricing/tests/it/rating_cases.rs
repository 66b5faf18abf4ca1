//! The underwriter's rating cases (`apps/pricing/products/*.cases.toml`), run against the versions
//! the demo seed publishes in the database.

use pricing::{
    get_product_by_code, get_published, list_test_cases, parse_rating_cases, rate, run_cases,
    seed_demo_products,
};
use std::path::Path;
use testkit::TestDb;

fn case_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("products");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".cases.toml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn every_case_file_passes_against_the_seeded_published_version() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    seed_demo_products(&mut conn).await.unwrap();

    let files = case_files();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut total = 0;
    let mut failures = Vec::new();
    for (file, text) in files {
        let cases = parse_rating_cases(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let product = get_product_by_code(&mut conn, &cases.product)
            .await
            .unwrap();
        let version = get_published(&mut conn, product.id).await.unwrap();
        // What publication checked is what the file says.
        assert_eq!(
            list_test_cases(&mut conn, version.id).await.unwrap(),
            cases.cases,
            "{file}"
        );
        for f in run_cases(&version.terms, &cases.cases) {
            failures.push(format!("{file}: {f}"));
        }
        // Every rated case gives its explanation, one line per factor.
        for c in &cases.cases {
            if let Ok(r) = rate(&version, &c.input()) {
                assert_eq!(r.explanation.len(), 6, "{}", c.name);
            }
        }
        total += cases.cases.len();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(total >= 20, "only {total} cases");
}
