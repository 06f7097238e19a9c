//! The workspace as `cargo metadata` describes it: members, their directories and targets.
//!
//! Members are discovered, not hard-coded, so a new crate (gc, rt) gets its loom run, its
//! benchmark programs and its demo examples without touching xtask.

use std::path::{Path, PathBuf};

use crate::json::{self, Value};
use crate::util;

/// One workspace member.
#[derive(Debug, Clone)]
pub struct Member {
    /// Package name, e.g. `gort-sched`.
    pub package: String,
    /// The crate's directory name, e.g. `sched` (what `<crate>` means in the conventions).
    pub dir_name: String,
    pub dir: PathBuf,
    /// Example targets, by name (`bench_spawn`, `demo_sched`, ...).
    pub examples: Vec<String>,
    /// Binary targets, by name.
    pub bins: Vec<String>,
    /// Whether the package depends on `loom` at all (normally under `cfg(loom)`); a crate
    /// without it cannot have loom models.
    pub uses_loom: bool,
}

impl Member {
    /// Whether `name` designates this crate: the package (`gort-sched`), the directory
    /// (`sched`), or the package without the `gort-` prefix.
    pub fn is_named(&self, name: &str) -> bool {
        self.package == name
            || self.dir_name == name
            || self.package.strip_prefix("gort-") == Some(name)
    }
}

/// The workspace root, its target directory and members in manifest order.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    pub members: Vec<Member>,
}

impl Workspace {
    /// Runs `cargo metadata --no-deps` and reads the parts xtask needs.
    pub fn load() -> Result<Workspace, String> {
        // Cargo runs xtask from the directory `cargo xtask` was typed in; ask about the
        // workspace xtask belongs to, wherever that is.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let out = util::cargo()
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(&manifest)
            .output()
            .map_err(|e| format!("could not run `cargo metadata`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`cargo metadata` failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8(out.stdout)
            .map_err(|_| "`cargo metadata` printed invalid UTF-8".to_string())?;
        Self::from_metadata(&text)
    }

    /// Reads the output of `cargo metadata --no-deps --format-version 1`.
    pub fn from_metadata(text: &str) -> Result<Workspace, String> {
        let meta = json::parse(text).map_err(|e| format!("reading cargo metadata: {e}"))?;
        let field = |v: &Value, key: &str| -> Result<String, String> {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("cargo metadata: missing string `{key}`"))
        };
        let root = PathBuf::from(field(&meta, "workspace_root")?);
        let target_dir = PathBuf::from(field(&meta, "target_directory")?);
        let member_ids: Vec<&str> = meta
            .get("workspace_members")
            .map(Value::items)
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut members = Vec::new();
        for pkg in meta.get("packages").map(Value::items).unwrap_or_default() {
            let id = field(pkg, "id")?;
            if !member_ids.contains(&id.as_str()) {
                continue;
            }
            let manifest = PathBuf::from(field(pkg, "manifest_path")?);
            let dir = manifest
                .parent()
                .ok_or_else(|| format!("cargo metadata: odd manifest path {manifest:?}"))?
                .to_path_buf();
            let mut examples = Vec::new();
            let mut bins = Vec::new();
            for target in pkg.get("targets").map(Value::items).unwrap_or_default() {
                let name = field(target, "name")?;
                let kinds = target.get("kind").map(Value::items).unwrap_or_default();
                if kinds.iter().any(|k| k.as_str() == Some("example")) {
                    examples.push(name);
                } else if kinds.iter().any(|k| k.as_str() == Some("bin")) {
                    bins.push(name);
                }
            }
            examples.sort();
            bins.sort();
            let uses_loom = pkg
                .get("dependencies")
                .map(Value::items)
                .unwrap_or_default()
                .iter()
                .any(|d| d.get("name").and_then(Value::as_str) == Some("loom"));
            members.push(Member {
                package: field(pkg, "name")?,
                dir_name: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                dir,
                examples,
                bins,
                uses_loom,
            });
        }
        Ok(Workspace {
            root,
            target_dir,
            members,
        })
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.is_named(name))
    }

    /// The member crates that hold runtime code: everything but xtask and gort-tests.
    pub fn library_members(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| m.package != "xtask" && m.package != "gort-tests")
    }

    /// Where a release binary or example lands in the shared target directory.
    pub fn release_exe(&self, example: bool, name: &str) -> PathBuf {
        self.profile_exe("release", example, name)
    }

    /// Where a binary or example built with cargo profile `profile` lands.
    pub fn profile_exe(&self, profile: &str, example: bool, name: &str) -> PathBuf {
        let mut p = self.target_dir.join(profile);
        if example {
            p.push("examples");
        }
        p.push(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METADATA: &str = r#"{
      "packages": [
        {"name": "gort-sched", "id": "path+file:///w/sched#gort-sched@0.1.0",
         "manifest_path": "/w/sched/Cargo.toml",
         "dependencies": [{"name": "libc"}, {"name": "loom", "target": "cfg(loom)"}],
         "targets": [
           {"kind": ["lib"], "name": "gort_sched"},
           {"kind": ["example"], "name": "bench_spawn"},
           {"kind": ["example"], "name": "demo_sched"},
           {"kind": ["test"], "name": "smoke"}
         ]},
        {"name": "gort-tests", "id": "path+file:///w/tests#gort-tests@0.1.0",
         "manifest_path": "/w/tests/Cargo.toml", "dependencies": [],
         "targets": [{"kind": ["lib"], "name": "gort_tests"}, {"kind": ["bin"], "name": "demo"}]},
        {"name": "outsider", "id": "path+file:///elsewhere#outsider@1.0.0",
         "manifest_path": "/elsewhere/Cargo.toml", "dependencies": [], "targets": []}
      ],
      "workspace_members": ["path+file:///w/sched#gort-sched@0.1.0",
                            "path+file:///w/tests#gort-tests@0.1.0"],
      "target_directory": "/w/target",
      "workspace_root": "/w",
      "version": 1
    }"#;

    #[test]
    fn reads_members_targets_and_loom_use() {
        let ws = Workspace::from_metadata(METADATA).unwrap();
        assert_eq!(ws.root, PathBuf::from("/w"));
        assert_eq!(ws.target_dir, PathBuf::from("/w/target"));
        assert_eq!(ws.members.len(), 2);
        let sched = ws.member("sched").unwrap();
        assert_eq!(sched.package, "gort-sched");
        assert_eq!(sched.dir, PathBuf::from("/w/sched"));
        assert_eq!(sched.examples, ["bench_spawn", "demo_sched"]);
        assert!(sched.bins.is_empty());
        assert!(sched.uses_loom);
        let tests = ws.member("gort-tests").unwrap();
        assert_eq!(tests.bins, ["demo"]);
        assert!(!tests.uses_loom);
        assert!(ws.member("outsider").is_none());
        let libs: Vec<_> = ws.library_members().map(|m| m.package.as_str()).collect();
        assert_eq!(libs, ["gort-sched"]);
        assert_eq!(
            ws.release_exe(true, "bench_spawn"),
            PathBuf::from("/w/target/release/examples/bench_spawn")
        );
        assert_eq!(
            ws.profile_exe("release-lto", false, "demo"),
            PathBuf::from(format!(
                "/w/target/release-lto/demo{}",
                std::env::consts::EXE_SUFFIX
            ))
        );
    }

    #[test]
    fn names_resolve_by_package_directory_or_short_name() {
        let ws = Workspace::from_metadata(METADATA).unwrap();
        for name in ["gort-sched", "sched"] {
            assert_eq!(ws.member(name).unwrap().package, "gort-sched");
        }
        assert!(ws.member("sch").is_none());
    }
}
