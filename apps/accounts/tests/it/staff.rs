//! Staff users and their sessions.

use crate::support::*;
use accounts::{
    Actor, NewStaff, Role, StaffId, authenticate_staff, create_staff, disable_staff, get_staff,
    staff_sign_in, staff_sign_out,
};
use chrono::Duration;
use shared::Clock;
use std::time::Instant;
use testkit::TestDb;

const PASSWORD: &str = "correct horse battery";

fn new_staff(email: &str, role: Role) -> NewStaff {
    NewStaff {
        email: email.into(),
        name: "Olive Ops".into(),
        role,
        password: PASSWORD.into(),
    }
}

#[tokio::test]
async fn staff_are_created_with_a_hashed_password_and_an_audit_row() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let admin = StaffId::new();
    let staff = create_staff(
        &mut conn,
        &clock,
        Actor::Staff(admin),
        new_staff(" Olive@ShiftCover.example ", Role::Ops),
    )
    .await
    .unwrap();
    assert_eq!(staff.email.as_str(), "olive@shiftcover.example");
    assert_eq!(staff.role, Role::Ops);
    assert_eq!(get_staff(&mut conn, staff.id).await.unwrap(), staff);

    use accounts::schema::staff as t;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let hash: String = t::table
        .select(t::password_hash)
        .first(&mut conn)
        .await
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains(PASSWORD));

    let audit = audit_rows(&mut conn, "staff.created").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "staff");
    assert_eq!(audit[0].1.as_deref(), Some(admin.to_string().as_str()));
    assert_eq!(audit[0].2, staff.id.to_string());
    assert_eq!(audit[0].3["role"], "ops");
}

#[tokio::test]
async fn weak_passwords_bad_emails_and_duplicate_emails_are_refused() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();

    let mut weak = new_staff("olive@shiftcover.example", Role::Ops);
    weak.password = "elevenchars".into();
    let err = create_staff(&mut conn, &clock, Actor::System, weak)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "WEAK_PASSWORD");
    assert_eq!(field(&err).as_deref(), Some("password"));

    let err = create_staff(
        &mut conn,
        &clock,
        Actor::System,
        new_staff("olive", Role::Ops),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "INVALID_EMAIL");

    create_staff(
        &mut conn,
        &clock,
        Actor::System,
        new_staff("olive@shiftcover.example", Role::Ops),
    )
    .await
    .unwrap();
    let err = create_staff(
        &mut conn,
        &clock,
        Actor::System,
        new_staff("OLIVE@shiftcover.example", Role::Finance),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "DUPLICATE_EMAIL");
    assert_eq!(field(&err).as_deref(), Some("email"));
    assert_eq!(audit_rows(&mut conn, "staff.created").await.len(), 1);
}

#[tokio::test]
async fn sign_in_authenticate_and_sign_out() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let staff = create_staff(
        &mut conn,
        &clock,
        Actor::System,
        new_staff("fin@shiftcover.example", Role::Finance),
    )
    .await
    .unwrap();

    let signed_in = staff_sign_in(&mut conn, &clock, "Fin@ShiftCover.example", PASSWORD)
        .await
        .unwrap();
    assert!(signed_in.token.starts_with("scs_"));
    assert_eq!(signed_in.expires_at, clock.now() + Duration::hours(12));
    assert_eq!(signed_in.principal.staff_id, staff.id);
    assert_eq!(signed_in.principal.role, Role::Finance);

    let principal = authenticate_staff(&mut conn, &clock, &signed_in.token)
        .await
        .unwrap();
    assert_eq!(principal, signed_in.principal);
    assert!(principal.has(Role::Finance));
    assert!(!principal.has(Role::Ops));

    let audit = audit_rows(&mut conn, "staff.signed_in").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].1.as_deref(), Some(staff.id.to_string().as_str()));

    // Expiry after 12 hours.
    clock.advance(Duration::hours(12));
    let err = authenticate_staff(&mut conn, &clock, &signed_in.token)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "SESSION_EXPIRED");

    // Sign-out.
    let again = staff_sign_in(&mut conn, &clock, "fin@shiftcover.example", PASSWORD)
        .await
        .unwrap();
    assert!(
        staff_sign_out(&mut conn, &clock, again.principal.session_id)
            .await
            .unwrap()
    );
    let err = authenticate_staff(&mut conn, &clock, &again.token)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "SESSION_REVOKED");
    let err = authenticate_staff(&mut conn, &clock, "scs_nope")
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "UNAUTHENTICATED");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_are_indistinguishable_including_in_argon2_work() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    create_staff(
        &mut conn,
        &clock,
        Actor::System,
        new_staff("ops@shiftcover.example", Role::Ops),
    )
    .await
    .unwrap();

    // Warm up the connection and the blocking pool so neither timing below pays for it.
    let _ = staff_sign_in(
        &mut conn,
        &clock,
        "ops@shiftcover.example",
        "warm-up-password",
    )
    .await;

    let started = Instant::now();
    let wrong = staff_sign_in(
        &mut conn,
        &clock,
        "ops@shiftcover.example",
        "not the password",
    )
    .await
    .unwrap_err();
    let wrong_took = started.elapsed();

    let started = Instant::now();
    let unknown = staff_sign_in(
        &mut conn,
        &clock,
        "nobody@shiftcover.example",
        "not the password",
    )
    .await
    .unwrap_err();
    let unknown_took = started.elapsed();

    let malformed = staff_sign_in(&mut conn, &clock, "not an email", "x")
        .await
        .unwrap_err();

    assert_eq!(code(&wrong), "INVALID_CREDENTIALS");
    assert_eq!(unknown.user_error(), wrong.user_error());
    assert_eq!(malformed.user_error(), wrong.user_error());
    // The unknown email paid for a full argon2 verification (tens to hundreds of milliseconds);
    // without the dummy hash it would take a single fast query. A generous ratio keeps this
    // stable on a busy machine while still catching a missing dummy verification.
    assert!(
        unknown_took * 4 >= wrong_took,
        "unknown email took {unknown_took:?}, wrong password {wrong_took:?}"
    );
    assert!(audit_rows(&mut conn, "staff.signed_in").await.is_empty());
}

#[tokio::test]
async fn a_disabled_user_cannot_sign_in_and_their_sessions_stop_working() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let admin = create_staff(
        &mut conn,
        &clock,
        Actor::System,
        new_staff("admin@shiftcover.example", Role::Admin),
    )
    .await
    .unwrap();
    let ops = create_staff(
        &mut conn,
        &clock,
        Actor::Staff(admin.id),
        new_staff("ops@shiftcover.example", Role::Ops),
    )
    .await
    .unwrap();
    let signed_in = staff_sign_in(&mut conn, &clock, "ops@shiftcover.example", PASSWORD)
        .await
        .unwrap();

    let disabled = disable_staff(&mut conn, &clock, Actor::Staff(admin.id), ops.id)
        .await
        .unwrap();
    assert_eq!(disabled.disabled_at, Some(clock.now()));
    let err = authenticate_staff(&mut conn, &clock, &signed_in.token)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "ACCOUNT_DISABLED");

    // The right password learns the account is disabled; a wrong one learns nothing.
    let err = staff_sign_in(&mut conn, &clock, "ops@shiftcover.example", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ACCOUNT_DISABLED");
    let err = staff_sign_in(
        &mut conn,
        &clock,
        "ops@shiftcover.example",
        "wrong password!",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "INVALID_CREDENTIALS");

    // Disabling again changes nothing and writes no second audit row.
    clock.advance(Duration::hours(1));
    let again = disable_staff(&mut conn, &clock, Actor::Staff(admin.id), ops.id)
        .await
        .unwrap();
    assert_eq!(again.disabled_at, disabled.disabled_at);
    let audit = audit_rows(&mut conn, "staff.disabled").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].3["sessions_revoked"], 1);

    let err = disable_staff(&mut conn, &clock, Actor::System, StaffId::new())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
}

#[tokio::test]
async fn a_password_is_set_only_when_it_differs() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    create_staff(
        &mut conn,
        &clock,
        Actor::System,
        new_staff("demo@shiftcover.example", Role::Ops),
    )
    .await
    .unwrap();
    let (_, changed) = accounts::ensure_staff_password(
        &mut conn,
        &clock,
        Actor::System,
        "demo@shiftcover.example",
        PASSWORD,
    )
    .await
    .unwrap();
    assert!(!changed, "the same password is left alone");

    let (staff, changed) = accounts::ensure_staff_password(
        &mut conn,
        &clock,
        Actor::System,
        " Demo@ShiftCover.example",
        "a new demo password",
    )
    .await
    .unwrap();
    assert!(changed);
    assert_eq!(staff.email.as_str(), "demo@shiftcover.example");
    assert!(
        staff_sign_in(&mut conn, &clock, "demo@shiftcover.example", PASSWORD)
            .await
            .is_err()
    );
    staff_sign_in(
        &mut conn,
        &clock,
        "demo@shiftcover.example",
        "a new demo password",
    )
    .await
    .unwrap();
    let audited = testkit::count(
        &mut conn,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'staff.password_set'",
    )
    .await
    .unwrap();
    assert_eq!(audited, 1);

    for (email, password, code) in [
        (
            "nobody@shiftcover.example",
            "a long enough one",
            "NOT_FOUND",
        ),
        ("demo@shiftcover.example", "short", "WEAK_PASSWORD"),
    ] {
        let err =
            accounts::ensure_staff_password(&mut conn, &clock, Actor::System, email, password)
                .await
                .unwrap_err();
        assert_eq!(err.user_error().map(|u| u.code), Some(code), "{email}");
    }
}
