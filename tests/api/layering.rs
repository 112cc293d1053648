//! The crate graph keeps its shape: neither service crate depends on the
//! other, both reach the HTTP edge through `ibl-edge`, and `ibl-events`
//! knows no web framework. Read from `cargo metadata`.

use std::collections::BTreeMap;

use serde_json::Value;

/// Each workspace package and the names of its direct dependencies.
fn graph() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str().map(str::to_owned))
                .collect();
            (p["name"].as_str().expect("a name").to_owned(), deps)
        })
        .collect()
}

#[test]
fn no_service_crate_depends_on_the_other_and_events_knows_no_framework() {
    let graph = graph();
    let deps = |name: &str| {
        graph
            .get(name)
            .unwrap_or_else(|| panic!("no package {name} in {graph:?}"))
    };
    let has = |name: &str, dep: &str| deps(name).iter().any(|d| d == dep);
    assert!(!has("ibl-command-service", "ibl-query-service"));
    assert!(!has("ibl-query-service", "ibl-command-service"));
    for service in ["ibl-command-service", "ibl-query-service"] {
        assert!(has(service, "ibl-edge"), "{service}");
    }
    for lower in ["ibl-edge", "ibl-projections", "ibl-events"] {
        for service in ["ibl-command-service", "ibl-query-service"] {
            assert!(!has(lower, service), "{lower} depends on {service}");
        }
    }
    for framework in ["actix-web", "actix-http", "ibl-edge", "ibl-projections"] {
        assert!(
            !has("ibl-events", framework),
            "ibl-events depends on {framework}"
        );
    }
    assert!(!has("ibl-projections", "actix-web"));
}
