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
}

fn zip_size(binary: &[u8]) -> Result<u64> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o755);
    zip.start_file("bootstrap", options)?;
    zip.write_all(binary)?;
    let bytes = zip.finish()?.into_inner();
    Ok(bytes.len() as u64)
}

/// Measures the handlers in `bin_dir`.
pub fn measure(bin_dir: &Path) -> Result<Footprint> {
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
    })
}
