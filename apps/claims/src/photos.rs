//! Claim photos: checking an upload (size, and type by its content), storing it behind a
//! [`PhotoStore`], and recording it for the driver until a claim takes it.
//!
//! Invariants:
//! - the type of a photo is what its first bytes say ([`sniff`]), never what the client claims:
//!   only JPEG, PNG, HEIC and WebP are kept; anything else, or an empty or oversized upload, is
//!   refused before a byte is stored;
//! - bytes are stored before the row that names them is written, so a recorded photo always has
//!   its bytes; bytes whose row could not be written are deleted again;
//! - a photo belongs to the driver who uploaded it, and to at most one claim.

use crate::error::ClaimsError;
use crate::ids::{ClaimId, ClaimPhotoId};
use crate::schema::claim_photos;
use accounts::DriverId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::Clock;
use std::path::{Component, Path, PathBuf};

/// The most photos one claim takes.
pub const MAX_PHOTOS_PER_CLAIM: usize = 10;

/// The image types accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum PhotoType {
    /// `image/jpeg`.
    Jpeg,
    /// `image/png`.
    Png,
    /// `image/heic` (HEIF stills from phones).
    Heic,
    /// `image/webp`.
    Webp,
}

impl PhotoType {
    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            PhotoType::Jpeg => "image/jpeg",
            PhotoType::Png => "image/png",
            PhotoType::Heic => "image/heic",
            PhotoType::Webp => "image/webp",
        }
    }

    /// The file extension used in storage keys.
    pub fn extension(self) -> &'static str {
        match self {
            PhotoType::Jpeg => "jpg",
            PhotoType::Png => "png",
            PhotoType::Heic => "heic",
            PhotoType::Webp => "webp",
        }
    }

    fn parse(content_type: &str) -> Result<Self, ClaimsError> {
        match content_type {
            "image/jpeg" => Ok(PhotoType::Jpeg),
            "image/png" => Ok(PhotoType::Png),
            "image/heic" => Ok(PhotoType::Heic),
            "image/webp" => Ok(PhotoType::Webp),
            other => Err(anyhow::anyhow!("unknown photo type {other:?}").into()),
        }
    }
}

/// The ISO base media brands of HEIF still images (HEIC from phones included).
const HEIF_BRANDS: [&[u8; 4]; 8] = [
    b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1",
];

/// The image type of `bytes` by their magic numbers, or `None` for anything else.
pub fn sniff(bytes: &[u8]) -> Option<PhotoType> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(PhotoType::Jpeg);
    }
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        return Some(PhotoType::Png);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some(PhotoType::Webp);
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let brand = &bytes[8..12];
        if HEIF_BRANDS.iter().any(|b| &b[..] == brand) {
            return Some(PhotoType::Heic);
        }
    }
    None
}

/// Where photo bytes live: a directory, or an object store.
#[async_trait::async_trait]
pub trait PhotoStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` under `key` (replacing what is there).
    async fn put(&self, key: &str, bytes: &[u8]) -> anyhow::Result<()>;
    /// The bytes under `key`, or `None` when there are none.
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Removes `key` (nothing happens when it is absent).
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
}

/// Photos as files under a directory (`claims.photo_dir`); keys are relative paths.
#[derive(Debug, Clone)]
pub struct FsPhotoStore {
    root: PathBuf,
}

impl FsPhotoStore {
    /// A store under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The store of `claims.photo_dir`.
    pub fn from_settings(settings: &shared::settings::ClaimsSettings) -> Self {
        Self::new(&settings.photo_dir)
    }

    /// The file of `key`; refuses keys that would leave the root.
    fn path_of(&self, key: &str) -> anyhow::Result<PathBuf> {
        let rel = Path::new(key);
        let plain = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            anyhow::bail!("photo key {key:?} is not a plain relative path");
        }
        Ok(self.root.join(rel))
    }
}

#[async_trait::async_trait]
impl PhotoStore for FsPhotoStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.path_of(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // Written to a temporary name first, so a reader never sees half a photo.
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, bytes).await?;
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.path_of(key)?).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A photo a driver uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimPhoto {
    /// The photo (`clp_…`).
    pub id: ClaimPhotoId,
    /// Who uploaded it.
    pub driver_id: DriverId,
    /// The claim it is part of, once attached.
    pub claim_id: Option<ClaimId>,
    /// What it is.
    pub photo_type: PhotoType,
    /// Its size.
    pub size_bytes: i64,
    /// The SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Where the store keeps it.
    pub storage_key: String,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = claim_photos)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct PhotoRow {
    pub id: ClaimPhotoId,
    pub driver_id: DriverId,
    pub claim_id: Option<ClaimId>,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub storage_key: String,
    pub uploaded_at: DateTime<Utc>,
    pub attached_at: Option<DateTime<Utc>>,
}

impl TryFrom<PhotoRow> for ClaimPhoto {
    type Error = ClaimsError;
    fn try_from(r: PhotoRow) -> Result<Self, ClaimsError> {
        Ok(ClaimPhoto {
            id: r.id,
            driver_id: r.driver_id,
            claim_id: r.claim_id,
            photo_type: PhotoType::parse(&r.content_type)?,
            size_bytes: r.size_bytes,
            sha256: r.sha256,
            storage_key: r.storage_key,
            uploaded_at: r.uploaded_at,
        })
    }
}

/// Checks an upload without storing it: its type by content.
///
/// Errors: `PHOTO_TOO_LARGE`, `UNSUPPORTED_PHOTO_TYPE` (also for an empty upload).
pub fn check_photo(bytes: &[u8], max_bytes: usize) -> Result<PhotoType, ClaimsError> {
    if bytes.len() > max_bytes {
        return Err(ClaimsError::PhotoTooLarge { max_bytes });
    }
    sniff(bytes).ok_or(ClaimsError::UnsupportedPhotoType)
}

/// Stores a driver's photo and records it, not yet part of a claim ([`crate::report_claim`]
/// attaches it).
///
/// Errors: `PHOTO_TOO_LARGE`, `UNSUPPORTED_PHOTO_TYPE`; internal ones (storage).
pub async fn upload_photo(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    store: &dyn PhotoStore,
    driver_id: DriverId,
    bytes: &[u8],
    max_bytes: usize,
) -> Result<ClaimPhoto, ClaimsError> {
    let photo_type = check_photo(bytes, max_bytes)?;
    let id = ClaimPhotoId::new();
    let key = format!(
        "{}/{}.{}",
        driver_id.uuid().simple(),
        id.uuid().simple(),
        photo_type.extension()
    );
    store.put(&key, bytes).await?;
    let row = PhotoRow {
        id,
        driver_id,
        claim_id: None,
        content_type: photo_type.content_type().to_owned(),
        size_bytes: i64::try_from(bytes.len()).map_err(anyhow::Error::new)?,
        sha256: hex::encode(Sha256::digest(bytes)),
        storage_key: key.clone(),
        uploaded_at: clock.now(),
        attached_at: None,
    };
    let inserted = diesel::insert_into(claim_photos::table)
        .values(&row)
        .returning(PhotoRow::as_returning())
        .get_result(conn)
        .await;
    match inserted {
        Ok(stored) => {
            tracing::info!(photo_id = %id, %driver_id, size = bytes.len(), content_type = photo_type.content_type(), "claim photo stored");
            ClaimPhoto::try_from(stored)
        }
        Err(e) => {
            if let Err(cleanup) = store.delete(&key).await {
                tracing::warn!(error = %cleanup, %key, "orphan claim photo left in the store");
            }
            Err(e.into())
        }
    }
}

/// A photo by id, whoever's it is (the caller checks who may see it).
pub async fn get_photo(
    conn: &mut AsyncPgConnection,
    photo_id: ClaimPhotoId,
) -> Result<Option<ClaimPhoto>, ClaimsError> {
    claim_photos::table
        .find(photo_id)
        .select(PhotoRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(ClaimPhoto::try_from)
        .transpose()
}

/// The photos of several claims, oldest first within each (for loaders).
pub async fn photos_of_claims(
    conn: &mut AsyncPgConnection,
    claim_ids: &[ClaimId],
) -> Result<Vec<ClaimPhoto>, ClaimsError> {
    claim_photos::table
        .filter(claim_photos::claim_id.eq_any(claim_ids))
        .order((claim_photos::uploaded_at.asc(), claim_photos::id.asc()))
        .select(PhotoRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(ClaimPhoto::try_from)
        .collect()
}

/// Attaches the driver's unattached photos to a claim (inside the caller's transaction).
///
/// Errors: `TOO_MANY_PHOTOS`, `PHOTO_NOT_FOUND` (also another driver's),
/// `PHOTO_ALREADY_ATTACHED`.
pub(crate) async fn attach_photos(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    claim_id: ClaimId,
    photo_ids: &[ClaimPhotoId],
    now: DateTime<Utc>,
) -> Result<(), ClaimsError> {
    if photo_ids.len() > MAX_PHOTOS_PER_CLAIM {
        return Err(ClaimsError::TooManyPhotos);
    }
    let rows: Vec<PhotoRow> = claim_photos::table
        .filter(claim_photos::id.eq_any(photo_ids))
        .filter(claim_photos::driver_id.eq(driver_id))
        .select(PhotoRow::as_select())
        .for_update()
        .load(conn)
        .await?;
    for id in photo_ids {
        let row = rows
            .iter()
            .find(|r| r.id == *id)
            .ok_or(ClaimsError::PhotoNotFound)?;
        if row.claim_id.is_some_and(|c| c != claim_id) {
            return Err(ClaimsError::PhotoAlreadyAttached);
        }
    }
    diesel::update(claim_photos::table)
        .filter(claim_photos::id.eq_any(photo_ids))
        .filter(claim_photos::claim_id.is_null())
        .set((
            claim_photos::claim_id.eq(claim_id),
            claim_photos::attached_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_knows_the_four_types_by_content() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]),
            Some(PhotoType::Jpeg)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(PhotoType::Png)
        );
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some(PhotoType::Webp));
        assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0\0\0"), Some(PhotoType::Heic));
        assert_eq!(sniff(b"\0\0\0\x18ftypmif1\0\0\0\0"), Some(PhotoType::Heic));
        // Other ISO media (an MP4 video) and other formats are refused.
        assert_eq!(sniff(b"\0\0\0\x18ftypisom\0\0\0\0"), None);
        assert_eq!(sniff(b"%PDF-1.7\n"), None);
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVE"), None);
    }

    #[test]
    fn checks_refuse_oversized_and_empty_uploads() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0];
        assert_eq!(check_photo(&jpeg, 4).unwrap(), PhotoType::Jpeg);
        assert!(matches!(
            check_photo(&jpeg, 3),
            Err(ClaimsError::PhotoTooLarge { max_bytes: 3 })
        ));
        assert!(matches!(
            check_photo(&[], 10),
            Err(ClaimsError::UnsupportedPhotoType)
        ));
    }

    #[tokio::test]
    async fn the_file_store_round_trips_and_stays_in_its_directory() {
        let dir = std::env::temp_dir().join(format!("sc-photos-{}", uuid::Uuid::new_v4().simple()));
        let store = FsPhotoStore::new(&dir);
        store.put("a/b.jpg", b"bytes").await.unwrap();
        assert_eq!(store.get("a/b.jpg").await.unwrap().unwrap(), b"bytes");
        store.delete("a/b.jpg").await.unwrap();
        assert_eq!(store.get("a/b.jpg").await.unwrap(), None);
        store.delete("a/b.jpg").await.unwrap();
        assert!(store.put("../escape.jpg", b"x").await.is_err());
        assert!(store.put("/etc/x.jpg", b"x").await.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
