//! A real full disk for tests: a small tmpfs mounted on a fresh directory, and a filler file
//! that takes every byte left. Shared by the storage tests and the end-to-end suite
//! (`tests/integration/disk_full.rs` includes this file by path).
//!
//! Mounting needs root (CAP_SYS_ADMIN). Where the mount fails, [`Tmpfs::mount`] says so on
//! stderr and returns `None` so the test can skip, unless `STORMHOOK_REQUIRE_TMPFS` is set (CI
//! sets it), where it fails the test.

#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a temporary directory, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=...`: `24m`, `128m`).
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self { dir }),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var_os("STORMHOOK_REQUIRE_TMPFS").is_none(),
                    "STORMHOOK_REQUIRE_TMPFS is set but a tmpfs cannot be mounted: {why}"
                );
                eprintln!(
                    "SKIPPED: this disk-full test needs to mount a tmpfs (root); mount said: {why}"
                );
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes zeros into a file until the filesystem refuses more; returns the file, whose
    /// removal frees the space again.
    pub fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        // Then smaller writes, so no partial chunk of room is left.
        while file.write_all(&[0u8; 512]).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
