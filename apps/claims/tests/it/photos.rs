//! Photo uploads: checked by content and size, stored, and attached to a claim once.

use crate::support::*;
use claims::{FsPhotoStore, PhotoStore, PhotoType};

const JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
];

fn code(e: claims::ClaimsError) -> &'static str {
    e.user_error().expect("a user error").code
}

fn temp_store() -> (FsPhotoStore, std::path::PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("sc-claim-photos-{}", uuid::Uuid::new_v4().simple()));
    (FsPhotoStore::new(&dir), dir)
}

#[tokio::test]
async fn photos_are_checked_stored_and_attached_to_one_claim() {
    let h = Harness::new().await;
    let d = h.driver("+447911100401", Product::Food).await;
    let other = h.driver("+447911100402", Product::Food).await;
    let (store, dir) = temp_store();
    h.clock.set(t(15, 0));
    let mut conn = h.conn().await;
    let photo = claims::upload_photo(&mut conn, &h.clock, &store, d.id, JPEG, 1024)
        .await
        .unwrap();
    assert_eq!(photo.photo_type, PhotoType::Jpeg);
    assert_eq!(photo.size_bytes, JPEG.len() as i64);
    assert_eq!(store.get(&photo.storage_key).await.unwrap().unwrap(), JPEG);
    assert!(dir.join(&photo.storage_key).exists());

    let pdf = claims::upload_photo(
        &mut conn,
        &h.clock,
        &store,
        d.id,
        b"%PDF-1.7 not a photo",
        1024,
    )
    .await
    .unwrap_err();
    assert_eq!(code(pdf), "UNSUPPORTED_PHOTO_TYPE");
    let big = [JPEG, &[0u8; 2048][..]].concat();
    let too_big = claims::upload_photo(&mut conn, &h.clock, &store, d.id, &big, 1024)
        .await
        .unwrap_err();
    assert_eq!(code(too_big), "PHOTO_TOO_LARGE");
    assert_eq!(
        std::fs::read_dir(dir.join(d.id.uuid().simple().to_string()))
            .unwrap()
            .count(),
        1
    );

    // Another driver cannot use it.
    let mut theirs = report(other.car, t(14, 0), "theirs");
    theirs.photo_ids = vec![photo.id];
    let e = claims::report_claim(&mut conn, &h.clock, other.id, theirs)
        .await
        .unwrap_err();
    assert_eq!(code(e), "PHOTO_NOT_FOUND");

    let mut mine = report(d.car, t(14, 0), "mine");
    mine.photo_ids = vec![photo.id];
    let claim = claims::report_claim(&mut conn, &h.clock, d.id, mine)
        .await
        .unwrap()
        .claim;
    let attached = claims::photos_of_claims(&mut conn, &[claim.id])
        .await
        .unwrap();
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].claim_id, Some(claim.id));

    let mut again = report(d.car, t(14, 5), "again");
    again.photo_ids = vec![photo.id];
    let e = claims::report_claim(&mut conn, &h.clock, d.id, again)
        .await
        .unwrap_err();
    assert_eq!(code(e), "PHOTO_ALREADY_ATTACHED");
    let _ = std::fs::remove_dir_all(&dir);
}
