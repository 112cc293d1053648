//! What operators probe and scrape: `/readyz` and `/metrics`.

use serde_json::json;

use crate::helpers::{metric, spawn_app, spawn_app_with, ORG};

#[test]
fn readyz_names_each_backend_and_is_ready_when_they_answer() {
    let app = spawn_app();
    let ready = app.get("/readyz").send().expect(200).body;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["backends"]["event_store"]["state"], "up", "{ready}");
    assert_eq!(ready["backends"]["read_models"]["state"], "up", "{ready}");
}

#[test]
fn metrics_count_answers_by_route_pattern_and_show_appends_and_projector_lag() {
    let app = spawn_app();
    let creds = format!("/api/credentials/orgs/{ORG}/users/admin/");
    let created = app
        .post(&creds)
        .json(&json!({"name": "Metered"}))
        .send()
        .expect(200)
        .body;
    let id = created["result"]["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        app.get(&format!("{creds}{id}")).send().expect(200);
    }
    app.get(&format!("{creds}nope")).send().expect(404);
    let r = app.get("/metrics").send().expect(200);
    let text = r.text;
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type")
                && v.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    // By the route's pattern: ids make no new series.
    let series = "ibl_http_request_duration_seconds_count{method=\"GET\",route=\"/api/credentials/orgs/{org}/users/{user}/{entity_id}\"";
    assert_eq!(
        metric(&text, &format!("{series},status=\"200\"}}")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("{series},status=\"404\"}}")),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(&id), "no id in a label");
    let appends = metric(&text, "ibl_store_append_duration_seconds_count").unwrap();
    assert!(appends >= 1.0, "{text}");
    let head = metric(&text, "ibl_store_head_position ").unwrap();
    assert!(head >= 1.0, "{text}");
    for model in ["credentials", "rbac", "assertions"] {
        let position = metric(
            &text,
            &format!("ibl_projection_position{{model=\"{model}\"}}"),
        );
        assert_eq!(position, Some(head), "{model}: {text}");
        let lag = metric(
            &text,
            &format!("ibl_projection_lag_events{{model=\"{model}\"}}"),
        );
        assert_eq!(lag, Some(0.0), "{model}: {text}");
    }
}

#[test]
fn with_a_token_set_metrics_need_it() {
    let app = spawn_app_with(|s| s.metrics_token = Some("s3cret-token".into()));
    app.get("/metrics").send().expect_client_error(403);
    app.get("/metrics")
        .header("Authorization", "Bearer wrong")
        .send()
        .expect_client_error(403);
    let ok = app
        .get("/metrics")
        .header("Authorization", "Bearer s3cret-token")
        .send()
        .expect(200);
    assert!(ok.text.contains("ibl_store_head_position"), "{}", ok.text);
}

#[test]
fn without_a_token_metrics_are_for_this_machine_not_for_a_proxy_on_it() {
    let app = spawn_app();
    app.get("/metrics").send().expect(200);
    for header in ["X-Forwarded-For", "Forwarded"] {
        app.get("/metrics")
            .header(header, "for=203.0.113.7")
            .send()
            .expect_client_error(403);
    }
}
