//! The texts a driver gets when cover starts and ends, recorded through the notifications app in
//! the transaction of the change (cause keys `cover_started:<session id>` and
//! `cover_ended:<session id>`, so a repeated change never texts twice).

use crate::error::CoverError;
use crate::sessions::CoverSession;
use crate::support::uk_time;
use accounts::{Driver, Vehicle};
use notifications::{Channel, NewNotification, Template, vars};

/// How a vehicle is named to its driver: the registration, else make and model, else its type.
pub(crate) fn vehicle_label(vehicle: &Vehicle) -> String {
    if let Some(reg) = &vehicle.registration {
        return reg.as_str().to_owned();
    }
    let make_model: Vec<&str> = [vehicle.make.as_deref(), vehicle.model.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if make_model.is_empty() {
        format!("your {}", vehicle.vehicle_type.as_str().replace('_', "-"))
    } else {
        make_model.join(" ")
    }
}

/// The "cover started" SMS.
pub(crate) fn started_message(
    driver: &Driver,
    vehicle: &Vehicle,
    session: &CoverSession,
) -> NewNotification {
    NewNotification {
        cause: format!("cover_started:{}", session.id),
        channel: Channel::Sms,
        template: Template::CoverStarted,
        recipient: driver.phone.as_str().to_owned(),
        driver_id: Some(driver.id.uuid()),
        vars: vars([
            ("vehicle", vehicle_label(vehicle)),
            ("started_at", uk_time(session.started_at)),
            ("certificate", session.certificate_number.clone()),
        ]),
    }
}

/// The "cover ended: N minutes, £X" SMS for an ended (priced) session.
pub(crate) fn ended_message(
    driver: &Driver,
    session: &CoverSession,
) -> Result<NewNotification, CoverError> {
    let Some(charge) = session.charge else {
        return Err(anyhow::anyhow!("session {} ended without a charge", session.id).into());
    };
    Ok(NewNotification {
        cause: format!("cover_ended:{}", session.id),
        channel: Channel::Sms,
        template: Template::CoverEnded,
        recipient: driver.phone.as_str().to_owned(),
        driver_id: Some(driver.id.uuid()),
        vars: vars([
            ("minutes", charge.minutes.to_string()),
            ("amount", charge.total.to_string()),
            ("certificate", session.certificate_number.clone()),
        ]),
    })
}
