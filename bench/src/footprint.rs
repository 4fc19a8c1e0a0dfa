//! Benchmark 6, footprint: each handler's release binary and the zip Lambda would take
//! (`bootstrap` at the root, deflated, mode 755), made with the `zip` crate.

use std::io::{Cursor, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// The handlers measured.
pub const HANDLERS: [&str; 4] = ["connect", "disconnect", "message", "authorizer"];

/// One handler.
#[derive(Debug, Clone, Serialize)]
pub struct Handler {
    /// Binary name.
    pub name: String,
    /// Release binary size, bytes.
    pub binary_bytes: u64,
    /// Zip size, bytes.
    pub zip_bytes: u64,
}

/// Every handler.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    /// Per handler.
    pub handlers: Vec<Handler>,
    /// What was built (the host target; Lambda's arm64 build is a different binary).
    pub target: String,
    /// The release profile they were built with, as the root Cargo.toml sets it.
    pub profile: String,
    /// The Lambda builds (cargo lambda, the stack's architecture) of the last bundled synth
    /// (`make synth-bundled`, part of `make test`), when one is on disk.
    pub lambda_builds: Option<LambdaBuilds>,
}

/// The bootstraps a bundled synth made.
#[derive(Debug, Clone, Serialize)]
pub struct LambdaBuilds {
    /// Where they were found, from the repository root.
    pub dir: String,
    /// Their architecture.
    pub architecture: String,
    /// When the newest was built (UTC).
    pub built_at: String,
    /// The commit they were built from (`make synth-bundled` writes it beside them), if known.
    pub commit: Option<String>,
    /// Whether that is this run's commit with a clean tree: only then do they stand for the
    /// code being measured.
    pub current: bool,
    /// Per handler.
    pub handlers: Vec<Handler>,
}

/// Where `make synth-bundled` leaves its cloud assembly, from the repository root.
pub const BUNDLED_DIR: &str = "test-output/cdk/bundled";

/// Reads the bootstraps of the bundled synth under `repo` (its template names each function's
/// binary and asset folder).
pub fn lambda_builds(repo: &Path, commit: &str) -> Option<LambdaBuilds> {
    let dir = repo.join(BUNDLED_DIR);
    let template = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".template.json"))?;
    let template: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(template).ok()?).ok()?;
    let mut handlers = Vec::new();
    let mut architecture = String::new();
    let mut newest = None;
    for resource in template.get("Resources")?.as_object()?.values() {
        let Some(name) = resource
            .pointer("/Metadata/local:binary")
            .and_then(|v| v.as_str())
        else {
            continue;
        };
        let Some(asset) = resource
            .pointer("/Metadata/aws:asset:path")
            .and_then(|v| v.as_str())
        else {
            continue;
        };
        if let Some(arch) = resource
            .pointer("/Properties/Architectures/0")
            .and_then(|v| v.as_str())
        {
            architecture = arch.to_owned();
        }
        let path = dir.join(asset).join("bootstrap");
        let Ok(binary) = std::fs::read(&path) else {
            continue;
        };
        if let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) {
            newest = newest.max(Some(modified));
        }
        handlers.push(Handler {
            name: name.to_owned(),
            binary_bytes: binary.len() as u64,
            zip_bytes: zip_size(&binary).ok()?,
        });
    }
    handlers.sort_by_key(|h| {
        HANDLERS
            .iter()
            .position(|n| *n == h.name)
            .unwrap_or(usize::MAX)
    });
    let built_from = std::fs::read_to_string(dir.join("commit"))
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let current = built_from.as_deref() == Some(commit) && !commit.ends_with("-dirty");
    (!handlers.is_empty()).then(|| LambdaBuilds {
        dir: BUNDLED_DIR.to_owned(),
        architecture,
        built_at: newest
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .unwrap_or_default(),
        commit: built_from,
        current,
        handlers,
    })
}

fn zip_size(binary: &[u8]) -> Result<u64> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    // As the CDK CLI packs a directory asset for upload (yazl: deflate at zlib's default
    // level, 6); the zip crate's own default level compresses less.
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(6))
        .unix_permissions(0o755);
    zip.start_file("bootstrap", options)?;
    zip.write_all(binary)?;
    let bytes = zip.finish()?.into_inner();
    Ok(bytes.len() as u64)
}

/// Measures the handlers in `bin_dir`, and the Lambda builds of `repo`'s bundled synth if any
/// (`commit` is this run's, to tell whether they are current).
pub fn measure(bin_dir: &Path, repo: &Path, commit: &str) -> Result<Footprint> {
    let mut handlers = Vec::new();
    for name in HANDLERS {
        let path = bin_dir.join(name);
        let binary = std::fs::read(&path).with_context(|| {
            format!(
                "read {} (build the handlers in release first)",
                path.display()
            )
        })?;
        handlers.push(Handler {
            name: name.to_owned(),
            binary_bytes: binary.len() as u64,
            zip_bytes: zip_size(&binary)?,
        });
    }
    Ok(Footprint {
        handlers,
        target: format!("{}-linux (host release build)", std::env::consts::ARCH),
        profile: release_profile(
            &std::fs::read_to_string(repo.join("Cargo.toml")).unwrap_or_default(),
        ),
        lambda_builds: lambda_builds(repo, commit),
    })
}

/// The settings of `[profile.release]` in a Cargo.toml, as `key = value` joined by `, `.
fn release_profile(cargo_toml: &str) -> String {
    cargo_toml
        .lines()
        .skip_while(|l| l.trim() != "[profile.release]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| l.contains('=') && !l.trim_start().starts_with('#'))
        .map(|l| l.trim().replace('"', ""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_release_profile_only() {
        let toml = "[workspace]\nmembers = []\n\n# size\n[profile.release]\nopt-level = \"z\"\n# why\nlto = \"fat\"\n\n[profile.release.package.x]\nopt-level = 3\n";
        assert_eq!(release_profile(toml), "opt-level = z, lto = fat");
        assert_eq!(release_profile("[workspace]\n"), "");
    }
}
