//! The back office's chargebacks page: Stripe disputes on wallet top-ups, newest first, with
//! their evidence due dates (highlighted when due within three days or past due), and the
//! Stripe events kept for a person. Read-only: evidence is given in the Stripe dashboard. Ops and
//! finance, like the GraphQL fields it runs.

use super::pages::{Query, context};
use super::render::{error_page, page};
use super::{gql, staff};
use crate::http::ApiState;
use accounts::Role;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

/// How close an evidence due date is highlighted as due soon.
const DUE_SOON: chrono::Duration = chrono::Duration::days(3);

/// Registers the chargebacks page under `/admin`.
pub(crate) fn routes(scope: actix_web::Scope) -> actix_web::Scope {
    scope.route("/chargebacks", web::get().to(chargebacks))
}

const CHARGEBACKS: &str = "query {
  chargebacks(first: 200) { id stripeDisputeId paymentId reason stripeStatus open
    evidenceDueBy withdrawn reinstated openedAt updatedAt
    amount { formatted } held { formatted } fee { formatted } driver { id name } }
  flaggedStripeEvents(first: 50) { eventId eventType objectId reason receivedAt } }";

/// `past_due`, `due_soon` or empty, for an open chargeback's evidence due date.
fn due_state(chargeback: &Value, now: chrono::DateTime<chrono::Utc>) -> &'static str {
    let open = chargeback["open"].as_bool().unwrap_or(false);
    let due = chargeback["evidenceDueBy"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    match due {
        Some(due) if open && due < now => "past_due",
        Some(due) if open && due < now + DUE_SOON => "due_soon",
        _ => "",
    }
}

async fn chargebacks(state: web::Data<ApiState>, req: HttpRequest, q: Query) -> HttpResponse {
    let staff = or_respond!(staff(&state, &req).await);
    if !staff.has(Role::Ops) && !staff.has(Role::Finance) {
        return error_page(403, "This needs the ops or finance role.");
    }
    let data = or_page!(gql(&state, &req, &staff, CHARGEBACKS, json!({})).await);
    let now = state.core.clock.now();
    let rows: Vec<Value> = data["chargebacks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            let due = due_state(&c, now);
            c["due"] = json!(due);
            c
        })
        .collect();
    page(
        "chargebacks.html",
        &context(
            &staff,
            &q,
            json!({ "chargebacks": rows, "flagged": data["flaggedStripeEvents"] }),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_dates_are_highlighted_only_while_open() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-08T00:00:00Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        let at = |due: &str, open: bool| json!({ "open": open, "evidenceDueBy": due });
        assert_eq!(
            due_state(&at("2026-12-07T23:00:00Z", true), now),
            "past_due"
        );
        assert_eq!(
            due_state(&at("2026-12-10T00:00:00Z", true), now),
            "due_soon"
        );
        assert_eq!(due_state(&at("2026-12-20T00:00:00Z", true), now), "");
        assert_eq!(due_state(&at("2026-12-07T23:00:00Z", false), now), "");
        assert_eq!(due_state(&json!({ "open": true }), now), "");
    }
}
