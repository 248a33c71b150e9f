//! The client against a real daemon: a vault in a temp dir, `vault_daemon::serve` on a temp
//! socket, every call driven through the client.
//!
//! `#![cfg(test)]` (always true here) marks the whole binary as test code for clippy's
//! `allow-*-in-tests` (clippy.toml), helpers outside `#[test]` functions included.
#![cfg(test)]

use std::{path::PathBuf, time::Duration};

use vault_client::{ApiKey, Client, ClientError};
use vault_daemon::DaemonConfig;
use vault_service::{KeySource, MerchantId, Scope, Scopes, SecretKey, Vault, VaultOptions};
use vault_wire::{
    ApiKeyCreateRequest, BatchRequest, CardInput, ErrorStatus, MerchantAddRequest, RevealRequest,
    TerminalAddRequest, TokenizeRequest, UpdateRequest,
};

struct Fixture {
    _dir: tempfile::TempDir,
    vault: Vault,
    gateway: vault_gateway::Gateway,
    socket: PathBuf,
    key: ApiKey,
    server: vault_testkit::daemon::Server,
}

impl Fixture {
    async fn start(scopes: &[Scope], config: DaemonConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = KeySource::KeyFile(SecretKey::from_bytes([7; 32]));
        let vault = Vault::create(dir.path().join("data"), &key, VaultOptions::default()).unwrap();
        let merchant = MerchantId::parse("890490").unwrap();
        vault.add_merchant(merchant, "Test").unwrap();
        // `admin` is for operator keys; the others for merchant keys.
        let api = if scopes.contains(&Scope::Admin) {
            vault.create_operator_key(Scopes::of(&[Scope::Admin]), "test")
        } else {
            vault.create_api_key(merchant, Scopes::of(scopes), "test")
        }
        .unwrap();
        let key = ApiKey::new(api.expose()).unwrap();
        let socket = dir.path().join("run").join("cardvault.sock");
        let gateway = vault_gateway::Gateway::new(vault.clone());
        let server = vault_testkit::daemon::Server::start(&gateway, &socket, config).await;
        Self {
            _dir: dir,
            vault,
            gateway,
            socket,
            key,
            server,
        }
    }

    async fn client(&self) -> Client {
        Client::connect(&self.socket, Some(&self.key))
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        self.server.stop().await.unwrap();
    }
}

fn card(pan: &str, exp: &str) -> TokenizeRequest {
    TokenizeRequest::card(CardInput::new(pan, exp))
}

#[tokio::test]
async fn token_lifecycle() {
    let fx = Fixture::start(
        &[
            Scope::Tokenize,
            Scope::Reveal,
            Scope::Fingerprint,
            vault_gateway::SESSIONS,
        ],
        DaemonConfig::default(),
    )
    .await;
    let c = fx.client().await;

    let health = c.health().await.unwrap();
    assert_eq!(health.status, "ok");

    let t = c.tokenize(&card("4111111111111111", "9602")).await.unwrap();
    assert_eq!(t.token.len(), 48);
    assert_eq!(t.card.masked_pan, "411111****1111");
    assert_eq!(t.card.expiration_date, "9602");
    assert_eq!(
        t.card.keep_until,
        time::macros::datetime!(2096-03-01 00:00:00 UTC)
    );

    let got = c.get(&t.token).await.unwrap();
    assert_eq!(got.card.masked_pan, "411111****1111");

    let updated = c
        .update(
            &t.token,
            &UpdateRequest {
                card: CardInput::new("5555555555554444", "3001"),
                ..UpdateRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.token, t.token);
    assert_eq!(updated.card.masked_pan, "555555****4444");

    let revealed = c.reveal(&t.token, &RevealRequest::default()).await.unwrap();
    assert_eq!(revealed.pan, "5555555555554444");
    assert!(!format!("{revealed:?}").contains("5555555555554444"));

    c.delete(&t.token).await.unwrap();
    let err = c.get(&t.token).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.error_status(), Some(ErrorStatus::NotFound));

    let batch = c
        .tokenize_batch(&BatchRequest {
            items: vec![
                card("4242424242424242", "3012"),
                card("4242424242424241", "3012"),
            ],
        })
        .await
        .unwrap();
    assert_eq!(batch.results.len(), 2);
    assert_eq!(batch.results[0].status, 201);
    assert_eq!(batch.results[1].status, 400);

    let metrics = c.metrics().await.unwrap();
    assert!(!metrics.is_empty());
    fx.stop().await;
}

#[tokio::test]
async fn errors_name_the_field_and_never_the_pan() {
    let fx = Fixture::start(&[Scope::Tokenize], DaemonConfig::default()).await;
    let c = fx.client().await;

    let err = c
        .tokenize(&card("4242424242424243", "2802"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    let text = err.to_string();
    assert!(text.contains("card.pan"), "{text}");
    assert!(!text.contains("4242424242424243"), "{text}");

    // No reveal scope.
    let t = c.tokenize(&card("4242424242424242", "2802")).await.unwrap();
    let err = c
        .reveal(&t.token, &RevealRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));

    // Path segments are escaped: a crafted token cannot reach another route.
    let err = c.get("../../admin/stats").await.unwrap_err();
    assert_eq!(err.status(), Some(404));

    // A bad key.
    let bad = ApiKey::new("cvk_0000000000000000_00").unwrap();
    let anon = Client::connect(&fx.socket, Some(&bad)).await.unwrap();
    let err = anon
        .tokenize(&card("4242424242424242", "2802"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!format!("{anon:?}").contains("cvk_"));

    // No daemon at all.
    let err = Client::connect(fx.socket.with_extension("nope"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect(_)));
    fx.stop().await;
}

#[tokio::test]
async fn admin_calls() {
    let fx = Fixture::start(&[Scope::Admin], DaemonConfig::default()).await;
    let c = fx.client().await;

    let m = c
        .merchant_add(&MerchantAddRequest {
            merchant_id: "123456".into(),
            name: "Second".into(),
        })
        .await
        .unwrap();
    assert_eq!(m.merchant_id, "123456");
    assert_eq!(c.merchants().await.unwrap().merchants.len(), 2);

    let created = c
        .api_key_create(&ApiKeyCreateRequest {
            merchant_id: Some("123456".into()),
            operator: false,
            scopes: vec!["tokenize".into()],
            label: "shop".into(),
        })
        .await
        .unwrap();
    assert!(created.key.starts_with("cvk_"));
    assert!(!format!("{created:?}").contains(&created.key));
    let keys = c.api_keys(Some("123456")).await.unwrap().api_keys;
    assert_eq!(keys.len(), 1);
    c.api_key_revoke(&created.api_key.id).await.unwrap();
    assert!(c.api_keys(Some("123456")).await.unwrap().api_keys[0].revoked);

    let t = c
        .terminal_add(&TerminalAddRequest {
            merchant_id: "123456".into(),
            terminal_id: "term-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(t.terminal_id, "term-1");
    assert_eq!(c.terminals(None).await.unwrap().terminals.len(), 1);

    assert_eq!(c.key_status().await.unwrap().current_dek, 1);
    assert_eq!(c.rotate_key().await.unwrap().current_dek, 2);
    let rewrap = c.rewrap().await.unwrap();
    assert_eq!(rewrap.failed, 0);
    assert_eq!(c.retire_keys().await.unwrap().retired, vec![1]);
    assert_eq!(c.sweep().await.unwrap().removed, 0);
    assert_eq!(c.stats().await.unwrap().current_dek, 2);
    fx.stop().await;
}

#[tokio::test]
async fn reconnects_after_the_daemon_closed_an_idle_connection() {
    let config = DaemonConfig {
        header_read_timeout: Duration::from_millis(200),
        ..DaemonConfig::default()
    };
    let fx = Fixture::start(&[Scope::Tokenize], config).await;
    let c = fx.client().await;
    c.health().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.health().await.unwrap();
    // Clones share the connection and take turns.
    let c2 = c.clone();
    let (r1, r2) = (
        card("4242424242424242", "3012"),
        card("4000056655665556", "3012"),
    );
    let (a, b) = tokio::join!(c.tokenize(&r1), c2.tokenize(&r2));
    assert_ne!(a.unwrap().token, b.unwrap().token);
    fx.stop().await;
}

#[tokio::test]
async fn hosted_sessions_and_the_acquirer_leg() {
    use vault_gateway::{Cvv, PaymentRequest, SessionKind, SessionOptions, TerminalId};
    use vault_service::{CustomerId, Expiry, NewCard, Pan, TokenizeOptions};
    let f = Fixture::start(
        &[Scope::Tokenize, Scope::Reveal, vault_gateway::SESSIONS],
        DaemonConfig::default(),
    )
    .await;
    let m = MerchantId::parse("890490").unwrap();
    f.gateway
        .add_terminal(m, TerminalId::parse("1234001").unwrap())
        .unwrap();
    let c = f.client().await;
    let req = vault_wire::HostedFieldsSessionRequest {
        lib_version: "1.6.0.172441".into(),
        scenario: "payment".into(),
        secure_token_id: None,
        allow_origin_url: None,
    };
    let key = "3f1e2d4c-5b6a-4978-8a1b-2c3d4e5f6a7b";
    let a = c.hosted_fields_session("1234001", key, &req).await.unwrap();
    let b = c.hosted_fields_session("1234001", key, &req).await.unwrap();
    assert_eq!(a, b, "a retry with the key returns the same session");
    // The same key for another terminal is another request: 409.
    let err = c
        .hosted_fields_session("9999999", key, &req)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    let err = c
        .hosted_fields_session("9999999", "4f1e2d4c-5b6a-4978-8a1b-2c3d4e5f6a7b", &req)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));

    // A payment started through a session; the client takes its card and reports the outcome.
    let customer = CustomerId::parse("c-1").unwrap();
    let card = f
        .vault
        .tokenize(
            m,
            NewCard::new(
                Pan::parse("4242424242424242").unwrap(),
                Expiry::parse_yymm("2802").unwrap(),
            ),
            TokenizeOptions {
                customer: Some(customer.clone()),
                ..TokenizeOptions::default()
            },
        )
        .unwrap();
    let s = f
        .gateway
        .create_session(m, SessionKind::Purchase, SessionOptions::default())
        .unwrap();
    let p = f
        .gateway
        .start_payment(
            &s.token,
            None,
            PaymentRequest {
                merchant: Some(m),
                card_token: Some(card.token),
                customer: Some(customer),
                cvv: Some(Cvv::parse("321").unwrap()),
                customer_ip: Some("203.0.113.1".parse().unwrap()),
                payment_solution_id: Some(500),
                ..PaymentRequest::default()
            },
        )
        .unwrap();
    let tx = p.id.to_string();
    let handed = c.payment_card(&tx).await.unwrap();
    assert_eq!(handed.card.number, "4242424242424242");
    assert_eq!(handed.card.cvv.as_deref(), Some("321"));
    assert!(c.payment_card(&tx).await.unwrap().card.cvv.is_none());
    let done = c.report_payment(&tx, true).await.unwrap();
    assert_eq!(done.status, "SUCCEEDED");
    assert_eq!(
        c.report_payment(&tx, true).await.unwrap_err().status(),
        Some(400)
    );
    assert_eq!(
        c.payment_card("00000000-0000-4000-8000-000000000000")
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    f.stop().await;
}
