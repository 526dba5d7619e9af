//! The UI on a server with logins: anonymous viewers see what anonymous may pull, logged-in
//! viewers what they may pull; deletes need the delete permission and the session's CSRF
//! token; failed UI logins count against the same limits as the API's.

use reqwest::StatusCode;

use crate::support::TestServer;
use crate::ui::Browser;

/// alice may pull and delete everything; bob may pull everything; anonymous may pull
/// `public/*`. Three wrong passwords fill a budget for an hour.
async fn server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    let line = |u: &str, p: &str| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap());
    std::fs::write(
        &users,
        format!("{}{}", line("alice", "a-pass"), line("bob", "b-pass")),
    )
    .unwrap();
    let toml = format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
[failed_logins]
rate = "1/h"
burst = 3
[[immutable]]
repos = "locked/*"
tags = ["*"]
[[server]]
default = true
[server.auth]
providers = [{{ htpasswd = {users:?} }}]
access = [
  {{ repos = "*", who = ["alice"], actions = ["pull", "push", "delete"] }},
  {{ repos = "*", who = ["bob"], actions = ["pull"] }},
  {{ repos = "public/*", who = ["anonymous", "bob"], actions = ["pull"] }},
  {{ repos = "public/*", who = ["alice"], actions = ["pull", "push", "delete"] }},
]
"#,
        users = users.display().to_string()
    );
    let (s, _) = TestServer::start_config(&toml).await;
    (s, dir)
}

/// Pushes `repo:tag` as alice.
async fn push(s: &TestServer, repo: &str, tag: &str) {
    let config = format!("{{\"repo\":\"{repo}\"}}");
    let digest = crate::support::sha256(config.as_bytes());
    let r = s
        .http
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
        .basic_auth("alice", Some("a-pass"))
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let manifest = crate::support::image_manifest(&digest, config.len(), &[]);
    let r = s
        .http
        .put(s.url(&format!("/v2/{repo}/manifests/{tag}")))
        .basic_auth("alice", Some("a-pass"))
        .header("Content-Type", crate::support::OCI_MANIFEST)
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn tag_exists(s: &TestServer, repo: &str, tag: &str) -> bool {
    let r = s
        .http
        .head(s.url(&format!("/v2/{repo}/manifests/{tag}")))
        .basic_auth("alice", Some("a-pass"))
        .send()
        .await
        .unwrap();
    r.status() == StatusCode::OK
}

#[tokio::test]
async fn viewers_see_what_they_may_pull() {
    let (s, _dir) = server().await;
    push(&s, "public/tool", "1").await;
    push(&s, "team/secret", "1").await;
    let mut anon = Browser::new(&s);
    let list = anon.get("/ui/").await;
    assert!(list.body.contains("public/tool"));
    assert!(!list.body.contains("team/secret"), "{}", list.body);
    assert!(list.body.contains("Log in"));
    let hidden = anon.get("/ui/repo/team/secret").await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(
        anon.get("/ui/image/team/secret:1").await.status,
        StatusCode::NOT_FOUND
    );

    let mut bob = Browser::new(&s);
    let wrong = bob.login("bob", "nope").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Invalid user name or password"));
    let ok = bob.login("bob", "b-pass").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let list = bob.get("/ui/").await;
    assert!(list.body.contains("team/secret") && list.body.contains("Signed in as"));
    let repo = bob.get("/ui/repo/team/secret").await;
    assert!(!repo.body.contains("Delete tag"), "bob may not delete");
}

#[tokio::test]
async fn deletes_need_the_permission_and_the_sessions_csrf_token() {
    let (s, _dir) = server().await;
    push(&s, "team/app", "1").await;
    push(&s, "team/app", "2").await;

    let mut bob = Browser::new(&s);
    bob.login("bob", "b-pass").await;
    let confirm = bob.get("/ui/delete?repo=team/app&ref=1").await;
    assert_eq!(confirm.status, StatusCode::FORBIDDEN);
    let csrf = bob.get("/ui/").await.csrf();
    let refused = bob
        .post(
            "/ui/delete",
            &[("csrf", &csrf), ("repo", "team/app"), ("ref", "1")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(tag_exists(&s, "team/app", "1").await);

    let mut alice = Browser::new(&s);
    alice.login("alice", "a-pass").await;
    let repo = alice.get("/ui/repo/team/app").await;
    assert!(repo.body.contains("Delete tag"));
    let confirm = alice.get("/ui/delete?repo=team/app&ref=1").await;
    assert_eq!(confirm.status, StatusCode::OK);
    // Without the token, or with another session's, nothing happens.
    for token in ["", csrf.as_str()] {
        let forged = alice
            .post(
                "/ui/delete",
                &[("csrf", token), ("repo", "team/app"), ("ref", "1")],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
    }
    assert!(tag_exists(&s, "team/app", "1").await);
    let done = alice
        .post(
            "/ui/delete",
            &[
                ("csrf", &confirm.csrf()),
                ("repo", "team/app"),
                ("ref", "1"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/ui/repo/team/app"));
    assert!(
        !tag_exists(&s, "team/app", "1").await,
        "the API sees the delete"
    );
    assert!(tag_exists(&s, "team/app", "2").await);

    // A manifest by digest goes with every tag pointing at it, after a confirmation that
    // names them.
    let digest = s
        .http
        .head(s.url("/v2/team/app/manifests/2"))
        .basic_auth("alice", Some("a-pass"))
        .send()
        .await
        .unwrap()
        .headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let image = alice.get(&format!("/ui/image/team/app@{digest}")).await;
    assert!(image.body.contains("Delete manifest"));
    let confirm = alice
        .get(&format!("/ui/delete?repo=team/app&ref={digest}"))
        .await;
    assert!(confirm
        .body
        .contains("These tags point at it and go with it: 2"));
    let done = alice
        .post(
            "/ui/delete",
            &[
                ("csrf", &confirm.csrf()),
                ("repo", "team/app"),
                ("ref", &digest),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(!tag_exists(&s, "team/app", "2").await);
    assert!(
        !tag_exists(&s, "team/app", &digest).await,
        "the manifest is gone"
    );

    // Logging out ends the session: the cookie no longer grants alice's rights.
    let page = alice.get("/ui/").await;
    let out = alice.post("/ui/logout", &[("csrf", &page.csrf())]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = alice.get("/ui/").await;
    assert!(!after.body.contains("team/app") && after.body.contains("Log in"));
}

#[tokio::test]
async fn a_login_needs_the_forms_csrf_token() {
    let (s, _dir) = server().await;
    let mut b = Browser::new(&s);
    b.get("/ui/login").await;
    let forged = b
        .post("/ui/login", &[("user", "alice"), ("password", "a-pass")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(!b.get("/ui/").await.body.contains("Signed in"));
}

#[tokio::test]
async fn failed_ui_logins_count_against_the_apis_limit() {
    let (s, _dir) = server().await;
    let api = |password: &'static str| {
        s.http
            .get(s.url("/v2/"))
            .basic_auth("alice", Some(password))
            .send()
    };
    // Two wrong passwords through the API and one through the form fill the budget of 3...
    for _ in 0..2 {
        assert_eq!(
            api("wrong").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let mut b = Browser::new(&s);
    assert_eq!(
        b.login("alice", "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );
    // ...so the next one is refused, and then even the right password, in the form...
    let blocked = b.login("alice", "wrong").await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.body.contains("Too many failed logins"));
    let blocked = b.login("alice", "a-pass").await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    // ...and through the API.
    assert_eq!(
        api("a-pass").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A whole repository goes after a confirmation that says how many tags and how much it
/// holds; only for viewers with the delete permission, only with the session's token, and
/// not while an immutable tag is in it.
#[tokio::test]
async fn a_whole_repository_goes_after_a_confirmation_saying_what_it_frees() {
    let (s, _dir) = server().await;
    push(&s, "team/app", "1").await;
    push(&s, "team/app", "2").await;
    push(&s, "team/other", "1").await;
    push(&s, "locked/app", "1").await;

    let mut bob = Browser::new(&s);
    bob.login("bob", "b-pass").await;
    assert!(!bob
        .get("/ui/repo/team/app")
        .await
        .body
        .contains("Delete repository"));
    let confirm = bob.get("/ui/delete-repository?repo=team/app").await;
    assert_eq!(confirm.status, StatusCode::FORBIDDEN);
    let csrf = bob.get("/ui/").await.csrf();
    let refused = bob
        .post(
            "/ui/delete-repository",
            &[("csrf", &csrf), ("repo", "team/app")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(tag_exists(&s, "team/app", "1").await);

    let mut alice = Browser::new(&s);
    alice.login("alice", "a-pass").await;
    assert!(alice
        .get("/ui/repo/team/app")
        .await
        .body
        .contains("Delete repository"));
    let confirm = alice.get("/ui/delete-repository?repo=team/app").await;
    assert_eq!(confirm.status, StatusCode::OK);
    // Two tags on one config each: the manifests and configs they reach.
    for part in ["team/app", "2 tags", "B of blobs", "garbage collection"] {
        assert!(confirm.body.contains(part), "{part} in {}", confirm.body);
    }
    let forged = alice
        .post(
            "/ui/delete-repository",
            &[("csrf", &csrf), ("repo", "team/app")],
        )
        .await;
    assert_eq!(
        forged.status,
        StatusCode::FORBIDDEN,
        "bob's token is not alice's"
    );
    assert!(tag_exists(&s, "team/app", "1").await);
    let done = alice
        .post(
            "/ui/delete-repository",
            &[("csrf", &confirm.csrf()), ("repo", "team/app")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/ui/"));
    assert!(
        !tag_exists(&s, "team/app", "2").await,
        "the API sees the delete"
    );
    let list = alice.get("/ui/").await;
    assert!(
        !list.body.contains("team/app<") && list.body.contains("team/other"),
        "{}",
        list.body
    );
    let gone = alice.get("/ui/repo/team/app").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // An immutable tag keeps its repository; the page says why.
    let confirm = alice.get("/ui/delete-repository?repo=locked/app").await;
    let kept = alice
        .post(
            "/ui/delete-repository",
            &[("csrf", &confirm.csrf()), ("repo", "locked/app")],
        )
        .await;
    assert_eq!(kept.status, StatusCode::CONFLICT, "{}", kept.body);
    assert!(kept.body.contains("immutable"), "{}", kept.body);
    assert!(tag_exists(&s, "locked/app", "1").await);
}

/// The storage page: each viewer sees the usage of what they may pull (tags, manifests,
/// size, unique bytes, totals), with sharing judged over every repository, and where the
/// collector's status will show.
#[tokio::test]
async fn the_storage_page_shows_the_usage_of_what_the_viewer_may_pull() {
    let (s, _dir) = server().await;
    push(&s, "public/tool", "1").await;
    push(&s, "public/tool", "2").await;
    push(&s, "team/secret", "1").await;
    // A blob team/secret links too: shared, so not unique to public/tool.
    let shared = b"shared layer bytes".to_vec();
    for repo in ["public/tool", "team/secret"] {
        let r = s
            .http
            .post(s.url(&format!(
                "/v2/{repo}/blobs/uploads/?digest={}",
                crate::support::sha256(&shared)
            )))
            .basic_auth("alice", Some("a-pass"))
            .body(shared.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // public/tool's own blobs: its config and its manifest (as `push` makes them).
    let config = "{\"repo\":\"public/tool\"}";
    let digest = crate::support::sha256(config.as_bytes());
    let manifest = crate::support::image_manifest(&digest, config.len(), &[]);
    let own = config.len() + serde_json::to_vec(&manifest).unwrap().len();

    let mut anon = Browser::new(&s);
    let page = anon.get("/ui/storage").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("public/tool"), "{}", page.body);
    assert!(!page.body.contains("team/secret"), "{}", page.body);
    // public/tool: 2 tags, 1 manifest (both tags name the same one), and its row's sizes.
    let row = row_of(&page.body, "public/tool");
    assert_eq!(cells(&row)[..2], ["2", "1"], "{row}");
    let sizes = [format!("{} B", own + shared.len()), format!("{own} B")];
    assert_eq!(
        cells(&row)[2..],
        sizes,
        "the shared layer is not unique: {row}"
    );
    assert!(page.body.contains("1 repository<"), "{}", page.body);
    // The collector's status is for those who may delete everywhere, as its API is.
    assert!(
        page.body.contains("shown to administrators"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Last run"), "{}", page.body);

    let mut bob = Browser::new(&s);
    bob.login("bob", "b-pass").await;
    let page = bob.get("/ui/storage").await;
    assert!(row_of(&page.body, "team/secret").contains("<td"));
    assert!(page.body.contains("2 repositories<"), "{}", page.body);
    assert!(
        !page.body.contains("Last run"),
        "bob may not delete: {}",
        page.body
    );

    let mut alice = Browser::new(&s);
    alice.login("alice", "a-pass").await;
    let page = alice.get("/ui/storage").await;
    // The default schedule (daily), its next run, and no run yet.
    assert!(page.body.contains("every day"), "{}", page.body);
    assert!(page.body.contains("Next run"), "{}", page.body);
    assert!(
        page.body.contains("Last run</dt><dd>none yet"),
        "{}",
        page.body
    );
}

/// The table row of `repo` on the storage page.
fn row_of(body: &str, repo: &str) -> String {
    let at = body
        .find(&format!(">{repo}</a>"))
        .unwrap_or_else(|| panic!("no row for {repo} in {body}"));
    let end = body[at..].find("</tr>").unwrap() + at;
    body[at..end].to_owned()
}

/// The numeric cells of a row, in order.
fn cells(row: &str) -> Vec<String> {
    row.split("<td class=\"num\">")
        .skip(1)
        .map(|c| c.split("</td>").next().unwrap().to_owned())
        .collect()
}
