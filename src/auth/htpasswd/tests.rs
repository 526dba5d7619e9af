//! Loading, reloading, watching and verifying. Parse rules are tested in `parse.rs`.

use std::time::Instant;

use super::edit::{hash_password, write_atomic};
use super::*;

struct File {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl File {
    fn with(text: &str) -> File {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.htpasswd");
        std::fs::write(&path, text).unwrap();
        File { _dir: dir, path }
    }

    fn set(&self, text: &str) {
        write_atomic(&self.path, text.as_bytes()).unwrap();
    }
}

fn creds(user: &str, password: &str) -> Credentials {
    Credentials {
        user: user.into(),
        password: password.into(),
    }
}

#[test]
fn open_names_the_file_and_the_line() {
    let file = File::with("# users\nalice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
    let e = Htpasswd::open(&file.path).unwrap_err().to_string();
    let at = format!("{}:2: ", file.path.display());
    assert!(e.starts_with(&at) && e.contains("SHA-1"), "{e}");
    let missing = file.path.with_file_name("missing");
    let e = Htpasswd::open(&missing).unwrap_err().to_string();
    assert!(e.contains("cannot read") && e.contains("missing"), "{e}");
}

#[test]
fn reload_swaps_the_users() {
    let file = File::with(&format!("alice:{}\n", hash_password("a", 4).unwrap()));
    let users = Htpasswd::open(&file.path).unwrap();
    assert_eq!(users.user_count(), 1);
    assert!(!users.reload().unwrap(), "unchanged");
    let bob = hash_password("b", 4).unwrap();
    file.set(&format!("bob:{bob}\n"));
    assert!(users.reload().unwrap());
    assert_eq!(users.hash_of("alice"), None);
    assert_eq!(users.hash_of("bob"), Some(bob));
}

#[test]
fn a_broken_file_keeps_the_users_in_force() {
    let alice = hash_password("a", 4).unwrap();
    let file = File::with(&format!("alice:{alice}\n"));
    let users = Htpasswd::open(&file.path).unwrap();
    file.set(&format!("alice:{alice}\nbob:$apr1$abc$def\n"));
    let e = users.reload().unwrap_err().to_string();
    assert!(e.contains(":2: ") && e.contains("Apache MD5"), "{e}");
    assert_eq!(users.hash_of("alice"), Some(alice.clone()));
    std::fs::remove_file(&file.path).unwrap();
    assert!(matches!(users.reload(), Err(HtpasswdError::Read { .. })));
    assert_eq!(users.hash_of("alice"), Some(alice));
}

#[tokio::test]
async fn verify_checks_the_password_through_the_provider_trait() {
    let file = File::with(&format!("alice:{}\n", hash_password("s3cret", 4).unwrap()));
    let users = Htpasswd::open(&file.path).unwrap();
    let provider: &dyn Provider = &*users;
    assert_eq!(provider.name(), format!("htpasswd {}", file.path.display()));
    assert!(matches!(
        provider.lookup("bob").await,
        Ok(Lookup::UnknownUser)
    ));
    let Ok(Lookup::Known { stored }) = provider.lookup("alice").await else {
        panic!("alice is known");
    };
    let ok = provider
        .verify(&creds("alice", "s3cret"), &stored)
        .await
        .unwrap();
    assert_eq!(
        ok,
        Some(Identity {
            user: "alice".into(),
            groups: vec![]
        })
    );
    let wrong = provider
        .verify(&creds("alice", "s3creT"), &stored)
        .await
        .unwrap();
    assert_eq!(wrong, None);
    let garbage = provider
        .verify(&creds("alice", "s3cret"), "plain")
        .await
        .unwrap();
    assert_eq!(garbage, None);
}

/// How long `run` took.
async fn timed<F: std::future::Future<Output = ()>>(run: F) -> Duration {
    let start = Instant::now();
    run.await;
    start.elapsed()
}

#[tokio::test]
async fn unknown_users_cost_what_known_users_cost() {
    let cost = 8;
    let hash = hash_password("right", cost).unwrap();
    let file = File::with(&format!("alice:{hash}\n"));
    let users = Htpasswd::open(&file.path).unwrap();
    // The smallest of several runs of each, taken in turns, to keep a busy machine's noise
    // out of the comparison: other tests' bcrypts, and waiting for one of the process's
    // verification permits while they hold them, come and go for both alike.
    let (mut known, mut unknown) = (Duration::MAX, Duration::MAX);
    for _ in 0..11 {
        known = known.min(
            timed(async {
                let r = users.verify(&creds("alice", "wrong"), &hash).await;
                assert!(matches!(r, Ok(None)));
            })
            .await,
        );
        unknown = unknown.min(timed(users.verify_unknown("wrong")).await);
    }
    // 256 rounds of bcrypt's key schedule: milliseconds anywhere, not microseconds.
    assert!(unknown > Duration::from_millis(1), "{unknown:?}");
    // Wide enough for a loaded machine; that the dummy has the file's usual cost exactly is
    // checked without a clock in parse.rs (the_dummy_uses_the_usual_cost_of_the_file).
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(
        (0.2..5.0).contains(&ratio),
        "known {known:?}, unknown {unknown:?}"
    );
}

#[tokio::test]
async fn an_empty_file_still_spends_a_cost_10_verification() {
    let file = File::with("# nobody yet\n");
    let users = Htpasswd::open(&file.path).unwrap();
    assert!(users.snapshot().dummy.starts_with("$2y$10$"));
    let start = Instant::now();
    users.verify_unknown("anything").await;
    // 1024 rounds of bcrypt's key schedule take tens of milliseconds even optimised; a
    // shortcut (no verification, or a cheaper one) would take microseconds.
    let spent = start.elapsed();
    assert!(spent > Duration::from_millis(10), "{spent:?}");
}

#[tokio::test(start_paused = true)]
async fn the_watcher_reloads_a_changed_file_and_ends_with_its_owner() {
    let file = File::with(&format!("alice:{}\n", hash_password("a", 4).unwrap()));
    let users = Htpasswd::open(&file.path).unwrap();
    let every = Duration::from_secs(2);
    let watcher = Arc::clone(&users).watch(every);
    file.set(&format!("bob:{}\n", hash_password("b", 4).unwrap()));
    // Paused time jumps ahead whenever the runtime is idle (but not while a blocking task
    // runs, on this current-thread runtime), so these are ticks, not waits.
    for _ in 0..100 {
        if users.hash_of("bob").is_some() {
            break;
        }
        tokio::time::sleep(every).await;
    }
    assert!(users.hash_of("bob").is_some(), "the watcher picked up bob");
    // A broken file is logged and skipped; bob stays.
    file.set("bob:plain\n");
    for _ in 0..3 {
        tokio::time::sleep(every).await;
    }
    assert!(users.hash_of("bob").is_some());
    drop(users);
    tokio::time::timeout(every * 10, watcher)
        .await
        .expect("the watcher ends once the users are dropped")
        .unwrap();
}

/// `wharf htpasswd FILE bob && podman login -u bob` must not race a poll: the change is
/// seen from the file system's event, well before any poll (here: an hour away). Editors'
/// rename-replace (what `write_atomic` does) and in-place writes both count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_takes_effect_at_once_without_waiting_for_a_poll() {
    let file = File::with(&format!("alice:{}\n", hash_password("a", 4).unwrap()));
    let users = Htpasswd::open(&file.path).unwrap();
    let _watcher = Arc::clone(&users).watch(Duration::from_secs(3600));
    let seen = |user: &'static str| {
        let users = Arc::clone(&users);
        async move {
            // A bounded wait for the event, far below any poll interval.
            for _ in 0..200 {
                if users.hash_of(user).is_some() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            false
        }
    };
    // Give the watcher its first turn, as a server would have long before a login.
    tokio::task::yield_now().await;
    file.set(&format!("bob:{}\n", hash_password("b", 4).unwrap()));
    assert!(
        seen("bob").await,
        "a rename over the file is seen within a second"
    );
    std::fs::write(
        &file.path,
        format!("carol:{}\n", hash_password("c", 4).unwrap()),
    )
    .unwrap();
    assert!(
        seen("carol").await,
        "an in-place write is seen within a second"
    );
}
