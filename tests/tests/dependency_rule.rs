//! The architecture's dependency rule: sched, alloc and netpoll depend on no other gort crate.
#![cfg(not(loom))]

use std::path::Path;

fn gort_deps(krate: &str) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("gort") && l.contains('='))
        .map(|l| l.split('=').next().unwrap().trim().to_string())
        .collect()
}

#[test]
fn leaf_subsystems_depend_on_no_other_gort_crate() {
    for krate in ["sched", "alloc", "netpoll"] {
        assert!(
            gort_deps(krate).is_empty(),
            "{krate} depends on {:?}",
            gort_deps(krate)
        );
    }
}

#[test]
fn gc_depends_on_alloc_only() {
    let gc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gc/Cargo.toml");
    if gc.exists() {
        let deps = gort_deps("gc");
        assert!(
            deps.iter()
                .all(|d| d.starts_with("gort-alloc") || d.starts_with("gort-gc")),
            "{deps:?}"
        );
    }
}

/// Nothing depends on the facade but the integration tests (and its own examples).
#[test]
fn only_tests_depend_on_rt() {
    for krate in ["sched", "alloc", "netpoll", "gc"] {
        let deps = gort_deps(krate);
        assert!(!deps.iter().any(|d| d == "gort"), "{krate} depends on gort");
    }
    let rt = gort_deps("rt");
    assert!(
        rt.iter()
            .all(|d| ["gort-sched", "gort-alloc", "gort-netpoll", "gort-gc"].contains(&d.as_str())),
        "rt depends on {rt:?}"
    );
}
