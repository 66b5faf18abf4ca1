//! The back office's claims and charge disputes: the queues, a claim's page with its actions
//! (move it on, set the reserve, settle), and resolving a dispute (uphold, refund part, refund
//! all). Ops only, like the GraphQL fields they run.

use super::pages::{Form, Query, back, context, id_segment, parse_pounds, reason_of};
use super::render::{error_page, page, url_encode};
use super::{first_user_error, gql, staff_acting, staff_with};
use crate::http::ApiState;
use accounts::Role;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

/// Registers the claims and disputes pages under `/admin`.
pub(crate) fn routes(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .route("/claims", web::get().to(claims))
        .route("/claims/{id}", web::get().to(claim))
        .route("/claims/{id}/status", web::post().to(transition))
        .route("/claims/{id}/reserve", web::post().to(reserve))
        .route("/claims/{id}/settle", web::post().to(settle))
        .route("/disputes", web::get().to(disputes))
        .route("/disputes/{id}/resolve", web::post().to(resolve))
}

const CLAIM_STATUSES: [&str; 6] = [
    "REPORTED",
    "ACKNOWLEDGED",
    "UNDER_REVIEW",
    "SETTLED",
    "DECLINED",
    "WITHDRAWN",
];

const CLAIMS: &str = "query($status: [ClaimStatus!], $after: String) {
  claimsQueue(status: $status, first: 25, after: $after) { edges { node { id reference status
    occurredAt reportedAt thirdPartyInvolved injuries reserve { formatted }
    coverAtLoss { covered noCoverReason certificateNumber } driver { id name phone } } }
    pageInfo { hasNextPage endCursor } } }";

async fn claims(state: web::Data<ApiState>, req: HttpRequest, q: Query) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Ops).await);
    let status = q
        .get("status")
        .filter(|s| CLAIM_STATUSES.contains(&s.as_str()))
        .cloned();
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            CLAIMS,
            json!({ "status": status.as_ref().map(|s| vec![s]), "after": q.get("after") }),
        )
        .await
    );
    let query_base = status
        .map(|s| format!("status={}&", url_encode(&s)))
        .unwrap_or_default();
    page(
        "claims.html",
        &context(
            &staff,
            &q,
            json!({ "claims": data["claimsQueue"], "query_base": query_base }),
        ),
    )
}

const CLAIM: &str = "query($id: ID!) { claim(id: $id) { id reference status occurredAt reportedAt
  location description thirdPartyInvolved injuries vehicle { registration }
  coverAtLoss { covered basis noCoverReason certificateNumber message }
  photos { id url } history { fromStatus toStatus reason actorType at }
  reserve { formatted } paid { formatted } driver { id name phone } } }";

async fn claim(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: Query,
) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Ops).await);
    let id = or_respond!(id_segment(&path));
    let data = or_page!(gql(&state, &req, &staff, CLAIM, json!({ "id": id })).await);
    if data["claim"].is_null() {
        return error_page(404, "There is no such claim.");
    }
    page(
        "claim.html",
        &context(&staff, &q, json!({ "claim": data["claim"] })),
    )
}

/// The claim's status now, for the stale-page check.
async fn claim_status(
    state: &ApiState,
    req: &HttpRequest,
    staff: &super::Staff,
    id: &str,
) -> Result<Option<String>, HttpResponse> {
    let data = gql(
        state,
        req,
        staff,
        "query($id: ID!) { claim(id: $id) { status } }",
        json!({ "id": id }),
    )
    .await
    .map_err(super::GqlError::into_page)?;
    Ok(data["claim"]["status"].as_str().map(str::to_owned))
}

/// The common steps of a claim action: role, form, id, reason and the stale-page check.
async fn claim_action(
    state: &ApiState,
    req: &HttpRequest,
    path: &str,
    form: &std::collections::HashMap<String, String>,
) -> Result<(super::Staff, String, String, String), HttpResponse> {
    let staff = staff_acting(state, req, Role::Ops, form).await?;
    let id = id_segment(path)?;
    let here = format!("/admin/claims/{id}");
    let reason = reason_of(form).map_err(|e| back(&here, Err(e)))?;
    let now = claim_status(state, req, &staff, &id).await?;
    if now.as_deref() != form.get("seen_status").map(String::as_str) {
        return Err(back(
            &here,
            Err("This claim changed since the page loaded; look at it again.".into()),
        ));
    }
    Ok((staff, id, here, reason))
}

async fn transition(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let (staff, id, here, reason) = or_respond!(claim_action(&state, &req, &path, &form).await);
    let status = form.get("status").cloned().unwrap_or_default();
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($id: ID!, $status: ClaimStatus!, $reason: String!) {
               transitionClaim(input: { claimId: $id, status: $status, reason: $reason }) {
                 claim { status } userErrors { field code message } } }",
            json!({ "id": id, "status": status, "reason": reason }),
        )
        .await
    );
    let payload = &data["transitionClaim"];
    back(
        &here,
        match first_user_error(payload) {
            Some(e) => Err(e),
            None => Ok(format!(
                "Claim now {}.",
                payload["claim"]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
                    .replace('_', " ")
            )),
        },
    )
}

async fn money_action(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
    settle: bool,
) -> HttpResponse {
    let (staff, id, here, reason) = or_respond!(claim_action(&state, &req, &path, &form).await);
    let amount = match parse_pounds(form.get("amount").map(String::as_str).unwrap_or("")) {
        Ok(Some(a)) => a,
        Ok(None) => return back(&here, Err("Give an amount in pounds, like 450.00.".into())),
        Err(e) => return back(&here, Err(e)),
    };
    let (doc, field) = if settle {
        (
            "mutation($id: ID!, $amount: Int!, $reason: String!) {
               settleClaim(input: { claimId: $id, paidAmount: $amount, reason: $reason }) {
                 claim { status paid { formatted } } userErrors { field code message } } }",
            "settleClaim",
        )
    } else {
        (
            "mutation($id: ID!, $amount: Int!, $reason: String!) {
               setClaimReserve(input: { claimId: $id, amount: $amount, reason: $reason }) {
                 claim { status reserve { formatted } } userErrors { field code message } } }",
            "setClaimReserve",
        )
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            doc,
            json!({ "id": id, "amount": amount, "reason": reason }),
        )
        .await
    );
    let payload = &data[field];
    back(
        &here,
        match first_user_error(payload) {
            Some(e) => Err(e),
            None if settle => Ok(format!(
                "Claim settled: {} paid.",
                payload["claim"]["paid"]["formatted"].as_str().unwrap_or("")
            )),
            None => Ok(format!(
                "Reserve set to {}.",
                payload["claim"]["reserve"]["formatted"]
                    .as_str()
                    .unwrap_or("")
            )),
        },
    )
}

async fn reserve(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    money_action(state, req, path, form, false).await
}

async fn settle(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    money_action(state, req, path, form, true).await
}

const DISPUTES: &str = "query($status: [DisputeStatus!], $after: String) {
  disputesQueue(status: $status, first: 10, after: $after) { edges { node { id status reason details
    createdAt charge { formatted } chargeBreakdown { minutes billedMinutes rule }
    pricingRule { hourlyRate { formatted } minimumChargeMinutes billingIncrementMinutes
      gapRuleMinutes tailCoverMinutes }
    partnerEvents { kind occurredAt reference }
    session { startedAt endedAt endReason } driver { id name } } }
    pageInfo { hasNextPage endCursor } } }";

async fn disputes(state: web::Data<ApiState>, req: HttpRequest, q: Query) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Ops).await);
    let resolved = q.get("status").map(String::as_str) == Some("RESOLVED");
    let status = if resolved {
        json!(["UPHELD", "ADJUSTED", "REFUNDED"])
    } else {
        json!(["OPEN"])
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            DISPUTES,
            json!({ "status": status, "after": q.get("after") }),
        )
        .await
    );
    page(
        "disputes.html",
        &context(
            &staff,
            &q,
            json!({
                "disputes": data["disputesQueue"],
                "query_base": if resolved { "status=RESOLVED&" } else { "" },
            }),
        ),
    )
}

async fn resolve(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let id = or_respond!(id_segment(&path));
    let here = "/admin/disputes";
    let note = form.get("note").map(|n| n.trim()).unwrap_or("");
    if note.is_empty() {
        return back(here, Err("Write a note for the driver.".into()));
    }
    let resolution = form.get("resolution").cloned().unwrap_or_default();
    if !["UPHOLD", "ADJUST", "REFUND"].contains(&resolution.as_str()) {
        return back(here, Err("Choose how to resolve it.".into()));
    }
    let amount = match parse_pounds(form.get("amount").map(String::as_str).unwrap_or("")) {
        Ok(a) => a,
        Err(e) => return back(here, Err(e)),
    };
    if resolution == "ADJUST" && amount.is_none() {
        return back(here, Err("Give the amount to refund, like 2.50.".into()));
    }
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($input: ResolveDisputeInput!) { resolveDispute(input: $input) {
               dispute { status refunded { formatted } } userErrors { field code message } } }",
            json!({ "input": {
                "disputeId": id, "resolution": resolution,
                "refundAmount": if resolution == "ADJUST" { amount } else { None }, "note": note,
            } }),
        )
        .await
    );
    let payload = &data["resolveDispute"];
    back(
        here,
        match first_user_error(payload) {
            Some(e) => Err(e),
            None => Ok(format!(
                "Dispute {}{}.",
                payload["dispute"]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase(),
                payload["dispute"]["refunded"]["formatted"]
                    .as_str()
                    .map(|r| format!(": {r} refunded"))
                    .unwrap_or_default()
            )),
        },
    )
}
