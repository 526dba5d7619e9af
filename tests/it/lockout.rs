//! The failed-login limit against the two lock-out attacks: a guesser elsewhere must not
//! lock a user out, and one user's typos must not lock out everyone behind her address;
//! guessing stays throttled per address and per user. Clients really connect from
//! different loopback addresses (127.0.0.0/8 is all local on Linux).

use std::net::IpAddr;

use reqwest::StatusCode;

use crate::support::TestServer;

/// Three wrong passwords fill a budget; a failure's hour keeps it full for the test.
async fn server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    let line = |u: &str, p: &str| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap());
    std::fs::write(
        &users,
        format!(
            "{}{}{}",
            line("alice", "a-pass"),
            line("bob", "b-pass"),
            line("carol", "c-pass")
        ),
    )
    .unwrap();
    let toml = format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
[failed_logins]
rate = "1/h"
burst = 3
[[server]]
default = true
[server.auth]
providers = [{{ htpasswd = {users:?} }}]
access = [{{ repos = "*", who = ["authenticated"], actions = ["pull"] }}]
"#,
        users = users.display().to_string()
    );
    let (s, _) = TestServer::start_config(&toml).await;
    (s, dir)
}

/// `GET /v2/` as `user` from the loopback address 127.0.0.`from`.
async fn login(s: &TestServer, from: u8, user: &str, pass: &str) -> StatusCode {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, from]))
        .build()
        .unwrap();
    client
        .get(s.url("/v2/"))
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap()
        .status()
}

/// Sends wrong passwords until refused; returns how many were answered 401 first.
async fn guess_until_refused(s: &TestServer, from: u8, user: &str) -> usize {
    for n in 0..10 {
        match login(s, from, user, &format!("guess-{n}")).await {
            StatusCode::UNAUTHORIZED => continue,
            StatusCode::TOO_MANY_REQUESTS => return n,
            other => panic!("guess {n}: {other}"),
        }
    }
    panic!("ten wrong passwords were never refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_elsewhere_does_not_lock_alice_out() {
    let (s, _d) = server().await;
    assert_eq!(login(&s, 1, "alice", "a-pass").await, StatusCode::OK);
    assert_eq!(guess_until_refused(&s, 2, "alice").await, 3);
    assert_eq!(
        login(&s, 2, "alice", "a-pass").await,
        StatusCode::TOO_MANY_REQUESTS,
        "the guesser learns nothing, not even from the right password"
    );
    assert_eq!(
        login(&s, 1, "alice", "a-pass").await,
        StatusCode::OK,
        "alice, where she logged in before, is not locked out"
    );
    // Guessing alice's password from many addresses is still throttled per user name:
    // her budget is spent, so a fresh address is refused before any password check...
    assert_eq!(
        login(&s, 3, "alice", "guess").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...while other users are not affected.
    assert_eq!(login(&s, 3, "bob", "b-pass").await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_typos_do_not_lock_out_others_on_her_address() {
    let (s, _d) = server().await;
    assert_eq!(guess_until_refused(&s, 1, "alice").await, 3);
    assert_eq!(
        login(&s, 1, "bob", "b-pass").await,
        StatusCode::OK,
        "bob, behind the same address, never logged in before"
    );
    assert_eq!(login(&s, 1, "carol", "c-pass").await, StatusCode::OK);
    assert_eq!(
        login(&s, 1, "alice", "a-pass").await,
        StatusCode::TOO_MANY_REQUESTS,
        "alice's own failures still count against her"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_trying_many_user_names_is_blocked() {
    let (s, _d) = server().await;
    for user in ["admin", "root", "test"] {
        assert_eq!(login(&s, 4, user, "123456").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login(&s, 4, "guest", "123456").await,
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth user name from one address"
    );
    assert_eq!(
        login(&s, 4, "carol", "c-pass").await,
        StatusCode::TOO_MANY_REQUESTS,
        "a sprayer's address is blocked for every user"
    );
    assert_eq!(login(&s, 5, "carol", "c-pass").await, StatusCode::OK);
}
