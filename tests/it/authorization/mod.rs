//! The authorization table: for every root field of the schema, what each kind of viewer gets,
//! over HTTP against the real server.
//!
//! Viewers (columns): anonymous, driver A, driver B, a partner's API key, and staff signed in as
//! ops, finance and admin. Objects in the fixture belong to driver A (a vehicle), to the calling
//! partner ("own partner") or to another partner, so each entry also says whose object it targets.
//! Every entry runs on fresh fixtures (new drivers, partners, keys, codes, jobs); its viewers then
//! call in the order of [`VIEWERS`], each with a credential of its own, so one viewer signing out,
//! revoking or deleting cannot change what the next entry sees. Within an entry, design the
//! expectations with that order in mind (driver A removes its vehicle before driver B tries), and
//! give each viewer its own copy of anything a call uses up (`Fx::logins`: one code per viewer).
//!
//! Outcomes:
//! - `Allowed`: no error, the judged value is not null, and its `userErrors` (if any) are empty;
//! - `Hidden`: no error and the judged value is null (`node(id)` never reveals existence);
//! - `Denied(code)`: a GraphQL error with `extensions.code` = code (`UNAUTHENTICATED`,
//!   `FORBIDDEN`) and the judged value null;
//! - `Refused(code)`: the call runs but answers a user error with that code (e.g. `NOT_FOUND` for
//!   another driver's vehicle).
//!
//! The test lists the schema's root fields by introspection and fails when one has no entry here
//! (and when an entry names a field that no longer exists).
//!
//! # Adding an entry
//!
//! When you add a query or mutation, add at least one [`Entry`] to [`table`]:
//! 1. `field`: `"Query.<name>"` or `"Mutation.<name>"`;
//! 2. `case`: whose object it targets, in a few words (`"driver A's vehicle"`, `"-"` when none);
//! 3. `doc`: the smallest document that calls the field, with its variables declared;
//! 4. `vars`: builds the variables from the fixture ([`Fx`]) and the viewer's column; add to `Fx`
//!    (and [`fixture`]) any object the field needs, created through the owning app's functions;
//! 5. `judge`: a JSON pointer into `data` of the value to judge, normally `"/<name>"`;
//! 6. `expect`: the outcome for each viewer, in the order of [`VIEWERS`] — write it with [`by`].
//!
//! Add a row per owner when ownership matters (own object, another's object).

mod claims;
mod cover;
mod finance;
mod ops;
mod partners;
mod payments;

use crate::support::{Auth, SignedInDriver, TestApp, fresh_phone, global_id};
use accounts::{Partner, Role, StaffId};
use serde_json::{Value, json};
use shared::settings::GraphqlSettings;
use std::collections::BTreeSet;

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Viewer {
    Anonymous,
    DriverA,
    DriverB,
    Partner,
    Ops,
    Finance,
    Admin,
}

/// The columns of the table, in order.
const VIEWERS: [Viewer; 7] = [
    Viewer::Anonymous,
    Viewer::DriverA,
    Viewer::DriverB,
    Viewer::Partner,
    Viewer::Ops,
    Viewer::Finance,
    Viewer::Admin,
];

/// What a viewer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allowed,
    Hidden,
    Denied(&'static str),
    Refused(&'static str),
}
use Expect::*;

const UNAUTH: Expect = Denied("UNAUTHENTICATED");
const FORBID: Expect = Denied("FORBIDDEN");

/// One row per viewer, in the order of [`VIEWERS`].
fn by(
    anonymous: Expect,
    driver_a: Expect,
    driver_b: Expect,
    partner: Expect,
    ops: Expect,
    finance: Expect,
    admin: Expect,
) -> [Expect; 7] {
    [anonymous, driver_a, driver_b, partner, ops, finance, admin]
}

/// Open to everyone.
fn everyone() -> [Expect; 7] {
    [Allowed; 7]
}

/// Driver-only fields: both drivers, on their own account.
fn drivers_only() -> [Expect; 7] {
    by(UNAUTH, Allowed, Allowed, FORBID, FORBID, FORBID, FORBID)
}

/// Ops (and admin, who holds every role).
fn ops_only() -> [Expect; 7] {
    by(UNAUTH, FORBID, FORBID, FORBID, Allowed, FORBID, Allowed)
}

/// Admin only.
fn admin_only() -> [Expect; 7] {
    by(UNAUTH, FORBID, FORBID, FORBID, FORBID, FORBID, Allowed)
}

/// Driver sign-in: people without a session and drivers.
fn driver_sign_in() -> [Expect; 7] {
    by(Allowed, Allowed, Allowed, FORBID, FORBID, FORBID, FORBID)
}

/// Objects of driver A (the driver, their vehicles): A and ops see them; nobody else learns
/// they exist.
fn driver_a_object() -> [Expect; 7] {
    by(Hidden, Allowed, Hidden, Hidden, Allowed, Hidden, Allowed)
}

/// Fresh objects and credentials for one row.
struct Fx {
    a: SignedInDriver,
    b: SignedInDriver,
    a_vehicle: String,
    own_partner: Partner,
    own_partner_key: String,
    other_partner: Partner,
    other_partner_key: String,
    staff_target: String,
    /// A phone and its fresh login code for each viewer (a code signs in once).
    logins: Vec<(String, String)>,
    sign_in_email: String,
    sign_in_password: String,
    job: String,
    // ---- cover fixtures (see cover.rs) ----
    /// Driver A's enrolment (active) in the food delivery product, and its running session.
    cover: cover::CoverFx,
    // ---- payments fixtures (see payments.rs) ----
    /// Driver A's card, a payment on it (not charged) and a pending refund of it.
    payments: payments::PaymentsFx,
    // ---- ops fixtures (see ops.rs) ----
    /// A dead job, and a product of its own with a published version and a draft.
    ops: ops::OpsFx,
    // ---- partners fixtures (see partners.rs) ----
    /// Driver A linked to the own partner, an endpoint with a delivery, a fresh code of B's.
    partners: partners::PartnersFx,
    // ---- claims fixtures (see claims.rs) ----
    /// Driver A's claims and disputed charges.
    claims: claims::ClaimsFx,
}

/// One row of the table.
struct Entry {
    field: &'static str,
    case: &'static str,
    doc: &'static str,
    vars: fn(&Fx, usize) -> Value,
    judge: &'static str,
    expect: [Expect; 7],
}

fn none(_: &Fx, _: usize) -> Value {
    json!({})
}

fn table() -> Vec<Entry> {
    let mut entries = accounts_and_foundation();
    entries.extend(cover::entries());
    entries.extend(payments::entries());
    entries.extend(ops::entries());
    entries.extend(partners::entries());
    entries.extend(claims::entries());
    entries.extend(finance::entries());
    entries
}

/// The foundation's and accounts' fields.
fn accounts_and_foundation() -> Vec<Entry> {
    vec![
        // ---- queries ----
        Entry {
            field: "Query.serverInfo",
            case: "-",
            doc: "{ serverInfo { version } }",
            vars: none,
            judge: "/serverInfo",
            expect: everyone(),
        },
        Entry {
            field: "Query.verifyCover",
            case: "a forged token",
            doc: "query($t: String!) { verifyCover(token: $t) { status reason } }",
            vars: |_, _| json!({ "t": "forged.token" }),
            judge: "/verifyCover",
            expect: everyone(),
        },
        Entry {
            field: "Query.products",
            case: "the catalogue",
            doc: "{ products { id code name versionNumber } }",
            vars: none,
            judge: "/products",
            expect: everyone(),
        },
        Entry {
            field: "Query.me",
            case: "own account",
            doc: "{ me { id phone vehicles { edges { node { id } } } } }",
            vars: none,
            judge: "/me",
            expect: drivers_only(),
        },
        Entry {
            field: "Query.staffMe",
            case: "own account",
            doc: "{ staffMe { id email role } }",
            vars: none,
            judge: "/staffMe",
            expect: by(UNAUTH, FORBID, FORBID, FORBID, Allowed, Allowed, Allowed),
        },
        Entry {
            field: "Query.partner",
            case: "own partner",
            doc: "{ partner { id name apiKeys { id prefix } } }",
            vars: none,
            judge: "/partner",
            expect: by(UNAUTH, FORBID, FORBID, Allowed, FORBID, FORBID, FORBID),
        },
        Entry {
            field: "Query.partners",
            case: "all partners",
            doc: "{ partners { id name apiKeys { id } } }",
            vars: none,
            judge: "/partners",
            expect: ops_only(),
        },
        Entry {
            field: "Query.node",
            case: "driver A",
            doc: "query($id: ID!) { node(id: $id) { id ... on Driver { phone } } }",
            vars: |f, _| json!({ "id": global_id("Driver", &f.a.id) }),
            judge: "/node",
            expect: driver_a_object(),
        },
        Entry {
            field: "Query.node",
            case: "driver A, through the vehicles edge",
            doc: "query($id: ID!) { node(id: $id) { ... on Driver { vehicles { edges { node { id registration } } } } } }",
            vars: |f, _| json!({ "id": global_id("Driver", &f.a.id) }),
            judge: "/node/vehicles/edges/0/node",
            expect: driver_a_object(),
        },
        Entry {
            field: "Query.node",
            case: "driver A's vehicle",
            doc: "query($id: ID!) { node(id: $id) { id ... on Vehicle { registration driver { id } } } }",
            vars: |f, _| json!({ "id": f.a_vehicle }),
            judge: "/node",
            expect: driver_a_object(),
        },
        Entry {
            field: "Query.node",
            case: "the calling partner",
            doc: "query($id: ID!) { node(id: $id) { id ... on Partner { name apiKeys { prefix } } } }",
            vars: |f, _| json!({ "id": global_id("Partner", &f.own_partner.id) }),
            judge: "/node",
            expect: by(Hidden, Hidden, Hidden, Allowed, Allowed, Hidden, Allowed),
        },
        Entry {
            field: "Query.node",
            case: "another partner",
            doc: "query($id: ID!) { node(id: $id) { id ... on Partner { name } } }",
            vars: |f, _| json!({ "id": global_id("Partner", &f.other_partner.id) }),
            judge: "/node",
            expect: by(Hidden, Hidden, Hidden, Hidden, Allowed, Hidden, Allowed),
        },
        Entry {
            field: "Query.node",
            case: "an outbox job",
            doc: "query($id: ID!) { node(id: $id) { id ... on Job { status } } }",
            vars: |f, _| json!({ "id": f.job }),
            judge: "/node",
            expect: by(Hidden, Hidden, Hidden, Hidden, Allowed, Hidden, Allowed),
        },
        Entry {
            field: "Query.nodes",
            case: "driver A and their vehicle",
            doc: "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            vars: |f, _| json!({ "ids": [global_id("Driver", &f.a.id), f.a_vehicle] }),
            judge: "/nodes/1",
            expect: driver_a_object(),
        },
        // ---- driver sign-in ----
        Entry {
            field: "Mutation.requestLoginCode",
            case: "a new phone",
            doc: "mutation($phone: String!) { requestLoginCode(input: { phone: $phone }) { phone userErrors { code } } }",
            vars: |_, _| json!({ "phone": fresh_phone() }),
            judge: "/requestLoginCode",
            expect: driver_sign_in(),
        },
        Entry {
            field: "Mutation.verifyLoginCode",
            case: "a code just sent",
            doc: "mutation($phone: String!, $code: String!) { verifyLoginCode(input: { phone: $phone, code: $code }) { token userErrors { code } } }",
            vars: |f, column| json!({ "phone": f.logins[column].0, "code": f.logins[column].1 }),
            judge: "/verifyLoginCode",
            expect: driver_sign_in(),
        },
        // ---- a driver's own account ----
        Entry {
            field: "Mutation.signOut",
            case: "own session",
            doc: "mutation { signOut { signedOut userErrors { code } } }",
            vars: none,
            judge: "/signOut",
            expect: drivers_only(),
        },
        Entry {
            field: "Mutation.signOutEverywhere",
            case: "own sessions",
            doc: "mutation { signOutEverywhere { sessionsEnded userErrors { code } } }",
            vars: none,
            judge: "/signOutEverywhere",
            expect: drivers_only(),
        },
        Entry {
            field: "Mutation.updateProfile",
            case: "own profile",
            doc: "mutation { updateProfile(input: { name: \"Grace Hopper\" }) { driver { name } userErrors { code } } }",
            vars: none,
            judge: "/updateProfile",
            expect: drivers_only(),
        },
        Entry {
            field: "Mutation.addVehicle",
            case: "to own account",
            doc: "mutation { addVehicle(input: { vehicleType: BICYCLE }) { vehicle { id } userErrors { code } } }",
            vars: none,
            judge: "/addVehicle",
            expect: drivers_only(),
        },
        Entry {
            field: "Mutation.removeVehicle",
            case: "driver A's vehicle",
            doc: "mutation($id: ID!) { removeVehicle(input: { vehicleId: $id }) { vehicle { id } userErrors { code } } }",
            vars: |f, _| json!({ "id": f.a_vehicle }),
            judge: "/removeVehicle",
            expect: by(
                UNAUTH,
                Allowed,
                Refused("NOT_FOUND"),
                FORBID,
                FORBID,
                FORBID,
                FORBID,
            ),
        },
        Entry {
            field: "Mutation.exportMyData",
            case: "own data",
            doc: "mutation { exportMyData { data userErrors { code } } }",
            vars: none,
            judge: "/exportMyData",
            expect: drivers_only(),
        },
        Entry {
            field: "Mutation.deleteAccount",
            case: "own account",
            doc: "mutation { deleteAccount(input: { confirm: true }) { deletedDriverId userErrors { code } } }",
            vars: none,
            judge: "/deleteAccount",
            expect: drivers_only(),
        },
        // ---- staff sign-in ----
        Entry {
            field: "Mutation.staffSignIn",
            case: "a staff user's own credentials",
            doc: "mutation($email: String!, $password: String!) { staffSignIn(input: { email: $email, password: $password }) { staff { id } userErrors { code } } }",
            vars: |f, _| json!({ "email": f.sign_in_email, "password": f.sign_in_password }),
            judge: "/staffSignIn",
            expect: by(Allowed, FORBID, FORBID, FORBID, Allowed, Allowed, Allowed),
        },
        Entry {
            field: "Mutation.staffSignOut",
            case: "own session",
            doc: "mutation { staffSignOut { signedOut userErrors { code } } }",
            vars: none,
            judge: "/staffSignOut",
            expect: by(UNAUTH, FORBID, FORBID, FORBID, Allowed, Allowed, Allowed),
        },
        // ---- back office ----
        Entry {
            field: "Mutation.createPartner",
            case: "-",
            doc: "mutation($name: String!) { createPartner(input: { name: $name }) { partner { id } userErrors { code } } }",
            vars: |_, _| json!({ "name": format!("Partner {}", uuid::Uuid::new_v4().simple()) }),
            judge: "/createPartner",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.setPartnerStatus",
            case: "another partner",
            doc: "mutation($id: ID!) { setPartnerStatus(input: { partnerId: $id, status: SUSPENDED }) { partner { status } userErrors { code } } }",
            vars: |f, _| json!({ "id": global_id("Partner", &f.other_partner.id) }),
            judge: "/setPartnerStatus",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.createPartnerApiKey",
            case: "another partner",
            doc: "mutation($id: ID!) { createPartnerApiKey(input: { partnerId: $id, scopes: [COVER_READ] }) { apiKey { id } secret userErrors { code } } }",
            vars: |f, _| json!({ "id": global_id("Partner", &f.other_partner.id) }),
            judge: "/createPartnerApiKey",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.createPartnerApiKey",
            case: "the calling partner",
            doc: "mutation($id: ID!) { createPartnerApiKey(input: { partnerId: $id, scopes: [COVER_READ] }) { apiKey { id } secret userErrors { code } } }",
            vars: |f, _| json!({ "id": global_id("Partner", &f.own_partner.id) }),
            judge: "/createPartnerApiKey",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.rotatePartnerApiKey",
            case: "another partner's key",
            doc: "mutation($id: ID!) { rotatePartnerApiKey(input: { keyId: $id, overlapHours: 1 }) { apiKey { id } secret userErrors { code } } }",
            vars: |f, _| json!({ "id": f.other_partner_key }),
            judge: "/rotatePartnerApiKey",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.revokePartnerApiKey",
            case: "another partner's key",
            doc: "mutation($id: ID!) { revokePartnerApiKey(input: { keyId: $id }) { apiKey { revokedAt } userErrors { code } } }",
            vars: |f, _| json!({ "id": f.other_partner_key }),
            judge: "/revokePartnerApiKey",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.createStaffUser",
            case: "-",
            doc: "mutation($email: String!) { createStaffUser(input: { email: $email, name: \"New Person\", role: FINANCE, password: \"a long enough password\" }) { staff { id } userErrors { code } } }",
            vars: |_, _| json!({ "email": format!("new-{}@staff.test", uuid::Uuid::new_v4().simple()) }),
            judge: "/createStaffUser",
            expect: admin_only(),
        },
        Entry {
            field: "Mutation.disableStaffUser",
            case: "another staff user",
            doc: "mutation($id: ID!) { disableStaffUser(input: { staffId: $id }) { staff { disabledAt } userErrors { code } } }",
            vars: |f, _| json!({ "id": f.staff_target }),
            judge: "/disableStaffUser",
            expect: admin_only(),
        },
        // ---- development only ----
        Entry {
            field: "Mutation.enqueueDemoPing",
            case: "- (refused in production)",
            doc: "mutation($key: String!) { enqueueDemoPing(input: { message: \"hi\", idempotencyKey: $key }) { job { id } userErrors { code } } }",
            vars: |_, _| json!({ "key": format!("key-{}", uuid::Uuid::new_v4().simple()) }),
            judge: "/enqueueDemoPing",
            expect: everyone(),
        },
    ]
}

/// The staff users, made once (each costs an argon2 hash).
struct Staff {
    ops: StaffId,
    finance: StaffId,
    admin: StaffId,
    sign_in_email: String,
}

const PASSWORD: &str = "table test password";

/// A staff session for `staff`, written as `staff_sign_in` writes one (the token's SHA-256), so
/// that each row can have its own session without an argon2 verification per row.
async fn mint_staff_session(app: &TestApp, staff: StaffId) -> String {
    use diesel_async::RunQueryDsl;
    let token = format!(
        "scs_{}{}",
        uuid::Uuid::new_v4().simple(),
        &uuid::Uuid::new_v4().simple().to_string()[..11]
    );
    let mut conn = app.db.conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO staff_sessions (id, staff_id, token_hash, created_at, expires_at, last_seen_at)
         VALUES (gen_random_uuid(), $1, sha256(convert_to($2, 'UTF8')), now(), now() + interval '1 hour', now())",
    )
    .bind::<diesel::sql_types::Uuid, _>(staff.uuid())
    .bind::<diesel::sql_types::Text, _>(&token)
    .execute(&mut conn)
    .await
    .unwrap();
    token
}

/// A staff user to act on, sharing an existing user's password hash (never signed in).
async fn staff_target(app: &TestApp, like: StaffId) -> StaffId {
    use diesel_async::RunQueryDsl;
    let id = StaffId::new();
    let mut conn = app.db.conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO staff (id, email, name, role, password_hash)
         SELECT $1, $2, 'Target User', 'ops', password_hash FROM staff WHERE id = $3",
    )
    .bind::<diesel::sql_types::Uuid, _>(id.uuid())
    .bind::<diesel::sql_types::Text, _>(format!("target-{}@staff.test", id.uuid().simple()))
    .bind::<diesel::sql_types::Uuid, _>(like.uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    id
}

async fn fixture(app: &TestApp, staff: &Staff) -> Fx {
    let a = app.driver().await;
    let b = app.driver().await;
    let a_vehicle = global_id("Vehicle", &app.vehicle_of(a.id).await);
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (own_partner, _, own_partner_key) = app.partner_with_key(&format!("Own {unique}")).await;
    let (other_partner, other_key, _) = app.partner_with_key(&format!("Other {unique}")).await;
    let mut logins = Vec::new();
    for _ in VIEWERS {
        let phone = fresh_phone();
        let code = app.login_code_for(&phone).await;
        logins.push((phone, code));
    }
    let job = {
        let mut conn = app.db.conn().await.unwrap();
        let id = shared::outbox::enqueue(
            &mut conn,
            &shared::demo::DemoPing {
                message: "table".into(),
                key: format!("table-{unique}"),
            },
        )
        .await
        .unwrap()
        .unwrap();
        global_id("Job", &id)
    };
    // ---- cover fixtures (made before `a` moves into `Fx`) ----
    let cover = cover::fixture(app, &a, &a_vehicle).await;
    // ---- payments fixtures (made before `a` moves into `Fx`) ----
    let payments = payments::fixture(app, &a).await;
    // ---- partners fixtures (made before `a`, `b` and the partner move into `Fx`) ----
    let partners = partners::fixture(app, &a, &b, &own_partner).await;
    // ---- claims fixtures (made after cover's: driver A's wallet and running session) ----
    let claims = claims::fixture(app, &a, &a_vehicle).await;
    Fx {
        a,
        b,
        a_vehicle,
        own_partner,
        own_partner_key,
        other_partner,
        other_partner_key: global_id("PartnerApiKey", &other_key.id),
        staff_target: global_id("StaffUser", &staff_target(app, staff.ops).await),
        logins,
        sign_in_email: staff.sign_in_email.clone(),
        sign_in_password: PASSWORD.into(),
        job,
        // ---- cover fixtures ----
        cover,
        // ---- payments fixtures ----
        payments,
        // ---- ops fixtures ----
        ops: ops::fixture(app).await,
        // ---- partners fixtures ----
        partners,
        // ---- claims fixtures ----
        claims,
    }
}

async fn credential(app: &TestApp, staff: &Staff, fx: &Fx, viewer: Viewer) -> Auth {
    match viewer {
        Viewer::Anonymous => Auth::Anonymous,
        Viewer::DriverA => fx.a.auth(),
        Viewer::DriverB => fx.b.auth(),
        Viewer::Partner => Auth::Bearer(fx.own_partner_key.clone()),
        Viewer::Ops => Auth::StaffCookie(mint_staff_session(app, staff.ops).await),
        Viewer::Finance => Auth::StaffCookie(mint_staff_session(app, staff.finance).await),
        Viewer::Admin => Auth::StaffCookie(mint_staff_session(app, staff.admin).await),
    }
}

/// Why `body` does not show `expect`, if it does not.
fn judge(status: u16, body: &Value, pointer: &str, expect: Expect) -> Result<(), String> {
    let value = body["data"].pointer(pointer).unwrap_or(&Value::Null);
    let error_code = body["errors"][0]["extensions"]["code"].as_str();
    let user_error = value["userErrors"][0]["code"].as_str();
    let ok = match expect {
        Allowed => {
            status == 200 && error_code.is_none() && !value.is_null() && user_error.is_none()
        }
        Hidden => status == 200 && error_code.is_none() && value.is_null(),
        Denied(code) => error_code == Some(code) && value.is_null(),
        Refused(code) => status == 200 && error_code.is_none() && user_error == Some(code),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {expect:?}, got HTTP {status}: {body}"))
    }
}

/// The schema's root fields, as `Query.<name>` / `Mutation.<name>`, by introspection.
async fn root_fields() -> BTreeSet<String> {
    let schema = graphql::build_schema(&GraphqlSettings::default()).finish();
    let res = schema
        .execute("{ __schema { queryType { fields { name } } mutationType { fields { name } } } }")
        .await;
    assert!(res.errors.is_empty(), "{:?}", res.errors);
    let data = res.data.into_json().unwrap();
    let mut out = BTreeSet::new();
    for (root, key) in [("Query", "queryType"), ("Mutation", "mutationType")] {
        for f in data["__schema"][key]["fields"].as_array().unwrap() {
            out.insert(format!("{root}.{}", f["name"].as_str().unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn every_root_field_has_an_entry() {
    let schema_fields = root_fields().await;
    let table_fields: BTreeSet<String> = table().iter().map(|e| e.field.to_owned()).collect();
    let missing: Vec<_> = schema_fields.difference(&table_fields).collect();
    let stale: Vec<_> = table_fields.difference(&schema_fields).collect();
    assert!(
        missing.is_empty(),
        "root fields without an authorization table entry (see the module docs of tests/it/authorization/mod.rs): {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "entries for fields the schema no longer has: {stale:?}"
    );
}

#[tokio::test]
async fn every_viewer_gets_what_the_table_says() {
    let app = TestApp::spawn().await;
    let ops = app.staff_user(Role::Ops, PASSWORD).await;
    let finance = app.staff_user(Role::Finance, PASSWORD).await;
    let admin = app.staff_user(Role::Admin, PASSWORD).await;
    let sign_in = app.staff_user(Role::Ops, PASSWORD).await;
    let staff = Staff {
        ops: ops.id,
        finance: finance.id,
        admin: admin.id,
        sign_in_email: sign_in.email.as_str().to_owned(),
    };

    let mut failures = Vec::new();
    let mut rows = 0;
    for entry in table() {
        let fx = fixture(&app, &staff).await;
        for (column, (viewer, expect)) in VIEWERS.iter().zip(entry.expect).enumerate() {
            let auth = credential(&app, &staff, &fx, *viewer).await;
            let (status, body) = app
                .gql_as(&auth, entry.doc, (entry.vars)(&fx, column))
                .await;
            rows += 1;
            if let Err(why) = judge(status, &body, entry.judge, expect) {
                failures.push(format!(
                    "{} [{}] as {viewer:?}: {why}",
                    entry.field, entry.case
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {rows} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
