//! Set-up for `cargo xtask test`: install the cross toolchain, Rust targets and components, and
//! the nightly toolchain with Miri, skipping whatever is present, so CI works on a fresh machine.

use std::process::Command;

use crate::summary::Outcome;
use crate::{miri, util};

/// Debian packages for the aarch64 smoke run: the qemu-user runner, the cross linker and
/// the aarch64 C library to link against (`.cargo/config.toml` names the runner and linker).
const DEBIAN_PACKAGES: &[&str] = &[
    "qemu-user-static",
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
];
/// Without dpkg, these executables stand in for the packages above.
const CROSS_TOOLS: &[&str] = &["qemu-aarch64-static", "aarch64-linux-gnu-gcc"];
/// Rust targets: aarch64 for the qemu smoke run, macOS to type-check the kqueue backend.
const RUST_TARGETS: &[&str] = &["aarch64-unknown-linux-gnu", "x86_64-apple-darwin"];
const RUST_COMPONENTS: &[&str] = &["clippy", "rustfmt"];
/// Components of the nightly toolchain for `cargo xtask miri` (Miri builds its own standard
/// library from `rust-src`). Nothing but Miri uses nightly.
const MIRI_COMPONENTS: &[&str] = &["miri", "rust-src"];

/// Runs the whole set-up.
pub fn run() -> Result<Outcome, String> {
    let mut installed = Vec::new();
    debian_packages(&mut installed)?;
    rust_targets(&mut installed)?;
    rust_components(&mut installed)?;
    miri_toolchain(&mut installed)?;
    miri_sysroot()?;
    if installed.is_empty() {
        eprintln!("everything present");
    } else {
        eprintln!("installed: {}", installed.join(", "));
    }
    Ok(Outcome::Ok)
}

fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    output_of(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

fn debian_packages(installed: &mut Vec<String>) -> Result<(), String> {
    if !util::on_path("dpkg-query") {
        let missing: Vec<_> = CROSS_TOOLS.iter().filter(|t| !util::on_path(t)).collect();
        if missing.is_empty() {
            eprintln!(
                "not a Debian system, but {} are on PATH",
                CROSS_TOOLS.join(" and ")
            );
            return Ok(());
        }
        return Err(format!(
            "not a Debian system and {missing:?} not on PATH: install qemu-user (static) and an \
             aarch64-linux-gnu cross gcc with its libc with your package manager"
        ));
    }
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output_of(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.ends_with("installed") || s.contains("not-installed"))
        })
        .collect();
    if missing.is_empty() {
        eprintln!("Debian packages present: {}", DEBIAN_PACKAGES.join(" "));
        return Ok(());
    }
    let install = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() {
        return Err(format!(
            "missing Debian packages {}; run: sudo apt-get update && sudo {install}",
            missing.join(" ")
        ));
    }
    util::run(Command::new("apt-get").arg("update"))?;
    util::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    installed.extend(missing.iter().map(|s| s.to_string()));
    Ok(())
}

/// Whether `list` (the output of `rustup ... list --installed`) has `name`: targets are
/// listed bare, host components with the host triple (`clippy-x86_64-unknown-linux-gnu`).
fn listed(list: &str, name: &str, host: &str) -> bool {
    let with_host = format!("{name}-{host}");
    list.lines()
        .map(str::trim)
        .any(|l| l == name || l == with_host)
}

/// The host triple, from `rustc -vV`.
fn host_triple() -> Result<String, String> {
    output_of(Command::new("rustc").arg("-vV"))
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("host: ").map(|h| h.trim().to_string()))
        })
        .ok_or_else(|| "could not read the host triple from `rustc -vV`".to_string())
}

fn rustup_installed(what: &str) -> Result<String, String> {
    output_of(Command::new("rustup").args([what, "list", "--installed"]))
        .ok_or_else(|| format!("`rustup {what} list --installed` failed"))
}

fn rust_targets(installed: &mut Vec<String>) -> Result<(), String> {
    if !util::on_path("rustup") {
        // A toolchain without rustup: look for the targets' standard libraries instead.
        let sysroot = output_of(Command::new("rustc").args(["--print", "sysroot"]))
            .ok_or("`rustc --print sysroot` failed")?;
        let missing: Vec<_> = RUST_TARGETS
            .iter()
            .filter(|t| {
                !std::path::Path::new(sysroot.trim())
                    .join("lib/rustlib")
                    .join(t)
                    .is_dir()
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "rustup is not on PATH and the standard library for {missing:?} is missing: install \
             rustup (https://rustup.rs), or these targets for your toolchain"
        ));
    }
    let list = rustup_installed("target")?;
    let missing: Vec<&str> = RUST_TARGETS
        .iter()
        .copied()
        .filter(|t| !listed(&list, t, ""))
        .collect();
    if missing.is_empty() {
        eprintln!("Rust targets present: {}", RUST_TARGETS.join(" "));
        return Ok(());
    }
    util::run(
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing),
    )?;
    installed.extend(missing.iter().map(|s| s.to_string()));
    Ok(())
}

fn rust_components(installed: &mut Vec<String>) -> Result<(), String> {
    if !util::on_path("rustup") {
        for (component, sub) in [("clippy", "clippy"), ("rustfmt", "fmt")] {
            if output_of(util::cargo().args([sub, "--version"])).is_none() {
                return Err(format!(
                    "`cargo {sub}` is not available and rustup is not on PATH: install {component}"
                ));
            }
        }
        return Ok(());
    }
    let list = rustup_installed("component")?;
    let host = host_triple()?;
    let missing: Vec<&str> = RUST_COMPONENTS
        .iter()
        .copied()
        .filter(|c| !listed(&list, c, &host))
        .collect();
    if missing.is_empty() {
        eprintln!("Rust components present: {}", RUST_COMPONENTS.join(" "));
        return Ok(());
    }
    util::run(
        Command::new("rustup")
            .args(["component", "add"])
            .args(&missing),
    )?;
    installed.extend(missing.iter().map(|s| s.to_string()));
    Ok(())
}

/// The set-up `cargo xtask miri` needs, alone: the nightly toolchain with Miri, and Miri's
/// sysroot.
pub fn miri() -> Result<Outcome, String> {
    let mut installed = Vec::new();
    miri_toolchain(&mut installed)?;
    miri_sysroot()?;
    if !installed.is_empty() {
        eprintln!("installed: {}", installed.join(", "));
    }
    Ok(Outcome::Ok)
}

/// Installs the nightly toolchain with `MIRI_COMPONENTS`, or the components it lacks.
fn miri_toolchain(installed: &mut Vec<String>) -> Result<(), String> {
    let toolchain = miri::TOOLCHAIN;
    if !util::on_path("rustup") {
        if miri::check_installed().is_ok() {
            return Ok(());
        }
        return Err(format!(
            "rustup is not on PATH and `cargo +{toolchain} miri` does not work: Miri needs a \
             {toolchain} toolchain with the {} components; install rustup \
             (https://rustup.rs), then run `cargo xtask test setup` again",
            MIRI_COMPONENTS.join(" and ")
        ));
    }
    let Some(list) = output_of(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        toolchain,
    ])) else {
        // No such toolchain yet: a minimal one, with Miri, and nothing else.
        util::run(Command::new("rustup").args([
            "toolchain",
            "install",
            toolchain,
            "--profile",
            "minimal",
            "--component",
            &MIRI_COMPONENTS.join(","),
        ]))
        .map_err(|e| {
            format!(
                "{e}: could not install the {toolchain} toolchain with {}; check the \
                 network and rustup's output above, or install it by hand with the same command",
                MIRI_COMPONENTS.join(" and ")
            )
        })?;
        installed.push(format!(
            "{toolchain} toolchain ({})",
            MIRI_COMPONENTS.join(", ")
        ));
        return Ok(());
    };
    let host = host_triple()?;
    let missing: Vec<&str> = MIRI_COMPONENTS
        .iter()
        .copied()
        .filter(|c| !listed(&list, c, &host))
        .collect();
    if missing.is_empty() {
        eprintln!(
            "{toolchain} components present: {}",
            MIRI_COMPONENTS.join(" ")
        );
        return Ok(());
    }
    util::run(
        Command::new("rustup")
            .args(["component", "add", "--toolchain", toolchain])
            .args(&missing),
    )
    .map_err(|e| {
        format!(
            "{e}: if the installed {toolchain} has no {} for this host, replace it with one \
             that has: `rustup toolchain install {toolchain} --profile minimal --component {}`",
            missing.join(" or "),
            MIRI_COMPONENTS.join(",")
        )
    })?;
    installed.extend(missing.iter().map(|c| format!("{c} ({toolchain})")));
    Ok(())
}

/// Builds Miri's standard library once per toolchain (`cargo miri setup` returns at once when
/// it is there).
fn miri_sysroot() -> Result<(), String> {
    util::run(miri::nightly_cargo().args(["miri", "setup"])).map_err(|e| {
        format!(
            "{e}: Miri could not build its sysroot; check that the {} toolchain has the \
             rust-src component (`rustup component add --toolchain {} rust-src`)",
            miri::TOOLCHAIN,
            miri::TOOLCHAIN
        )
    })
}

/// The benchmarks' load generator for HTTP (`rt/examples/bench_http.rs`, `rt/bench-go/http.go`):
/// Debian's `wrk`, installed when missing (as root; otherwise says how).
pub fn wrk() -> Result<(), String> {
    if util::on_path("wrk") {
        return Ok(());
    }
    let how = "apt-get install -y wrk";
    if !util::on_path("apt-get") || !is_root() {
        return Err(format!(
            "`wrk` is not on PATH; install it (Debian: sudo apt-get update && sudo {how})"
        ));
    }
    eprintln!("installing wrk for the HTTP benchmarks");
    let install = || {
        util::run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "--no-install-recommends", "wrk"]),
        )
    };
    if install().is_err() {
        util::run(Command::new("apt-get").arg("update"))?;
        install()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::listed;

    #[test]
    fn installed_lists_match_whole_names_with_optional_triple() {
        let components = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\n\
                          rust-std-aarch64-unknown-linux-gnu\nrustfmt-x86_64-unknown-linux-gnu\n";
        let host = "x86_64-unknown-linux-gnu";
        assert!(listed(components, "clippy", host));
        assert!(listed(components, "rustfmt", host));
        assert!(!listed(components, "rust-src", host));
        assert!(!listed(components, "rust", host));
        assert!(!listed(components, "clippy", "aarch64-unknown-linux-gnu"));
        let targets = "aarch64-unknown-linux-gnu\nx86_64-unknown-linux-gnu\n";
        assert!(listed(targets, "aarch64-unknown-linux-gnu", ""));
        assert!(!listed(targets, "x86_64-apple-darwin", ""));
    }
}
