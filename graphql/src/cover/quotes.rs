//! `createQuote`: the price of cover for one of the driver's vehicles on a product, with its
//! breakdown and the explanation of every rating factor.

use super::{Product, conn, core, user_error};
use crate::errors::{UserError, internal};
use crate::guard;
use crate::money::Money;
use crate::relay::{parse_global_id, to_global_id};
use accounts::VehicleId;
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use pricing::{PricingError, ProductId};

/// A price split into the insurer's net premium, ShiftCover's commission and insurance premium
/// tax (IPT is inside the price: net premium + commission + IPT = total).
#[derive(SimpleObject, Debug, Clone)]
pub struct ChargeBreakdown {
    /// What the driver pays.
    pub total: Money,
    /// The insurer's premium.
    pub net_premium: Money,
    /// ShiftCover's commission.
    pub commission: Money,
    /// Insurance premium tax.
    pub ipt: Money,
    /// The IPT rate, in basis points of the IPT basis (1200 = 12%).
    pub ipt_rate_bp: i32,
    /// What IPT is levied on: net premium plus commission.
    pub ipt_basis: Money,
    /// The commission rate, in basis points of the IPT basis.
    pub commission_rate_bp: i32,
}

fn bp(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl From<pricing::ChargeBreakdown> for ChargeBreakdown {
    fn from(b: pricing::ChargeBreakdown) -> Self {
        Self {
            total: b.total.into(),
            net_premium: b.net_premium.into(),
            commission: b.commission.into(),
            ipt: b.ipt.into(),
            ipt_rate_bp: bp(b.ipt_rate_bp),
            ipt_basis: b.ipt_basis.into(),
            commission_rate_bp: bp(b.commission_rate_bp),
        }
    }
}

/// Which rating factor a line explains.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "pricing::FactorKind")]
pub enum RatingFactor {
    /// The base hourly rate of the vehicle type.
    BaseRate,
    /// The postcode-area factor.
    Region,
    /// The time-of-day factor.
    TimeBand,
    /// The driver-age factor.
    Age,
    /// The years-licensed factor.
    YearsLicensed,
    /// The claims-in-5-years factor.
    Claims,
}

/// One line of a price's explanation.
#[derive(SimpleObject, Debug, Clone)]
pub struct RatingLine {
    /// Which factor.
    pub factor: RatingFactor,
    /// The band that applied, e.g. `car`, `E`, `25-29`.
    pub band: String,
    /// For the base rate: the amount per hour.
    pub amount: Option<Money>,
    /// For a factor: the multiplier in basis points (10000 = ×1).
    pub multiplier_bp: Option<i32>,
    /// The line written for people, e.g. `region (E): ×1.3000`.
    pub text: String,
}

impl From<&pricing::FactorLine> for RatingLine {
    fn from(l: &pricing::FactorLine) -> Self {
        Self {
            factor: l.factor.into(),
            band: l.band.clone(),
            amount: l.amount.map(Into::into),
            multiplier_bp: l.multiplier_bp.map(bp),
            text: l.to_string(),
        }
    }
}

/// A quote: the price of cover for one vehicle on one product version, locked until it
/// expires.
#[derive(SimpleObject, Debug, Clone)]
pub struct Quote {
    /// The quote's global id (pass it to `startCover` to start at this price).
    pub id: ID,
    /// The product.
    pub product: Product,
    /// The number of the product version it was rated on.
    pub product_version_number: i32,
    /// The vehicle's global id.
    pub vehicle_id: ID,
    /// The price of one hour of cover.
    pub hourly_rate: Money,
    /// The least a session costs (its first minutes are charged as a whole).
    pub minimum_charge: Money,
    /// The most the driver pays in one UK day.
    pub daily_cap: Money,
    /// One hour's price, split into net premium, commission and IPT.
    pub one_hour: ChargeBreakdown,
    /// One line per rating factor, in the order applied.
    pub explanation: Vec<RatingLine>,
    /// When it was given.
    pub created_at: DateTime<Utc>,
    /// When its price stops holding.
    pub expires_at: DateTime<Utc>,
}

/// Why a product will not cover the driver or vehicle.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "pricing::DeclineCode")]
pub enum DeclineCode {
    /// The product does not cover this vehicle type.
    VehicleNotCovered,
    /// The driver is younger than the product's minimum age.
    UnderMinimumAge,
    /// The driver has had more claims than the product accepts.
    TooManyClaims,
    /// The postcode has no recognisable area.
    InvalidPostcode,
    /// The rate table cannot rate this input.
    RateUnavailable,
}

/// A refusal to quote.
#[derive(SimpleObject, Debug, Clone)]
pub struct Decline {
    /// The reason, as a code.
    pub code: DeclineCode,
    /// The reason, for people.
    pub reason: String,
}

/// Input of `createQuote`.
#[derive(InputObject)]
pub struct CreateQuoteInput {
    /// One of the driver's vehicles.
    pub vehicle_id: ID,
    /// A product on sale (from `products`).
    pub product_id: ID,
}

/// Result of `createQuote`.
#[derive(SimpleObject, Default)]
pub struct CreateQuotePayload {
    /// The quote, when the product covers the driver and vehicle.
    pub quote: Option<Quote>,
    /// Why the product will not cover them, when it declined.
    pub decline: Option<Decline>,
    /// `PRODUCT_NOT_FOUND`, `PRODUCT_NOT_AVAILABLE` (`productId`); `VEHICLE_NOT_FOUND`
    /// (`vehicleId`: unknown, removed or another driver's); `PROFILE_INCOMPLETE` (with the profile
    /// field missing); a decline's code (`VEHICLE_NOT_COVERED` on `vehicleId`,
    /// `UNDER_MINIMUM_AGE`, `TOO_MANY_CLAIMS`, `INVALID_POSTCODE`, `RATE_UNAVAILABLE`).
    pub user_errors: Vec<UserError>,
}

impl CreateQuotePayload {
    fn errors(user_errors: Vec<UserError>) -> Self {
        Self {
            user_errors,
            ..Self::default()
        }
    }
}

/// Builds the GraphQL quote, with its product and version number: from memory for a quote on
/// the published version the process remembers (which every quote just made is), else read on a
/// pooled connection.
pub(crate) async fn quote_object(
    ctx: &Context<'_>,
    q: pricing::Quote,
) -> async_graphql::Result<Quote> {
    let labels = match pricing::remembered_quote_labels(&q) {
        Some(labels) => labels,
        None => pricing::quote_labels(&mut *conn(ctx).await?, &q)
            .await
            .map_err(|e| internal(ctx, e))?,
    };
    Ok(Quote {
        id: to_global_id("Quote", &q.id),
        product: Product {
            id: to_global_id("Product", &labels.product.id),
            code: labels.product.code.clone(),
            name: labels.product.name.clone(),
            version_number: labels.version_number,
        },
        product_version_number: labels.version_number,
        vehicle_id: to_global_id("Vehicle", &q.vehicle_id),
        hourly_rate: q.hourly_rate.into(),
        minimum_charge: q.minimum_charge.into(),
        daily_cap: q.daily_cap.into(),
        one_hour: q.one_hour.into(),
        explanation: q.explanation.iter().map(RatingLine::from).collect(),
        created_at: q.created_at,
        expires_at: q.expires_at,
    })
}

/// Quote mutations.
#[derive(Default)]
pub struct QuoteMutation;

#[Object]
impl QuoteMutation {
    /// Prices cover for one of the signed-in driver's vehicles on a product. The price holds
    /// until `expiresAt`; pass the quote to `startCover` to start at it. Drivers only.
    async fn create_quote(
        &self,
        ctx: &Context<'_>,
        input: CreateQuoteInput,
    ) -> async_graphql::Result<CreateQuotePayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(product_id) = parse_global_id::<ProductId>(&input.product_id, "Product") else {
            return Ok(CreateQuotePayload::errors(user_error(
                Some("productId"),
                "PRODUCT_NOT_FOUND",
                "There is no such product.",
            )));
        };
        let Some(vehicle_id) = parse_global_id::<VehicleId>(&input.vehicle_id, "Vehicle") else {
            return Ok(CreateQuotePayload::errors(user_error(
                Some("vehicleId"),
                "VEHICLE_NOT_FOUND",
                "That vehicle is not one of yours.",
            )));
        };
        let core = core(ctx)?;
        match pricing::create_quote_batched(core, driver.driver_id, vehicle_id, product_id).await {
            Ok(q) => Ok(CreateQuotePayload {
                quote: Some(quote_object(ctx, q).await?),
                ..CreateQuotePayload::default()
            }),
            Err(PricingError::Declined(d)) => {
                let field =
                    (d.code == pricing::DeclineCode::VehicleNotCovered).then_some("vehicleId");
                Ok(CreateQuotePayload {
                    quote: None,
                    user_errors: user_error(field, d.code.as_str(), &d.reason),
                    decline: Some(Decline {
                        code: d.code.into(),
                        reason: d.reason,
                    }),
                })
            }
            Err(e) => match e.user_error() {
                Some(fe) => Ok(CreateQuotePayload::errors(vec![UserError::from(fe)])),
                None => Err(internal(ctx, e)),
            },
        }
    }
}
