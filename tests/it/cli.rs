//! Settings errors stop the process with a message naming the key.

use std::process::Command;

fn run(envs: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shiftcover"));
    cmd.arg("migrate");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_setting_is_named() {
    let (code, err) = run(&[("SHIFTCOVER__DATABASE__POOLSIZE", "3")]);
    assert_eq!(code, 2);
    assert!(err.contains("poolsize"), "{err}");
}

#[test]
fn malformed_setting_is_named() {
    let (code, err) = run(&[("SHIFTCOVER__HTTP__BIND", "not-an-address")]);
    assert_eq!(code, 2);
    assert!(err.contains("http.bind"), "{err}");
}

#[tokio::test]
async fn migrate_applies_to_an_empty_database_and_is_repeatable() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let name = format!("sc_migrate_{}", uuid::Uuid::new_v4().simple());
    let admin = testkit::admin_url();
    let mut conn = AsyncPgConnection::establish(&admin).await.unwrap();
    conn.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    for _ in 0..2 {
        let (code, err) = run(&[
            ("SHIFTCOVER__DATABASE__URL", &url),
            ("SHIFTCOVER__LOG__FILTER", "warn"),
        ]);
        assert_eq!(code, 0, "{err}");
    }
    let mut db = AsyncPgConnection::establish(&url).await.unwrap();
    db.batch_execute("SELECT 1 FROM outbox_jobs LIMIT 1")
        .await
        .unwrap();
    drop(db);
    conn.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}
