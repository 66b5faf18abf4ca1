//! The texts a driver gets about their claims and disputes, recorded through the notifications
//! app in the transaction of the change (cause keys `claim_received:<claim>`,
//! `claim_status:<claim>:<status>` and `dispute_resolved:<dispute>`, so a change reported twice
//! never texts twice). A driver whose account is deleted gets none.

use crate::claims::Claim;
use crate::error::ClaimsError;
use accounts::{AccountsError, Driver, DriverId};
use diesel_async::AsyncPgConnection;
use notifications::{Channel, NewNotification, Template, vars};

async fn driver(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Option<Driver>, ClaimsError> {
    match accounts::get_driver(conn, driver_id).await {
        Ok(d) => Ok(Some(d)),
        Err(AccountsError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn text(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    cause: String,
    template: Template,
    values: notifications::Vars,
) -> Result<(), ClaimsError> {
    let Some(driver) = driver(conn, driver_id).await? else {
        return Ok(());
    };
    notifications::enqueue_notification(
        conn,
        NewNotification {
            cause,
            channel: Channel::Sms,
            template,
            recipient: driver.phone.as_str().to_owned(),
            driver_id: Some(driver.id.uuid()),
            vars: values,
        },
    )
    .await?;
    Ok(())
}

/// "We've received your claim CLM-…".
pub(crate) async fn claim_received(
    conn: &mut AsyncPgConnection,
    claim: &Claim,
) -> Result<(), ClaimsError> {
    text(
        conn,
        claim.driver_id,
        format!("claim_received:{}", claim.id),
        Template::ClaimReceived,
        vars([("reference", claim.reference.clone())]),
    )
    .await
}

/// "Your claim CLM-… is now under review".
pub(crate) async fn claim_status_changed(
    conn: &mut AsyncPgConnection,
    claim: &Claim,
) -> Result<(), ClaimsError> {
    text(
        conn,
        claim.driver_id,
        format!("claim_status:{}:{}", claim.id, claim.status.as_str()),
        Template::ClaimUpdated,
        vars([
            ("reference", claim.reference.clone()),
            ("status", claim.status.describe().to_owned()),
        ]),
    )
    .await
}

/// "We've looked at your dispute of the charge for SC-…: …".
pub(crate) async fn dispute_resolved(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    dispute_id: crate::ids::DisputeId,
    certificate: &str,
    outcome: String,
) -> Result<(), ClaimsError> {
    text(
        conn,
        driver_id,
        format!("dispute_resolved:{dispute_id}"),
        Template::DisputeResolved,
        vars([
            ("certificate", certificate.to_owned()),
            ("outcome", outcome),
        ]),
    )
    .await
}
