//! Partners and API keys.

use crate::support::*;
use accounts::schema::partner_api_keys;
use accounts::{
    Actor, ApiKeyId, PartnerId, PartnerStatus, Scope, StaffId, authenticate_partner_key,
    create_api_key, create_partner, get_api_key, list_api_keys, revoke_api_key, rotate_api_key,
    set_partner_status,
};
use chrono::Duration;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use shared::Clock;
use testkit::TestDb;

fn admin() -> Actor {
    Actor::Staff(StaffId::new())
}

fn assert_key_shape(plaintext: &str, mode: &str, prefix: &str) {
    let rest = plaintext
        .strip_prefix(&format!("sck_{mode}_"))
        .unwrap_or_else(|| panic!("{plaintext}"));
    let (p, secret) = rest.split_once('_').unwrap();
    assert_eq!(p, prefix);
    assert_eq!(p.len(), 8);
    assert!(secret.len() >= 32);
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
}

#[tokio::test]
async fn a_key_is_shown_once_stored_hashed_and_authenticates_with_its_scopes() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let partner = create_partner(&mut conn, &clock, admin(), " Deliveroo-ish ")
        .await
        .unwrap();
    assert_eq!(partner.name, "Deliveroo-ish");
    assert_eq!(partner.status, PartnerStatus::Active);

    let (info, plaintext) = create_api_key(
        &mut conn,
        &clock,
        admin(),
        partner.id,
        &[Scope::ShiftsWrite, Scope::DriversLink, Scope::ShiftsWrite],
        false,
    )
    .await
    .unwrap();
    assert_key_shape(&plaintext, "live", &info.prefix);
    assert_eq!(info.scopes, vec![Scope::DriversLink, Scope::ShiftsWrite]);
    assert!(!info.test_mode);
    assert_eq!(info.expires_at, None);

    let stored: Vec<u8> = partner_api_keys::table
        .select(partner_api_keys::key_hash)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored,
        <sha2::Sha256 as sha2::Digest>::digest(plaintext.as_bytes()).to_vec()
    );

    let principal = authenticate_partner_key(&mut conn, &clock, &plaintext)
        .await
        .unwrap();
    assert_eq!(principal.partner_id, partner.id);
    assert_eq!(principal.key_id, info.id);
    assert!(principal.has_scope(Scope::ShiftsWrite));
    assert!(!principal.has_scope(Scope::CoverRead));
    assert!(!principal.test_mode);
    assert_eq!(
        get_api_key(&mut conn, info.id).await.unwrap().last_used_at,
        Some(clock.now())
    );

    let audit = audit_rows(&mut conn, "partner.api_key_created").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].2, info.id.to_string());
    assert_eq!(
        audit[0].3["scopes"],
        serde_json::json!(["drivers:link", "shifts:write"])
    );
    assert!(!audit[0].3.to_string().contains(&plaintext));
    assert_eq!(audit_rows(&mut conn, "partner.created").await.len(), 1);
}

#[tokio::test]
async fn test_keys_say_so() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let partner = create_partner(&mut conn, &clock, admin(), "Acme Rides")
        .await
        .unwrap();
    let (info, plaintext) = create_api_key(
        &mut conn,
        &clock,
        admin(),
        partner.id,
        &[Scope::CoverRead],
        true,
    )
    .await
    .unwrap();
    assert_key_shape(&plaintext, "test", &info.prefix);
    let principal = authenticate_partner_key(&mut conn, &clock, &plaintext)
        .await
        .unwrap();
    assert!(principal.test_mode);

    // The same secret presented as a live key is not this key.
    let as_live = plaintext.replacen("sck_test_", "sck_live_", 1);
    let err = authenticate_partner_key(&mut conn, &clock, &as_live)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "UNAUTHENTICATED");
}

#[tokio::test]
async fn key_creation_needs_a_scope_and_a_real_partner() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let partner = create_partner(&mut conn, &clock, admin(), "Acme Rides")
        .await
        .unwrap();
    let err = create_api_key(&mut conn, &clock, admin(), partner.id, &[], false)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_SCOPE");
    assert_eq!(field(&err).as_deref(), Some("scopes"));
    let err = create_api_key(
        &mut conn,
        &clock,
        admin(),
        PartnerId::new(),
        &[Scope::CoverRead],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
    assert_eq!(field(&err).as_deref(), Some("partnerId"));
    let err = create_partner(&mut conn, &clock, admin(), "  ")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_NAME");
}

#[tokio::test]
async fn unknown_wrong_and_malformed_keys_are_unauthenticated() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let partner = create_partner(&mut conn, &clock, admin(), "Acme Rides")
        .await
        .unwrap();
    let (info, plaintext) = create_api_key(
        &mut conn,
        &clock,
        admin(),
        partner.id,
        &[Scope::CoverRead],
        false,
    )
    .await
    .unwrap();
    let right_prefix_wrong_secret = format!("sck_live_{}_{}", info.prefix, "A".repeat(40));
    let unknown_prefix = format!("sck_live_zzzzzzzz_{}", "A".repeat(40));
    for bad in [
        right_prefix_wrong_secret.as_str(),
        unknown_prefix.as_str(),
        "",
        "sck_live_",
        &plaintext[..plaintext.len() - 1],
    ] {
        let err = authenticate_partner_key(&mut conn, &clock, bad)
            .await
            .unwrap_err();
        assert_eq!(auth_code(&err), "UNAUTHENTICATED", "{bad}");
    }
}

#[tokio::test]
async fn rotation_keeps_the_old_key_working_until_the_overlap_ends() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let partner = create_partner(&mut conn, &clock, admin(), "Acme Rides")
        .await
        .unwrap();
    let (old, old_plaintext) = create_api_key(
        &mut conn,
        &clock,
        admin(),
        partner.id,
        &[Scope::ShiftsWrite, Scope::CoverRead],
        false,
    )
    .await
    .unwrap();

    let rotated_at = clock.now();
    let (new, new_plaintext) =
        rotate_api_key(&mut conn, &clock, admin(), old.id, Duration::hours(24))
            .await
            .unwrap();
    assert_ne!(new.id, old.id);
    assert_ne!(new.prefix, old.prefix);
    assert_eq!(new.scopes, old.scopes);
    assert_eq!(new.partner_id, partner.id);
    assert_eq!(new.expires_at, None);
    let old_now = get_api_key(&mut conn, old.id).await.unwrap();
    assert_eq!(old_now.expires_at, Some(rotated_at + Duration::hours(24)));

    // Both work during the overlap.
    clock.advance(Duration::hours(24) - Duration::seconds(1));
    authenticate_partner_key(&mut conn, &clock, &old_plaintext)
        .await
        .unwrap();
    authenticate_partner_key(&mut conn, &clock, &new_plaintext)
        .await
        .unwrap();

    // Then only the new one.
    clock.advance(Duration::seconds(1));
    let err = authenticate_partner_key(&mut conn, &clock, &old_plaintext)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "API_KEY_EXPIRED");
    authenticate_partner_key(&mut conn, &clock, &new_plaintext)
        .await
        .unwrap();

    // An expired key cannot be rotated again.
    let err = rotate_api_key(&mut conn, &clock, admin(), old.id, Duration::hours(1))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "API_KEY_EXPIRED");

    let audit = audit_rows(&mut conn, "partner.api_key_rotated").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].2, old.id.to_string());
    assert_eq!(audit[0].3["new_key_id"], new.id.to_string());
    assert_eq!(list_api_keys(&mut conn, partner.id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn rotation_overlap_is_bounded_and_a_zero_overlap_ends_the_old_key_now() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let partner = create_partner(&mut conn, &clock, admin(), "Acme Rides")
        .await
        .unwrap();
    let (old, old_plaintext) = create_api_key(
        &mut conn,
        &clock,
        admin(),
        partner.id,
        &[Scope::CoverRead],
        false,
    )
    .await
    .unwrap();
    for overlap in [Duration::seconds(-1), Duration::days(8)] {
        let err = rotate_api_key(&mut conn, &clock, admin(), old.id, overlap)
            .await
            .unwrap_err();
        assert_eq!(code(&err), "INVALID_OVERLAP");
        assert_eq!(field(&err).as_deref(), Some("overlap"));
    }
    let err = rotate_api_key(
        &mut conn,
        &clock,
        admin(),
        ApiKeyId::new(),
        Duration::hours(1),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");

    rotate_api_key(&mut conn, &clock, admin(), old.id, Duration::zero())
        .await
        .unwrap();
    let err = authenticate_partner_key(&mut conn, &clock, &old_plaintext)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "API_KEY_EXPIRED");
}

#[tokio::test]
async fn a_revoked_key_stops_at_once_and_cannot_be_rotated() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let partner = create_partner(&mut conn, &clock, admin(), "Acme Rides")
        .await
        .unwrap();
    let (key, plaintext) = create_api_key(
        &mut conn,
        &clock,
        admin(),
        partner.id,
        &[Scope::CoverRead],
        false,
    )
    .await
    .unwrap();
    let revoked = revoke_api_key(&mut conn, &clock, admin(), key.id)
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(clock.now()));
    let err = authenticate_partner_key(&mut conn, &clock, &plaintext)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "API_KEY_REVOKED");
    let err = rotate_api_key(&mut conn, &clock, admin(), key.id, Duration::hours(1))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "API_KEY_REVOKED");

    // Revoking twice keeps the first time and writes one audit row.
    clock.advance(Duration::minutes(1));
    let again = revoke_api_key(&mut conn, &clock, admin(), key.id)
        .await
        .unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert_eq!(
        audit_rows(&mut conn, "partner.api_key_revoked").await.len(),
        1
    );
    let err = revoke_api_key(&mut conn, &clock, admin(), ApiKeyId::new())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
}

#[tokio::test]
async fn a_suspended_partners_keys_are_refused_until_reactivated() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let partner = create_partner(&mut conn, &clock, admin(), "Acme Rides")
        .await
        .unwrap();
    let (_, plaintext) = create_api_key(
        &mut conn,
        &clock,
        admin(),
        partner.id,
        &[Scope::CoverRead],
        false,
    )
    .await
    .unwrap();
    set_partner_status(&mut conn, admin(), partner.id, PartnerStatus::Suspended)
        .await
        .unwrap();
    let err = authenticate_partner_key(&mut conn, &clock, &plaintext)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "ACCOUNT_DISABLED");
    set_partner_status(&mut conn, admin(), partner.id, PartnerStatus::Active)
        .await
        .unwrap();
    authenticate_partner_key(&mut conn, &clock, &plaintext)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_chosen_key_is_added_once_and_only_to_its_partner() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let demo = create_partner(&mut conn, &clock, admin(), "Demo")
        .await
        .unwrap();
    let other = create_partner(&mut conn, &clock, admin(), "Other")
        .await
        .unwrap();
    let key = "sck_test_chosen01_ChosenSecretOfFortyLettersAndDigits00000";
    assert_eq!(key.len(), "sck_test_".len() + 8 + 1 + 40);
    let (info, created) = accounts::ensure_api_key_with_plaintext(
        &mut conn,
        &clock,
        Actor::System,
        demo.id,
        &Scope::ALL,
        key,
    )
    .await
    .unwrap();
    assert!(created);
    assert!(info.test_mode);
    assert_eq!(info.prefix, "chosen01");
    let principal = authenticate_partner_key(&mut conn, &clock, key)
        .await
        .unwrap();
    assert_eq!(principal.partner_id, demo.id);

    // Again: the same key, nothing new.
    let (again, created) = accounts::ensure_api_key_with_plaintext(
        &mut conn,
        &clock,
        Actor::System,
        demo.id,
        &Scope::ALL,
        key,
    )
    .await
    .unwrap();
    assert!(!created);
    assert_eq!(again.id, info.id);
    assert_eq!(list_api_keys(&mut conn, demo.id).await.unwrap().len(), 1);

    // Another partner cannot take it, and a malformed key is refused.
    for (partner, text) in [
        (other.id, key),
        (demo.id, "sck_test_short_secret"),
        (demo.id, "not a key at all"),
    ] {
        let err = accounts::ensure_api_key_with_plaintext(
            &mut conn,
            &clock,
            Actor::System,
            partner,
            &Scope::ALL,
            text,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, accounts::AccountsError::NotFound("apiKey")),
            "{text}: {err:?}"
        );
    }
    assert!(list_api_keys(&mut conn, other.id).await.unwrap().is_empty());
}
