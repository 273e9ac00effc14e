//! The console's server side through the router in process: the page and
//! its security headers, sign-in with users and tokens, the session
//! cookie and its CSRF token, saved views, and the routes the console's
//! pages read (list export, analyses as CSV, the Pareto curve, filter
//! values, segment history, plugin analyses). The pages themselves are
//! tested in Chromium by tests/e2e (`cargo xtask e2e`).

use app::tokens::Role;
use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use crate::support::api::{Api, HERE};

/// The session cookie (`crm_session=...`) a sign-in answer sets.
fn session_cookie(headers: &axum::http::HeaderMap) -> String {
    let set = headers
        .get(header::SET_COOKIE)
        .expect("a session cookie")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_owned()
}

struct Session {
    cookie: String,
    csrf: String,
}

fn sign_in(api: &Api, body: Value, peer: [u8; 4]) -> Result<Session, (StatusCode, Value)> {
    let ((status, _, answer), headers) = api.exchange(
        "POST",
        "/api/v1/session",
        None,
        peer,
        &[("content-type", "application/json")],
        body.to_string(),
    );
    if status != StatusCode::CREATED {
        return Err((status, answer));
    }
    let set = headers[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    Ok(Session {
        cookie: session_cookie(&headers),
        csrf: answer["csrf"].as_str().unwrap().to_owned(),
    })
}

impl Session {
    /// A request made as the console makes it: cookie, and the CSRF token
    /// on changes (`csrf: false` leaves it out).
    fn send(
        &self,
        api: &Api,
        method: &str,
        uri: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> (StatusCode, String, Value) {
        let mut headers = vec![("cookie", self.cookie.as_str())];
        if csrf {
            headers.push(("x-csrf-token", self.csrf.as_str()));
        }
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        api.send_with(
            method,
            uri,
            None,
            HERE,
            &headers,
            body.map(|b| b.to_string()).unwrap_or_default(),
        )
        .0
    }
}

#[test]
fn the_page_is_served_with_a_strict_content_security_policy() {
    let api = Api::new();
    for path in [
        "/",
        "/customers",
        "/customers/C0000001",
        "/analyses",
        "/segments",
    ] {
        let ((status, kind, body), headers) =
            api.exchange("GET", path, None, HERE, &[], String::new());
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(kind.starts_with("text/html"), "{kind}");
        let html = body.as_str().unwrap();
        assert!(html.contains(r#"<script type="module" src="/assets/app.js">"#));
        // No inline script or style the policy would have to allow.
        assert!(!html.contains("<script>") && !html.contains("style="));
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let ((status, kind, body), _) =
        api.exchange("GET", "/assets/app.js", None, HERE, &[], String::new());
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/javascript"), "{kind}");
    let script = body.as_str().unwrap();
    // Data goes into the page as text only.
    assert!(!script.contains("innerHTML") && !script.contains("insertAdjacentHTML"));
    assert!(!script.contains("eval(") && !script.contains("new Function"));
    let (status, _, _) = api.send("GET", "/assets/other.js", None, HERE);
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn users_sign_in_with_a_password_and_changes_need_the_csrf_token() {
    let api = Api::new();
    api.state
        .users
        .save("maria", Role::Agent, "a long password", false, "test")
        .unwrap();
    // Passwords are kept as Argon2id hashes only.
    let stored = app::users::Users::new(std::sync::Arc::clone(&api.state.store));
    assert!(stored.verify("maria", "a long password").unwrap().is_some());
    let raw = api
        .state
        .store
        .definition("users", "maria")
        .unwrap()
        .unwrap();
    assert!(raw.body.contains("$argon2id$") && !raw.body.contains("a long password"));
    // Too short a password, a taken name.
    assert!(
        api.state
            .users
            .save("short", Role::Agent, "short", false, "test")
            .is_err()
    );
    assert!(
        api.state
            .users
            .save("maria", Role::Admin, "another password", false, "test")
            .is_err()
    );

    let (status, body) = sign_in(
        &api,
        json!({"user": "maria", "password": "wrong password"}),
        [10, 0, 0, 1],
    )
    .err()
    .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].as_str().unwrap().contains("wrong"), "{body}");
    let (status, body) = sign_in(
        &api,
        json!({"user": "nobody", "password": "a long password"}),
        [10, 0, 0, 1],
    )
    .err()
    .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = sign_in(&api, json!({"user": "maria"}), [10, 0, 0, 1])
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "password");

    let maria = sign_in(
        &api,
        json!({"user": "maria", "password": "a long password"}),
        HERE,
    )
    .unwrap();
    let (status, _, me) = maria.send(&api, "GET", "/api/v1/session", None, false);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "maria");
    assert_eq!(me["role"], "agent");
    assert_eq!(me["csrf"], maria.csrf.as_str());
    // Reads need only the cookie; the role is the user's.
    let (status, _, customer) = maria.send(&api, "GET", "/api/v1/customers/C0000001", None, false);
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = maria.send(&api, "GET", "/api/v1/audit", None, false);
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A change without the CSRF token, or with another, is refused and
    // changes nothing.
    let interaction = json!({
        "interaction_id": "CONSOLE-1", "customer_id": "C0000001", "ts": "2025-06-01T10:00:00Z",
        "kind": "opinion", "department": "service", "region": customer["region"], "topic": "quality",
    });
    let (status, _, body) = maria.send(
        &api,
        "POST",
        "/api/v1/interactions",
        Some(interaction.clone()),
        false,
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["detail"].as_str().unwrap().contains("X-CSRF-Token"),
        "{body}"
    );
    let forged = Session {
        cookie: maria.cookie.clone(),
        csrf: "0".repeat(48),
    };
    let (status, _, _) = forged.send(
        &api,
        "POST",
        "/api/v1/interactions",
        Some(interaction.clone()),
        true,
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = maria.send(&api, "GET", "/api/v1/interactions/CONSOLE-1", None, false);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = maria.send(
        &api,
        "POST",
        "/api/v1/interactions",
        Some(interaction),
        true,
    );
    assert_eq!(status, StatusCode::CREATED);
    // Written in the name of the user.
    let (_, _, log) = api.send(
        "GET",
        "/api/v1/audit?kind=interaction&id=CONSOLE-1",
        Some(api.token(Role::Admin)),
        HERE,
    );
    assert_eq!(log["items"][0]["actor"], "user maria (agent)", "{log}");

    // A cookie that was never issued is no session.
    let stranger = Session {
        cookie: "crm_session=00".into(),
        csrf: String::new(),
    };
    let (status, _, _) = stranger.send(&api, "GET", "/api/v1/customers/C0000001", None, false);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, me) = stranger.send(&api, "GET", "/api/v1/session", None, false);
    assert_eq!((status, me), (StatusCode::OK, Value::Null));

    // A removed user's sessions end at once.
    api.state.users.remove("maria", "test").unwrap();
    let (status, _, _) = maria.send(&api, "GET", "/api/v1/customers/C0000001", None, false);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn tokens_sign_in_too_and_signing_out_ends_the_session() {
    // Three failed sign-ins a minute from one address, then 429.
    let api = Api::with(
        app::Config::default(),
        server::http::HttpConfig {
            failed_sign_ins: 3,
            ..server::http::HttpConfig::default()
        },
    );
    let session = sign_in(&api, json!({"token": api.token(Role::Analyst)}), HERE).unwrap();
    let (status, _, me) = session.send(&api, "GET", "/api/v1/session", None, false);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "analyst");
    let (status, body) = sign_in(&api, json!({"token": "crm_not_a_token"}), [10, 0, 0, 2])
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Wrong passwords count toward the limit of failed sign-ins.
    for _ in 0..3 {
        let (status, _) = sign_in(&api, json!({"token": "crm_wrong"}), [10, 0, 0, 3])
            .err()
            .unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = sign_in(
        &api,
        json!({"token": api.token(Role::Admin)}),
        [10, 0, 0, 3],
    )
    .err()
    .unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    let ((status, _, _), headers) = api.exchange(
        "DELETE",
        "/api/v1/session",
        None,
        HERE,
        &[("cookie", &session.cookie)],
        String::new(),
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, _) = session.send(&api, "GET", "/api/v1/analyses", None, false);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn saved_views_belong_to_their_user() {
    let api = Api::new();
    let analyst = sign_in(&api, json!({"token": api.token(Role::Analyst)}), HERE).unwrap();
    let viewer = sign_in(&api, json!({"token": api.token(Role::Viewer)}), HERE).unwrap();
    let view = json!({"params": {"tier": "gold", "sort": "-name", "q": "José"}});
    let (status, _, _) = analyst.send(
        &api,
        "PUT",
        "/api/v1/views/gold%20by%20name",
        Some(view.clone()),
        true,
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, mine) = analyst.send(&api, "GET", "/api/v1/views", None, false);
    assert_eq!(
        mine,
        json!([{"name": "gold by name", "params": view["params"]}])
    );
    let (_, _, theirs) = viewer.send(&api, "GET", "/api/v1/views", None, false);
    assert_eq!(theirs, json!([]));
    let (status, _, body) = analyst.send(
        &api,
        "PUT",
        "/api/v1/views/bad",
        Some(json!({"params": {"colour": "red"}})),
        true,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "params.colour");
    let (status, _, _) = viewer.send(&api, "DELETE", "/api/v1/views/gold%20by%20name", None, true);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = analyst.send(&api, "DELETE", "/api/v1/views/gold%20by%20name", None, true);
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, mine) = analyst.send(&api, "GET", "/api/v1/views", None, false);
    assert_eq!(mine, json!([]));
}

#[test]
fn the_routes_the_pages_read() {
    let api = Api::new();
    let viewer = Some(api.token(Role::Viewer));

    // The export of a list: the same customers in the same order.
    let (_, _, list) = api.send(
        "GET",
        "/api/v1/customers?tier=gold&sort=-name&limit=500",
        viewer,
        HERE,
    );
    let (status, kind, csv) = api.send(
        "GET",
        "/api/v1/customers.csv?tier=gold&sort=-name",
        viewer,
        HERE,
    );
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let mut reader = csv::Reader::from_reader(csv.as_str().unwrap().as_bytes());
    let ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    let expected: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["customer_id"].as_str().unwrap())
        .collect();
    assert!(!ids.is_empty());
    assert_eq!(ids, expected);
    let (status, _, body) = api.send("GET", "/api/v1/customers.csv?sort=colour", viewer, HERE);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "sort");

    // An analysis as CSV holds the JSON's rows.
    let (_, _, rows) = api.send("GET", "/api/v1/analyses/rfm", viewer, HERE);
    let (status, _, csv) = api.send("GET", "/api/v1/analyses/rfm/csv", viewer, HERE);
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<&str> = csv.as_str().unwrap().trim_end().lines().collect();
    assert_eq!(lines[0], "segment,customers,share,avg_monetary");
    assert_eq!(lines.len() - 1, rows.as_array().unwrap().len());
    assert!(lines[1].starts_with(&format!(
        "{},{},",
        rows[0]["segment"].as_str().unwrap(),
        rows[0]["customers"]
    )));

    // The Pareto curve passes through the pareto analysis's top fifth.
    let (_, _, pareto) = api.send("GET", "/api/v1/analyses/pareto", viewer, HERE);
    let (status, _, curve) = api.send("GET", "/api/v1/charts/pareto", viewer, HERE);
    assert_eq!(status, StatusCode::OK);
    let curve = curve.as_array().unwrap();
    assert_eq!(curve.len(), 101);
    assert_eq!(curve[0]["revenue_share"], json!(0.0));
    assert_eq!(curve[100]["revenue_share"], json!(1.0));
    assert_eq!(curve[20]["buyers"], pareto[0]["k"]);
    assert_eq!(curve[20]["revenue_share"], pareto[0]["top_share"]);
    assert!(
        curve
            .windows(2)
            .all(|w| w[0]["revenue_share"].as_f64() <= w[1]["revenue_share"].as_f64())
    );

    // Filter values: every tier a customer has.
    let (_, _, facets) = api.send("GET", "/api/v1/facets/customers", viewer, HERE);
    let tiers = facets["tier"].as_array().unwrap();
    assert!(tiers.contains(&json!("gold")), "{facets}");
    assert_eq!(facets["gender"], json!(["M", "F", "U"]));

    // A segment's history, newest first.
    let analyst = Some(api.token(Role::Analyst));
    for (script, expect) in [
        ("c.tier == \"gold\"", None),
        ("c.tier == \"silver\"", Some("\"1\"")),
    ] {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(e) = expect {
            headers.push(("if-match", e));
        }
        let ((status, _, body), _) = api.send_with(
            "PUT",
            "/api/v1/segments/tiered",
            analyst,
            HERE,
            &headers,
            json!({"script": script}).to_string(),
        );
        assert!(status.is_success(), "{status} {body}");
    }
    let (_, _, history) = api.send("GET", "/api/v1/segments/tiered/history", viewer, HERE);
    assert_eq!(history[0]["revision"], 2);
    assert_eq!(history[0]["script"], "c.tier == \"silver\"");
    assert_eq!(history[1]["script"], "c.tier == \"gold\"");
    let (status, _, _) = api.send("GET", "/api/v1/segments/never/history", viewer, HERE);
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The customer list (and its export) on a segment's members.
    let (_, _, members) = api.send(
        "GET",
        "/api/v1/segments/tiered/members?limit=1000",
        viewer,
        HERE,
    );
    let (status, _, list) = api.send(
        "GET",
        "/api/v1/customers?segment=tiered&limit=500",
        viewer,
        HERE,
    );
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], members["total"]);
    let listed: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["customer_id"])
        .collect();
    let expected: Vec<&Value> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["customer_id"])
        .collect();
    assert!(!listed.is_empty());
    assert_eq!(listed, expected);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["tier"] == "silver")
    );
    let (_, _, csv) = api.send(
        "GET",
        "/api/v1/customers.csv?segment=tiered&sort=-name",
        viewer,
        HERE,
    );
    assert_eq!(
        csv.as_str().unwrap().trim_end().lines().count() - 1,
        listed.len()
    );
    let (status, _, body) = api.send("GET", "/api/v1/customers?segment=nothing", viewer, HERE);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["field"], "segment");

    // A plugin's analysis, on everyone and on a segment.
    let (status, _, all) = api.send(
        "GET",
        "/api/v1/plugins/tobacco-retail/analyses/sales-by-band",
        viewer,
        HERE,
    );
    assert_eq!(status, StatusCode::OK, "{all}");
    assert!(!all.as_array().unwrap().is_empty());
    let (status, _, some) = api.send(
        "GET",
        "/api/v1/plugins/tobacco-retail/analyses/sales-by-band?segment=tiered",
        viewer,
        HERE,
    );
    assert_eq!(status, StatusCode::OK, "{some}");
    assert_ne!(all, some);
    let (status, _, _) = api.send(
        "GET",
        "/api/v1/plugins/tobacco-retail/analyses/nothing",
        viewer,
        HERE,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = api.send(
        "GET",
        "/api/v1/plugins/tobacco-retail/analyses/sales-by-band",
        Some(api.token(Role::Agent)),
        HERE,
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[test]
fn admins_manage_users_over_the_api() {
    let api = Api::new();
    let admin = Some(api.token(Role::Admin));
    let put = |token: Option<&str>, name: &str, body: Value| {
        api.send_with(
            "PUT",
            &format!("/api/v1/users/{name}"),
            token,
            HERE,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .0
    };
    let (status, _, _) = put(
        Some(api.token(Role::Analyst)),
        "ana",
        json!({"role": "analyst", "password": "a long password"}),
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = put(
        admin,
        "ana",
        json!({"role": "analyst", "password": "short"}),
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "password");
    let (status, _, body) = put(
        admin,
        "no%20spaces",
        json!({"role": "analyst", "password": "a long password"}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "name");
    let (status, _, body) = put(
        admin,
        "ana",
        json!({"role": "analyst", "password": "a long password"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["role"], "analyst");
    assert!(body.get("password").is_none() && body.get("hash").is_none());
    let ana = sign_in(
        &api,
        json!({"user": "ana", "password": "a long password"}),
        HERE,
    )
    .unwrap();
    // A new password and role: the old password no longer signs in, and
    // the session takes the new role at once.
    let (status, _, _) = put(
        admin,
        "ana",
        json!({"role": "viewer", "password": "another long one"}),
    );
    assert_eq!(status, StatusCode::OK);
    let (_, _, me) = ana.send(&api, "GET", "/api/v1/session", None, false);
    assert_eq!(me["role"], "viewer");
    assert!(
        sign_in(
            &api,
            json!({"user": "ana", "password": "a long password"}),
            HERE
        )
        .is_err()
    );
    let (_, _, users) = api.send("GET", "/api/v1/users", admin, HERE);
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["name"], "ana");
    let (_, _, log) = api.send("GET", "/api/v1/audit?kind=user&id=ana", admin, HERE);
    assert_eq!(log["items"].as_array().unwrap().len(), 2, "{log}");
    assert!(!log.to_string().contains("argon2"), "{log}");

    // An admin user cannot remove themselves; another admin can.
    let (status, _, _) = put(
        admin,
        "root",
        json!({"role": "admin", "password": "the admin password"}),
    );
    assert_eq!(status, StatusCode::CREATED);
    let root = sign_in(
        &api,
        json!({"user": "root", "password": "the admin password"}),
        HERE,
    )
    .unwrap();
    let (status, _, _) = root.send(&api, "DELETE", "/api/v1/users/root", None, true);
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, _) = root.send(&api, "DELETE", "/api/v1/users/ana", None, true);
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = ana.send(&api, "GET", "/api/v1/customers/C0000001", None, false);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = api.send("DELETE", "/api/v1/users/ana", admin, HERE);
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn crm_user_makes_lists_changes_and_removes_users() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    crate::support::import(
        &*crate::support::open_store(&db),
        &crate::support::dataset(generate::Industry::Retail, 50, 3),
    )
    .unwrap();
    let db_arg = db.to_str().unwrap();
    let crm = crate::support::crm;
    // Without --password-stdin a password is made and printed once.
    let out = crm(&["user", "create", "maria", "--role", "agent", "--db", db_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(made.len(), 16, "{made}");
    let out = crm(&["user", "create", "maria", "--role", "agent", "--db", db_arg]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already"));
    let out = crm(&["user", "create", "x", "--role", "boss", "--db", db_arg]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role 'boss'"));
    {
        let users = app::users::Users::new(crate::support::open_store(&db));
        assert_eq!(users.verify("maria", &made).unwrap(), Some(Role::Agent));
    }
    // A new password from standard input, and a new role.
    let mut child = std::process::Command::new(crate::support::crm_bin())
        .args([
            "user",
            "password",
            "maria",
            "--role",
            "analyst",
            "--password-stdin",
            "--db",
            db_arg,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "the new password").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "a given password is not printed");
    {
        let users = app::users::Users::new(crate::support::open_store(&db));
        assert_eq!(users.verify("maria", &made).unwrap(), None);
        assert_eq!(
            users.verify("maria", "the new password").unwrap(),
            Some(Role::Analyst)
        );
    }
    let out = crm(&["user", "list", "--db", db_arg]);
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.starts_with("maria") && list.contains("analyst"),
        "{list}"
    );
    let out = crm(&["user", "remove", "maria", "--db", db_arg]);
    assert!(out.status.success());
    let out = crm(&["user", "remove", "maria", "--db", db_arg]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user 'maria'"));
    let out = crm(&["audit", "--db", db_arg, "--kind", "user"]);
    let audit = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        audit.lines().filter(|l| l.contains("user maria")).count(),
        3,
        "{audit}"
    );
    assert!(!audit.contains("argon2"));
}
