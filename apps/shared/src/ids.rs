//! Typed, prefixed identifiers (`drv_…`, `veh_…`) that make logs and support tickets readable.
//!
//! In the database every id is a `uuid` (version 7, so inserts stay index-friendly); the prefix is
//! added when an id is shown and checked when one is parsed, so a vehicle id can never be passed
//! where a driver id is expected.

use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A prefixed id failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    /// The id does not start with the expected prefix.
    #[error("expected an id starting with {expected:?}")]
    WrongPrefix {
        /// The prefix the caller expected.
        expected: &'static str,
    },
    /// The part after the prefix is not a valid id.
    #[error("malformed id")]
    Malformed,
}

/// Declares a typed id: `typed_id!(DriverId, "drv");`
#[macro_export]
macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            ::diesel::expression::AsExpression, ::diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = ::diesel::sql_types::Uuid)]
        pub struct $name(pub ::uuid::Uuid);

        impl $name {
            /// The text prefix of this id type.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(::uuid::Uuid::now_v7())
            }

            /// The raw UUID.
            pub fn uuid(&self) -> ::uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                $crate::ids::fmt_prefixed(f, $prefix, &self.0)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ids::IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::ids::parse_prefixed(s, $prefix).map(Self)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }

        impl ::diesel::serialize::ToSql<::diesel::sql_types::Uuid, ::diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut ::diesel::serialize::Output<'b, '_, ::diesel::pg::Pg>,
            ) -> ::diesel::serialize::Result {
                <::uuid::Uuid as ::diesel::serialize::ToSql<::diesel::sql_types::Uuid, ::diesel::pg::Pg>>::to_sql(&self.0, out)
            }
        }

        impl ::diesel::deserialize::FromSql<::diesel::sql_types::Uuid, ::diesel::pg::Pg> for $name {
            fn from_sql(
                bytes: <::diesel::pg::Pg as ::diesel::backend::Backend>::RawValue<'_>,
            ) -> ::diesel::deserialize::Result<Self> {
                <::uuid::Uuid as ::diesel::deserialize::FromSql<::diesel::sql_types::Uuid, ::diesel::pg::Pg>>::from_sql(bytes).map(Self)
            }
        }
    };
}

/// Writes `prefix_<32 hex digits>`.
pub fn fmt_prefixed(f: &mut fmt::Formatter<'_>, prefix: &str, id: &Uuid) -> fmt::Result {
    write!(f, "{prefix}_{}", id.simple())
}

/// Parses `prefix_<32 hex digits>` (a bare UUID is refused: the prefix is the type check).
pub fn parse_prefixed(s: &str, prefix: &'static str) -> Result<Uuid, IdParseError> {
    let rest = s
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .ok_or(IdParseError::WrongPrefix { expected: prefix })?;
    if rest.len() != 32 {
        return Err(IdParseError::Malformed);
    }
    Uuid::from_str(rest).map_err(|_| IdParseError::Malformed)
}

typed_id!(
    /// A row of the outbox: one job to run.
    JobId,
    "job"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_check_their_prefix() {
        let id = JobId::new();
        let text = id.to_string();
        assert!(text.starts_with("job_"));
        assert_eq!(text.len(), 4 + 32);
        assert_eq!(text.parse::<JobId>(), Ok(id));
        assert_eq!(
            "drv_0190f4b2c3d47e8f9a0b1c2d3e4f5a6b".parse::<JobId>(),
            Err(IdParseError::WrongPrefix { expected: "job" })
        );
        assert_eq!("job_xyz".parse::<JobId>(), Err(IdParseError::Malformed));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<JobId>(&json).unwrap(), id);
    }
}
