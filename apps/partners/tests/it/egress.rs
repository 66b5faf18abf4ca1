//! Webhooks cannot be turned against the inside: every spelling of an internal address is
//! refused at registration, the address actually dialled is checked again (names through the
//! delivery client's resolver, so DNS rebinding reaches nothing), redirects are not followed,
//! answers are read only so far, and endpoints per partner are capped.

use crate::support::Harness;
use partners::egress::{self, FilteringResolver};
use partners::{EventType, Viewer};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Every way of writing an internal address, as a partner might register it.
const INTERNAL: [&str; 22] = [
    "https://127.0.0.1/hook",
    "https://2130706433/hook",
    "https://0x7f000001/hook",
    "https://0x7F.0.0.1/hook",
    "https://0177.0.0.1/hook",
    "https://017700000001/hook",
    "https://127.1/hook",
    "https://127.0.1/hook",
    "https://[::1]/hook",
    "https://[0:0:0:0:0:0:0:1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:7f00:1]/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://2852039166/latest/meta-data/",
    "https://[fe80::1]/hook",
    "https://10.0.0.1/hook",
    "https://192.168.1.1/hook",
    "https://100.64.0.1/hook",
    "https://0.0.0.0/hook",
    "https://[fd00::1]/hook",
    "https://localhost/hook",
    "https://api.localhost/hook",
];

/// The harness with the production policy: loopback refused.
fn strict(h: &mut Harness) {
    let mut settings = (*h.settings).clone();
    settings.partner_webhooks.allow_loopback = false;
    h.settings = Arc::new(settings);
}

#[tokio::test]
async fn every_spelling_of_an_internal_address_is_refused_at_registration() {
    let mut h = Harness::new().await;
    strict(&mut h);
    let mut conn = h.conn().await;
    let sandbox = partners::PartnerScope::test(h.partner.partner_id);
    for scope in [h.partner, sandbox] {
        for url in INTERNAL {
            let err = partners::register_webhook_endpoint(
                &mut conn,
                &h.clock,
                &h.settings.partner_webhooks,
                scope,
                url,
                &EventType::ALL,
                None,
            )
            .await
            .unwrap_err();
            let user = err.user_error().unwrap();
            assert_eq!(user.code, "URL_NOT_ALLOWED", "{url}");
            assert_eq!(user.field.as_deref(), Some("url"), "{url}");
        }
    }
    // Live endpoints need https; a sandbox one may be plain http.
    let register = async |conn: &mut shared::DbConn, scope, url: &str| {
        partners::register_webhook_endpoint(
            conn,
            &h.clock,
            &h.settings.partner_webhooks,
            scope,
            url,
            &EventType::ALL,
            None,
        )
        .await
    };
    assert_eq!(
        register(&mut conn, h.partner, "http://8.8.8.8/hook")
            .await
            .unwrap_err()
            .code(),
        Some("INVALID_URL")
    );
    assert_eq!(
        register(&mut conn, h.partner, "https://user:pw@8.8.8.8/hook")
            .await
            .unwrap_err()
            .code(),
        Some("INVALID_URL")
    );
    register(&mut conn, sandbox, "http://8.8.8.8/hook")
        .await
        .unwrap();
    register(&mut conn, h.partner, "https://8.8.8.8/hook")
        .await
        .unwrap();
    assert!(
        partners::list_webhook_endpoints(&mut conn, h.partner)
            .await
            .unwrap()
            .iter()
            .all(|e| e.url == "https://8.8.8.8/hook")
    );
}

/// A receiver, and deliveries to it through two endpoints registered while loopback was
/// allowed: one by address, one by the name `localhost`.
async fn deliveries_to_loopback(h: &Harness, receiver: &MockServer) -> Vec<shared::ids::JobId> {
    let port = receiver.address().port();
    let mut conn = h.conn().await;
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
    ] {
        partners::register_webhook_endpoint(
            &mut conn,
            &h.clock,
            &h.settings.partner_webhooks,
            h.partner,
            &url,
            &[EventType::DriverUnlinked],
            None,
        )
        .await
        .unwrap();
    }
    drop(conn);
    let d = h.driver("07911 100301").await;
    h.link(h.partner, d, "lo-1").await;
    let mut conn = h.conn().await;
    partners::unlink_by_partner(&mut conn, &h.clock, h.partner, "lo-1")
        .await
        .unwrap();
    drop(conn);
    h.webhook_jobs()
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test]
async fn loopback_is_dialled_only_while_the_setting_allows_it() {
    let mut h = Harness::new().await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let jobs = deliveries_to_loopback(&h, &receiver).await;
    assert_eq!(jobs.len(), 2);

    // The same endpoints with the setting off (as in production): the address literal and the
    // name that resolves to loopback at connect time are both refused, unsent.
    strict(&mut h);
    for job in &jobs {
        let result = h.run_job(*job).await;
        assert!(result.is_err(), "{result:?}");
    }
    assert!(receiver.received_requests().await.unwrap().is_empty());
    let mut conn = h.conn().await;
    let endpoints = partners::list_webhook_endpoints(&mut conn, h.partner)
        .await
        .unwrap();
    for endpoint in &endpoints {
        let deliveries =
            partners::list_deliveries(&mut conn, Viewer::Partner(h.partner), endpoint.id, None, 10)
                .await
                .unwrap();
        let attempts =
            partners::list_attempts(&mut conn, Viewer::Partner(h.partner), deliveries[0].id)
                .await
                .unwrap();
        assert_eq!(attempts.len(), 1, "{}", endpoint.url);
        let error = attempts[0].error.as_deref().unwrap();
        assert!(error.starts_with("refused: "), "{}: {error}", endpoint.url);
        assert_eq!(attempts[0].status_code, None);
    }
    drop(conn);

    // Back on (development, tests), both arrive.
    let mut settings = (*h.settings).clone();
    settings.partner_webhooks.allow_loopback = true;
    h.settings = Arc::new(settings);
    for job in &jobs {
        h.run_job(*job).await.unwrap();
    }
    assert_eq!(receiver.received_requests().await.unwrap().len(), 2);
}

/// A resolver that answers from a fixed table, as a hostile DNS server would.
struct TableResolver(HashMap<&'static str, Vec<SocketAddr>>);

impl Resolve for TableResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let found = self.0.get(name.as_str()).cloned().unwrap_or_default();
        Box::pin(async move {
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

fn table(entries: &[(&'static str, &[&str])]) -> Arc<dyn Resolve> {
    Arc::new(TableResolver(
        entries
            .iter()
            .map(|(name, ips)| {
                let addrs = ips
                    .iter()
                    .map(|ip| SocketAddr::new(ip.parse().unwrap(), 0))
                    .collect();
                (*name, addrs)
            })
            .collect(),
    ))
}

async fn post_to(
    http: &reqwest::Client,
    allow_loopback: bool,
    url: &str,
) -> partners::jobs::Answer {
    partners::jobs::post(http, allow_loopback, url, 3_000, &[], b"{}".to_vec()).await
}

#[tokio::test]
async fn a_name_rebound_to_an_internal_address_reaches_nothing() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let port = receiver.address().port();
    // The name was public when registered; now it answers loopback, the metadata service and
    // a private address.
    let dns = table(&[
        ("rebind.example", &["127.0.0.1"]),
        ("metadata.example", &["169.254.169.254", "::ffff:127.0.0.1"]),
        ("mixed.example", &["10.0.0.7", "127.0.0.1"]),
    ]);
    let strict = egress::build_client(dns.clone(), false).unwrap();
    for name in ["rebind.example", "metadata.example", "mixed.example"] {
        let answer = post_to(&strict, false, &format!("http://{name}:{port}/hook")).await;
        assert_eq!(answer.status_code, None, "{name}");
        let error = answer.error.unwrap();
        assert!(error.starts_with("refused: "), "{name}: {error}");
    }
    assert!(receiver.received_requests().await.unwrap().is_empty());

    // The same resolver with loopback allowed: the private address is still dropped and the
    // loopback one is dialled, so the filter, not the fake, decided above.
    let local = egress::build_client(dns, true).unwrap();
    let answer = post_to(&local, true, &format!("http://mixed.example:{port}/hook")).await;
    assert_eq!(answer.status_code, Some(200), "{answer:?}");
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);

    // The resolver on its own.
    let filter = FilteringResolver::new(table(&[("x.example", &["192.168.0.1"])]), true);
    assert!(filter.resolve("x.example".parse().unwrap()).await.is_err());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let inside = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&inside)
        .await;
    let outside = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("Location", format!("{}/admin", inside.uri())),
        )
        .mount(&outside)
        .await;
    let http = egress::build_client(Arc::new(egress::SystemResolver), true).unwrap();
    let answer = post_to(&http, true, &format!("{}/hook", outside.uri())).await;
    assert_eq!(answer.status_code, Some(307));
    assert!(!answer.succeeded());
    assert!(inside.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn only_the_start_of_an_answer_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An endpoint that promises 100 MB and then trickles forever: reading it all would hold
    // the worker until the timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = vec![0_u8; 4096];
        let _ = socket.read(&mut request).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n";
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(&vec![b'a'; 64 * 1024]).await;
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    });
    let http = egress::build_client(Arc::new(egress::SystemResolver), true).unwrap();
    let started = std::time::Instant::now();
    let answer = post_to(&http, true, &format!("http://127.0.0.1:{port}/hook")).await;
    assert_eq!(answer.status_code, Some(200), "{answer:?}");
    assert!(answer.error.is_none(), "{answer:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        answer.snippet.unwrap().chars().count(),
        partners::webhooks::SNIPPET_CHARS
    );
}

#[tokio::test]
async fn endpoints_per_partner_are_capped() {
    let mut h = Harness::new().await;
    let mut settings = (*h.settings).clone();
    settings.partner_webhooks.max_endpoints_per_partner = 3;
    h.settings = Arc::new(settings);
    let sandbox = partners::PartnerScope::test(h.partner.partner_id);
    let mut conn = h.conn().await;
    for (i, scope) in [h.partner, h.partner, sandbox].into_iter().enumerate() {
        partners::register_webhook_endpoint(
            &mut conn,
            &h.clock,
            &h.settings.partner_webhooks,
            scope,
            &format!("https://hooks.example.com/{i}"),
            &EventType::ALL,
            None,
        )
        .await
        .unwrap();
    }
    for scope in [h.partner, sandbox] {
        let err = partners::register_webhook_endpoint(
            &mut conn,
            &h.clock,
            &h.settings.partner_webhooks,
            scope,
            "https://hooks.example.com/more",
            &EventType::ALL,
            None,
        )
        .await
        .unwrap_err();
        let user = err.user_error().unwrap();
        assert_eq!(user.code, "TOO_MANY_ENDPOINTS");
        assert_eq!(user.field.as_deref(), Some("url"));
        assert!(user.message.contains('3'), "{}", user.message);
    }
    // Another partner has its own allowance.
    let other = h.other_partner().await;
    partners::register_webhook_endpoint(
        &mut conn,
        &h.clock,
        &h.settings.partner_webhooks,
        other,
        "https://hooks.example.com/other",
        &EventType::ALL,
        None,
    )
    .await
    .unwrap();
}
