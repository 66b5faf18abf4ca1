//! Driver sign-in and account flows over HTTP, with the driver app's own operation documents:
//! code by SMS (read from what the outbox will send), verification, vehicles, `me`, and every way
//! sign-in and credentials can fail, each with its specific code.

use crate::support::{Auth, TestApp, fresh_phone, global_id, latest_sms_code};
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use shared::clock::FixedClock;
use std::sync::Arc;

const REQUEST_LOGIN_CODE: &str =
    include_str!("../../frontend-schema/operations/driver/RequestLoginCode.graphql");
const VERIFY_LOGIN_CODE: &str =
    include_str!("../../frontend-schema/operations/driver/VerifyLoginCode.graphql");
const ME: &str = include_str!("../../frontend-schema/operations/driver/Me.graphql");
const ADD_VEHICLE: &str =
    include_str!("../../frontend-schema/operations/driver/AddVehicle.graphql");
const REMOVE_VEHICLE: &str =
    include_str!("../../frontend-schema/operations/driver/RemoveVehicle.graphql");
const UPDATE_PROFILE: &str =
    include_str!("../../frontend-schema/operations/driver/UpdateProfile.graphql");
const SIGN_OUT: &str = include_str!("../../frontend-schema/operations/driver/SignOut.graphql");
const EXPORT: &str = include_str!("../../frontend-schema/operations/driver/ExportMyData.graphql");
const DELETE: &str = include_str!("../../frontend-schema/operations/driver/DeleteAccount.graphql");
const PARTNER: &str = include_str!("../../frontend-schema/operations/partner/Partner.graphql");

async fn app_with_clock() -> (TestApp, FixedClock) {
    let clock = FixedClock::at(Utc::now());
    let app = TestApp::spawn_with_clock(|_| {}, Arc::new(clock.clone())).await;
    (app, clock)
}

/// `(field, code)` of each user error in `payload`.
fn user_errors(payload: &Value) -> Vec<(String, String)> {
    payload["userErrors"]
        .as_array()
        .unwrap_or_else(|| panic!("no userErrors in {payload}"))
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or("").to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn request_code(app: &TestApp, phone: &str) -> Value {
    let (status, body) = app
        .gql_as(
            &Auth::Anonymous,
            REQUEST_LOGIN_CODE,
            json!({ "phone": phone }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["requestLoginCode"].clone()
}

async fn verify(app: &TestApp, phone: &str, code: &str) -> Value {
    let (status, body) = app
        .gql_as(
            &Auth::Anonymous,
            VERIFY_LOGIN_CODE,
            json!({ "phone": phone, "code": code }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["verifyLoginCode"].clone()
}

/// Signs a new driver in over HTTP; returns their token.
async fn sign_in(app: &TestApp, phone: &str) -> String {
    let sent = request_code(app, phone).await;
    let code = latest_sms_code(&app.db, sent["phone"].as_str().unwrap()).await;
    let verified = verify(app, phone, &code).await;
    verified["token"].as_str().unwrap().to_owned()
}

fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test]
async fn a_new_driver_signs_in_adds_a_vehicle_and_reads_me() {
    let (app, _clock) = app_with_clock().await;
    let e164 = fresh_phone();
    // People type national numbers with spaces.
    let typed = format!("0{} {}", &e164[3..7], &e164[7..]);

    let sent = request_code(&app, &typed).await;
    assert_eq!(user_errors(&sent), vec![]);
    assert_eq!(sent["phone"], e164.as_str());
    assert!(sent["expiresAt"].is_string());
    assert_eq!(
        crate::support::count(
            &app.db,
            "SELECT count(*) AS n FROM outbox_jobs WHERE queue = 'notifications'"
        )
        .await,
        1,
        "the text is queued in the outbox with the code"
    );

    let code = latest_sms_code(&app.db, &e164).await;
    let verified = verify(&app, &typed, &code).await;
    assert_eq!(user_errors(&verified), vec![]);
    assert_eq!(verified["newDriver"], true);
    assert_eq!(verified["driver"]["phone"], e164.as_str());
    let token = verified["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sct_"));
    let driver = Auth::Bearer(token.clone());

    let (_, body) = app
        .gql_as(
            &driver,
            ADD_VEHICLE,
            json!({ "input": { "vehicleType": "SCOOTER", "registration": "ab12 cde", "make": "Honda", "model": "PCX" } }),
        )
        .await;
    let added = &body["data"]["addVehicle"];
    assert_eq!(user_errors(added), vec![], "{body}");
    assert_eq!(added["vehicle"]["registration"], "AB12CDE");
    assert_eq!(added["vehicle"]["vehicleType"], "SCOOTER");
    let vehicle_id = added["vehicle"]["id"].as_str().unwrap().to_owned();

    let (_, body) = app
        .gql_as(
            &driver,
            UPDATE_PROFILE,
            json!({ "input": { "name": "Ada Lovelace", "postcode": "sw1a1aa", "dateOfBirth": "1990-04-21" } }),
        )
        .await;
    let updated = &body["data"]["updateProfile"];
    assert_eq!(user_errors(updated), vec![], "{body}");
    assert_eq!(updated["driver"]["postcode"], "SW1A 1AA");
    assert_eq!(updated["driver"]["dateOfBirth"], "1990-04-21");

    let (status, body) = app.gql_as(&driver, ME, json!({})).await;
    assert_eq!(status, 200);
    assert!(body["errors"].is_null(), "{body}");
    let me = &body["data"]["me"];
    assert_eq!(me["phone"], e164.as_str());
    assert_eq!(me["name"], "Ada Lovelace");
    assert_eq!(me["id"], verified["driver"]["id"]);
    let edges = me["vehicles"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["node"]["id"], vehicle_id.as_str());
    assert_eq!(me["vehicles"]["pageInfo"]["hasNextPage"], false);

    // The same vehicle through node(id), and the export holds it.
    let (_, body) = app
        .gql_as(
            &driver,
            "query($id: ID!) { node(id: $id) { id ... on Vehicle { registration driver { phone } } } }",
            json!({ "id": vehicle_id }),
        )
        .await;
    assert_eq!(body["data"]["node"]["registration"], "AB12CDE", "{body}");
    assert_eq!(body["data"]["node"]["driver"]["phone"], e164.as_str());
    let (_, body) = app.gql_as(&driver, EXPORT, json!({})).await;
    let data = &body["data"]["exportMyData"]["data"];
    assert_eq!(data["driver"]["phone"], e164.as_str(), "{body}");
    assert_eq!(data["vehicles"][0]["registration"], "AB12CDE");

    // A second sign-in of the same phone is not a new driver.
    let code = {
        request_code(&app, &e164).await;
        latest_sms_code(&app.db, &e164).await
    };
    let again = verify(&app, &e164, &code).await;
    assert_eq!(again["newDriver"], false);
    assert_eq!(again["driver"]["id"], me["id"]);
}

#[tokio::test]
async fn sign_in_failures_have_specific_codes() {
    let (app, clock) = app_with_clock().await;

    // Malformed phone, on both steps.
    let sent = request_code(&app, "12345").await;
    assert_eq!(
        user_errors(&sent),
        vec![("phone".into(), "INVALID_PHONE".into())]
    );
    assert!(sent["phone"].is_null());
    let verified = verify(&app, "not a phone", "123456").await;
    assert_eq!(
        user_errors(&verified),
        vec![("phone".into(), "INVALID_PHONE".into())]
    );

    // Wrong code.
    let phone = fresh_phone();
    request_code(&app, &phone).await;
    let code = latest_sms_code(&app.db, &phone).await;
    let verified = verify(&app, &phone, &wrong(&code)).await;
    assert_eq!(
        user_errors(&verified),
        vec![("code".into(), "INVALID_CODE".into())]
    );
    assert!(verified["token"].is_null());

    // Too many tries: after five wrong ones even the right code is refused.
    for _ in 0..4 {
        verify(&app, &phone, &wrong(&code)).await;
    }
    let verified = verify(&app, &phone, &code).await;
    assert_eq!(
        user_errors(&verified),
        vec![("code".into(), "TOO_MANY_ATTEMPTS".into())]
    );

    // Reused code.
    let phone = fresh_phone();
    request_code(&app, &phone).await;
    let code = latest_sms_code(&app.db, &phone).await;
    assert_eq!(user_errors(&verify(&app, &phone, &code).await), vec![]);
    assert_eq!(
        user_errors(&verify(&app, &phone, &code).await),
        vec![("code".into(), "CODE_ALREADY_USED".into())]
    );

    // Expired code.
    let phone = fresh_phone();
    request_code(&app, &phone).await;
    let code = latest_sms_code(&app.db, &phone).await;
    clock.advance(Duration::minutes(6));
    assert_eq!(
        user_errors(&verify(&app, &phone, &code).await),
        vec![("code".into(), "CODE_EXPIRED".into())]
    );

    // No code ever asked for answers like a wrong one.
    assert_eq!(
        user_errors(&verify(&app, &fresh_phone(), "123456").await),
        vec![("code".into(), "INVALID_CODE".into())]
    );
}

/// The body of a request refused before execution: its status, code and reason.
async fn refused(app: &TestApp, auth: &Auth, query: &str) -> (u16, String, String) {
    let (status, body) = app.gql_as(auth, query, json!({})).await;
    assert!(body["data"].is_null(), "{body}");
    let ext = &body["errors"][0]["extensions"];
    (
        status,
        ext["code"].as_str().unwrap_or("").to_owned(),
        ext["reason"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn dead_credentials_answer_unauthenticated_with_the_reason() {
    let (app, clock) = app_with_clock().await;
    let token = sign_in(&app, &fresh_phone()).await;
    let driver = Auth::Bearer(token.clone());
    let (_, body) = app.gql_as(&driver, "{ me { id } }", json!({})).await;
    assert!(body["data"]["me"]["id"].is_string(), "{body}");

    // Unknown (well-formed) and malformed tokens.
    let unknown = Auth::Bearer(format!("sct_{}", "A".repeat(43)));
    assert_eq!(
        refused(&app, &unknown, "{ me { id } }").await,
        (401, "UNAUTHENTICATED".into(), "UNAUTHENTICATED".into())
    );
    for garbage in ["sct_short", "nonsense", "sck_live_bad"] {
        assert_eq!(
            refused(
                &app,
                &Auth::Bearer(garbage.into()),
                "{ serverInfo { version } }"
            )
            .await
            .1,
            "UNAUTHENTICATED",
            "{garbage}"
        );
    }
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({ "query": "{ serverInfo { version } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");

    // Revoked: signed out.
    let (_, body) = app.gql_as(&driver, SIGN_OUT, json!({})).await;
    assert_eq!(body["data"]["signOut"]["signedOut"], true, "{body}");
    assert_eq!(
        refused(&app, &driver, "{ me { id } }").await,
        (401, "UNAUTHENTICATED".into(), "SESSION_REVOKED".into())
    );

    // Expired: thirty days on.
    let other = Auth::Bearer(sign_in(&app, &fresh_phone()).await);
    clock.advance(Duration::days(31));
    assert_eq!(
        refused(&app, &other, "{ me { id } }").await,
        (401, "UNAUTHENTICATED".into(), "SESSION_EXPIRED".into())
    );

    // Deleted account: every session ends.
    clock.advance(Duration::days(-31));
    let third = Auth::Bearer(sign_in(&app, &fresh_phone()).await);
    let (_, body) = app.gql_as(&third, DELETE, json!({})).await;
    assert!(
        body["data"]["deleteAccount"]["deletedDriverId"].is_string(),
        "{body}"
    );
    assert_eq!(
        refused(&app, &third, "{ me { id } }").await.2,
        "SESSION_REVOKED"
    );

    // Without a credential, a driver-only field asks for one.
    let (status, body) = app.gql_as(&Auth::Anonymous, ME, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(crate::support::first_code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn another_drivers_vehicle_is_not_found() {
    let app = TestApp::spawn().await;
    let a = app.driver().await;
    let b = app.driver().await;
    let b_vehicle = global_id("Vehicle", &app.vehicle_of(b.id).await);

    let (_, body) = app
        .gql_as(&a.auth(), REMOVE_VEHICLE, json!({ "vehicleId": b_vehicle }))
        .await;
    let payload = &body["data"]["removeVehicle"];
    assert_eq!(
        user_errors(payload),
        vec![("vehicleId".into(), "NOT_FOUND".into())],
        "{body}"
    );
    assert!(payload["vehicle"].is_null());

    // Exactly what a vehicle that does not exist answers, and a malformed id too.
    for id in [
        global_id("Vehicle", &accounts::VehicleId::new()),
        "garbage".to_owned(),
    ] {
        let (_, body) = app
            .gql_as(&a.auth(), REMOVE_VEHICLE, json!({ "vehicleId": id }))
            .await;
        assert_eq!(
            user_errors(&body["data"]["removeVehicle"]),
            vec![("vehicleId".into(), "NOT_FOUND".into())]
        );
    }

    let (_, body) = app
        .gql_as(
            &a.auth(),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": b_vehicle }),
        )
        .await;
    assert!(body["data"]["node"].is_null(), "{body}");
    assert!(body["errors"].is_null(), "{body}");

    // B still has it.
    let (_, body) = app.gql_as(&b.auth(), ME, json!({})).await;
    assert_eq!(
        body["data"]["me"]["vehicles"]["edges"][0]["node"]["id"],
        b_vehicle.as_str()
    );
}

#[tokio::test]
async fn vehicle_input_errors_name_the_field() {
    let app = TestApp::spawn().await;
    let a = app.driver().await;
    let cases = [
        (
            json!({ "vehicleType": "CAR" }),
            "registration",
            "REGISTRATION_REQUIRED",
        ),
        (
            json!({ "vehicleType": "BICYCLE", "registration": "AB12CDE" }),
            "registration",
            "REGISTRATION_NOT_ALLOWED",
        ),
        (
            json!({ "vehicleType": "VAN", "registration": "!!" }),
            "registration",
            "INVALID_REGISTRATION",
        ),
        (
            json!({ "vehicleType": "BICYCLE", "make": "x".repeat(51) }),
            "make",
            "INVALID_MAKE",
        ),
    ];
    for (input, field, code) in cases {
        let (_, body) = app
            .gql_as(&a.auth(), ADD_VEHICLE, json!({ "input": input }))
            .await;
        assert_eq!(
            user_errors(&body["data"]["addVehicle"]),
            vec![(field.to_owned(), code.to_owned())],
            "{body}"
        );
    }
    // A duplicate registration.
    let input = json!({ "input": { "vehicleType": "CAR", "registration": "DU99PLI" } });
    app.gql_as(&a.auth(), ADD_VEHICLE, input.clone()).await;
    let (_, body) = app.gql_as(&a.auth(), ADD_VEHICLE, input).await;
    assert_eq!(
        user_errors(&body["data"]["addVehicle"]),
        vec![("registration".into(), "DUPLICATE_VEHICLE".into())]
    );
    // A profile field, and a date that is not a date (refused before any resolver).
    let (_, body) = app
        .gql_as(
            &a.auth(),
            UPDATE_PROFILE,
            json!({ "input": { "email": "not-an-email" } }),
        )
        .await;
    assert_eq!(
        user_errors(&body["data"]["updateProfile"]),
        vec![("email".into(), "INVALID_EMAIL".into())]
    );
    let (status, body) = app
        .gql_as(
            &a.auth(),
            UPDATE_PROFILE,
            json!({ "input": { "dateOfBirth": "21/04/1990" } }),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        body["errors"][0]["extensions"]["code"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn login_codes_are_rate_limited_per_phone_and_per_client() {
    use redis::AsyncCommands;
    let app = TestApp::spawn().await;
    let phone = fresh_phone();
    for _ in 0..5 {
        assert_eq!(user_errors(&request_code(&app, &phone).await), vec![]);
    }
    let sent = request_code(&app, &phone).await;
    assert_eq!(
        user_errors(&sent),
        vec![(String::new(), "RATE_LIMITED".into())]
    );
    let wait = sent["retryAfterSeconds"].as_i64().unwrap();
    assert!((1..=900).contains(&wait), "{wait}");

    // Another phone from the same address, once the address has used its allowance.
    let mut redis = app.core.redis.conn().await.unwrap();
    let key = shared::redis_conn::key(
        app.core.redis.prefix(),
        ["rl", "login_code_client", "127.0.0.1"],
    );
    let _: () = redis.set_ex(&key, 1000, 600).await.unwrap();
    let sent = request_code(&app, &fresh_phone()).await;
    assert_eq!(
        user_errors(&sent),
        vec![(String::new(), "RATE_LIMITED".into())]
    );
    assert!(sent["retryAfterSeconds"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn partners_call_with_their_key_and_are_rate_limited_per_key() {
    use redis::AsyncCommands;
    let app = TestApp::spawn().await;
    let (partner, key_info, secret) = app.partner_with_key("Speedy Eats").await;
    let auth = Auth::Bearer(secret.clone());
    let (status, body) = app.gql_as(&auth, PARTNER, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["partner"]["name"], "Speedy Eats", "{body}");
    assert_eq!(
        body["data"]["partner"]["id"],
        global_id("Partner", &partner.id).as_str()
    );
    assert_eq!(
        body["data"]["partner"]["apiKeys"][0]["prefix"],
        key_info.prefix.as_str()
    );

    let mut redis = app.core.redis.conn().await.unwrap();
    let key = shared::redis_conn::key(
        app.core.redis.prefix(),
        ["rl", "partner_api_key", &key_info.id.to_string()],
    );
    let _: () = redis.set_ex(&key, 600, 30).await.unwrap();
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&secret)
        .json(&json!({ "query": PARTNER }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let retry_header: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(crate::support::first_code(&body), "RATE_LIMITED");
    let retry = body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap();
    assert!((1..=30).contains(&retry), "{body}");
    assert_eq!(retry, retry_header);

    // A revoked key is refused with its reason.
    let _: () = redis.del(&key).await.unwrap();
    let mut conn = app.db.conn().await.unwrap();
    accounts::revoke_api_key(
        &mut conn,
        app.core.clock.as_ref(),
        accounts::Actor::System,
        key_info.id,
    )
    .await
    .unwrap();
    assert_eq!(
        refused(&app, &auth, PARTNER).await,
        (401, "UNAUTHENTICATED".into(), "API_KEY_REVOKED".into())
    );
}

#[tokio::test]
async fn staff_sign_in_sets_a_strict_http_only_cookie_and_sign_out_clears_it() {
    let app = TestApp::spawn_with(|s| s.accounts.staff_cookie_secure = true).await;
    let password = "correct horse battery";
    let staff = app.staff_user(accounts::Role::Ops, password).await;
    let sign_in = "mutation($i: StaffSignInInput!) { staffSignIn(input: $i) { staff { email role } expiresAt userErrors { field code message } } }";

    let (_, body) = app
        .gql_as(
            &Auth::Anonymous,
            sign_in,
            json!({ "i": { "email": staff.email.as_str(), "password": "wrong password!" } }),
        )
        .await;
    assert_eq!(
        user_errors(&body["data"]["staffSignIn"]),
        vec![(String::new(), "INVALID_CREDENTIALS".into())]
    );

    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": sign_in, "variables": { "i": { "email": staff.email.as_str(), "password": password } } }))
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in [
        "shiftcover_staff=scs_",
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{part} missing: {cookie}");
    }
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["data"]["staffSignIn"]["staff"]["role"], "OPS",
        "{body}"
    );
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("shiftcover_staff=")
        .to_owned();
    assert!(
        !body.to_string().contains(&token),
        "the token stays out of the body"
    );
    let auth = Auth::StaffCookie(token);

    let (_, body) = app
        .gql_as(&auth, "{ staffMe { email role } }", json!({}))
        .await;
    assert_eq!(body["data"]["staffMe"]["email"], staff.email.as_str());

    let res = auth
        .apply(app.client.post(format!("{}/graphql", app.base)))
        .json(&json!({ "query": "mutation { staffSignOut { signedOut } }" }))
        .send()
        .await
        .unwrap();
    let cleared = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["staffSignOut"]["signedOut"], true);

    // The old cookie is refused, and cleared again so the browser can sign in afresh.
    let res = auth
        .apply(app.client.post(format!("{}/graphql", app.base)))
        .json(&json!({ "query": "{ staffMe { email } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["reason"], "SESSION_REVOKED");
}

#[tokio::test]
async fn staff_sign_ins_that_succeed_do_not_use_up_the_failure_allowance() {
    use redis::AsyncCommands;
    let app = TestApp::spawn().await;
    let password = "an often used password";
    let staff = app.staff_user(accounts::Role::Ops, password).await;
    let sign_in = "mutation($i: StaffSignInInput!) { staffSignIn(input: $i) { staff { role } userErrors { field code } } }";
    let attempt = |password: &'static str| {
        let app = &app;
        let email = staff.email.as_str().to_owned();
        async move {
            let (_, body) = app
                .gql_as(
                    &Auth::Anonymous,
                    sign_in,
                    json!({ "i": { "email": email, "password": password } }),
                )
                .await;
            body["data"]["staffSignIn"].clone()
        }
    };
    // More successful sign-ins than the limit allows failures (10 in 15 minutes).
    for n in 1..=11 {
        let payload = attempt(password).await;
        assert_eq!(payload["staff"]["role"], "OPS", "sign-in {n}: {payload}");
    }
    let mut redis = app.core.redis.conn().await.unwrap();
    let key = shared::redis_conn::key(
        app.core.redis.prefix(),
        ["rl", "staff_sign_in_email", staff.email.as_str()],
    );
    let counted: Option<i64> = redis.get(&key).await.unwrap();
    assert_eq!(counted.unwrap_or(0), 0, "successes are not counted");

    // A failure is counted, and ten of them lock the email, right password or not.
    let payload = attempt("a wrong password!").await;
    assert_eq!(
        user_errors(&payload),
        vec![(String::new(), "INVALID_CREDENTIALS".into())]
    );
    let counted: i64 = redis.get(&key).await.unwrap();
    assert_eq!(counted, 1);
    let _: () = redis.set_ex(&key, 10, 600).await.unwrap();
    let payload = attempt(password).await;
    assert_eq!(
        user_errors(&payload),
        vec![(String::new(), "RATE_LIMITED".into())]
    );
    assert!(payload["staff"].is_null(), "{payload}");
}

/// `requestLoginCode` for a fresh phone with extra headers; the payload.
async fn request_code_with(app: &TestApp, headers: &[(&str, &str)]) -> Value {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": REQUEST_LOGIN_CODE, "variables": { "phone": fresh_phone() } }));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let body: Value = req.send().await.unwrap().json().await.unwrap();
    body["data"]["requestLoginCode"].clone()
}

/// The count in the per-client login-code bucket of `subject`, if it has one.
async fn client_bucket(app: &TestApp, subject: &str) -> Option<i64> {
    use redis::AsyncCommands;
    let mut redis = app.core.redis.conn().await.unwrap();
    let key = shared::redis_conn::key(
        app.core.redis.prefix(),
        ["rl", "login_code_client", subject],
    );
    redis.get(&key).await.unwrap()
}

async fn exhaust_client_bucket(app: &TestApp, subject: &str) {
    use redis::AsyncCommands;
    let mut redis = app.core.redis.conn().await.unwrap();
    let key = shared::redis_conn::key(
        app.core.redis.prefix(),
        ["rl", "login_code_client", subject],
    );
    let _: () = redis.set_ex(&key, 1000, 600).await.unwrap();
}

#[tokio::test]
async fn a_forged_x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    // No trusted proxies (the default): the test client (127.0.0.1) is the client, whatever
    // it writes in its headers.
    let app = TestApp::spawn().await;
    let forged = [
        ("X-Forwarded-For", "198.51.100.1"),
        ("X-Real-IP", "198.51.100.2"),
    ];
    assert_eq!(user_errors(&request_code_with(&app, &forged).await), vec![]);
    assert_eq!(client_bucket(&app, "127.0.0.1").await, Some(1));
    assert_eq!(client_bucket(&app, "198.51.100.1").await, None);
    assert_eq!(client_bucket(&app, "198.51.100.2").await, None);

    // Once the address has used its allowance, a new forged address every time does not help.
    exhaust_client_bucket(&app, "127.0.0.1").await;
    for i in 0..3 {
        let hop = format!("203.0.113.{i}");
        let sent = request_code_with(&app, &[("X-Forwarded-For", &hop)]).await;
        assert_eq!(
            user_errors(&sent),
            vec![(String::new(), "RATE_LIMITED".into())],
            "{hop}"
        );
    }
}

#[tokio::test]
async fn a_trusted_proxys_x_forwarded_for_names_the_client() {
    // The test client plays the load balancer.
    let app = TestApp::spawn_with(|s| {
        s.http.trusted_proxies = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
    })
    .await;
    exhaust_client_bucket(&app, "127.0.0.1").await;
    // A client forged the first hop; the proxies appended the real address and their own.
    let chain = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.3")];
    assert_eq!(user_errors(&request_code_with(&app, &chain).await), vec![]);
    assert_eq!(client_bucket(&app, "203.0.113.7").await, Some(1));
    assert_eq!(client_bucket(&app, "198.51.100.1").await, None);
    assert_eq!(client_bucket(&app, "10.0.0.3").await, None);

    // X-Real-IP from a trusted proxy, when there is no X-Forwarded-For.
    let real = [("X-Real-IP", "203.0.113.8")];
    assert_eq!(user_errors(&request_code_with(&app, &real).await), vec![]);
    assert_eq!(client_bucket(&app, "203.0.113.8").await, Some(1));

    // That client's own allowance is its own.
    exhaust_client_bucket(&app, "203.0.113.7").await;
    let sent = request_code_with(&app, &[("X-Forwarded-For", "203.0.113.7")]).await;
    assert_eq!(
        user_errors(&sent),
        vec![(String::new(), "RATE_LIMITED".into())]
    );
    let other = request_code_with(&app, &[("X-Forwarded-For", "203.0.113.9")]).await;
    assert_eq!(user_errors(&other), vec![]);
}

async fn set_bucket(app: &TestApp, bucket: &str, subject: &str, count: i64) {
    use redis::AsyncCommands;
    let mut redis = app.core.redis.conn().await.unwrap();
    let key = shared::redis_conn::key(app.core.redis.prefix(), ["rl", bucket, subject]);
    let _: () = redis.set_ex(&key, count, 600).await.unwrap();
}

async fn bucket(app: &TestApp, bucket: &str, subject: &str) -> Option<i64> {
    use redis::AsyncCommands;
    let mut redis = app.core.redis.conn().await.unwrap();
    let key = shared::redis_conn::key(app.core.redis.prefix(), ["rl", bucket, subject]);
    redis.get(&key).await.unwrap()
}

#[tokio::test]
async fn code_guesses_are_limited_per_client_and_over_the_service() {
    let app = TestApp::spawn().await;
    // A wrong guess uses up one failure of the client and of the service; a sign-in does not.
    let phone = fresh_phone();
    let code = app.login_code_for(&phone).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let failed = verify(&app, &phone, wrong).await;
    assert!(failed["token"].is_null(), "{failed}");
    assert_eq!(
        bucket(&app, "verify_failures_client", "127.0.0.1").await,
        Some(1)
    );
    assert_eq!(bucket(&app, "verify_failures_global", "all").await, Some(1));
    let ok = verify(&app, &phone, &code).await;
    assert!(ok["token"].is_string(), "{ok}");
    assert_eq!(
        bucket(&app, "verify_failures_client", "127.0.0.1").await,
        Some(1)
    );
    assert_eq!(bucket(&app, "verify_failures_global", "all").await, Some(1));

    // A client that has failed too often is refused, even with a right code for a new phone.
    set_bucket(&app, "verify_failures_client", "127.0.0.1", 30).await;
    let phone = fresh_phone();
    let code = app.login_code_for(&phone).await;
    let refused = verify(&app, &phone, &code).await;
    assert_eq!(
        user_errors(&refused),
        vec![(String::new(), "RATE_LIMITED".into())]
    );
    assert!(refused["token"].is_null());
    assert!(refused["retryAfterSeconds"].as_i64().unwrap() > 0);

    // So is everyone once the service's failure budget is spent.
    set_bucket(&app, "verify_failures_client", "127.0.0.1", 0).await;
    set_bucket(&app, "verify_failures_global", "all", 1000).await;
    let refused = verify(&app, &phone, &code).await;
    assert_eq!(
        user_errors(&refused),
        vec![(String::new(), "RATE_LIMITED".into())]
    );
    set_bucket(&app, "verify_failures_global", "all", 0).await;
    let ok = verify(&app, &phone, &code).await;
    assert!(ok["token"].is_string(), "{ok}");
}

#[tokio::test]
async fn without_redis_no_code_is_checked() {
    // Nothing listens on the discard port: the budgets cannot be counted.
    let app =
        TestApp::spawn_with(|s| s.redis.url = shared::Secret::new("redis://127.0.0.1:9/0")).await;
    let phone = fresh_phone();
    let code = app.login_code_for(&phone).await;
    let (status, body) = app
        .gql_as(
            &Auth::Anonymous,
            VERIFY_LOGIN_CODE,
            json!({ "phone": phone, "code": code }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["verifyLoginCode"]["token"].is_null(), "{body}");
    assert!(
        body["errors"][0]["extensions"]["code"].is_string(),
        "{body}"
    );
    assert!(!body.to_string().contains("127.0.0.1:9"), "{body}");
}
