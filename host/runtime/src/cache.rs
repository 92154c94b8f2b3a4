//! Eviction of the compile cache (`<cache>/wasmtime-<engine hash>/<sha256>.cwasm`).

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Temporary files older than this are leftovers of a crash during a write.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);
/// Another engine's folder unused for this long belongs to a version no longer run. (Younger
/// ones may belong to another process sharing the folder, such as a second build's tests.)
const STALE_ENGINE: Duration = Duration::from_secs(24 * 3600);

/// What one eviction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evicted {
    /// Files and folders removed.
    pub(crate) removed: u64,
    /// Bytes they held.
    pub(crate) freed_bytes: u64,
    /// Bytes of entries kept in this engine's folder.
    pub(crate) kept_bytes: u64,
}

/// Trims the cache: `dir` is this engine's folder. Other engines' folders next to it that
/// have not been used for a day are removed whole (this engine cannot use their code),
/// temporary files older than an hour are removed, then the least recently modified entries (loads touch the entries they use) not
/// named in `in_use` are removed until the folder holds at most `max_bytes`.
pub(crate) fn evict(dir: &Path, max_bytes: u64, in_use: &HashSet<String>) -> Evicted {
    let mut evicted = Evicted::default();
    let now = SystemTime::now();
    if let Some(root) = dir.parent() {
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let is_engine_dir = name.to_str().is_some_and(|n| n.starts_with("wasmtime-"));
            let idle = now
                .duration_since(last_used(&path))
                .is_ok_and(|idle| idle > STALE_ENGINE);
            if is_engine_dir && path != dir && path.is_dir() && idle {
                let bytes = folder_bytes(&path);
                if std::fs::remove_dir_all(&path).is_ok() {
                    evicted.removed += 1;
                    evicted.freed_bytes += bytes;
                }
            }
        }
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let modified = meta.modified().unwrap_or(now);
        if name.ends_with(".tmp") {
            let stale = now
                .duration_since(modified)
                .is_ok_and(|age| age > STALE_TEMPORARY);
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                evicted.removed += 1;
                evicted.freed_bytes += meta.len();
            }
            continue;
        }
        if name.ends_with(".cwasm") {
            entries.push((modified, meta.len(), name, entry.path()));
        }
    }
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    entries.sort();
    for (_, bytes, name, path) in entries {
        if total <= max_bytes {
            break;
        }
        if in_use.contains(&name) {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= bytes;
            evicted.removed += 1;
            evicted.freed_bytes += bytes;
        }
    }
    evicted.kept_bytes = total;
    evicted
}

/// The latest modification time of a folder and of the files in it.
fn last_used(dir: &Path) -> SystemTime {
    let own = std::fs::metadata(dir).and_then(|m| m.modified());
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .chain(own.ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: usize, age_secs: u64) {
        let path = dir.join(name);
        std::fs::write(&path, vec![0u8; bytes]).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
            .unwrap();
    }

    #[test]
    fn oldest_unused_entries_go_first_and_entries_in_use_stay() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("wasmtime-0000000000000001");
        let other = root.path().join("wasmtime-00000000000000ff");
        let recent = root.path().join("wasmtime-00000000000000fe");
        for d in [&dir, &other, &recent] {
            std::fs::create_dir_all(d).unwrap();
        }
        write(&other, "x.cwasm", 10, 2 * 24 * 3600);
        std::fs::File::open(&other)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(2 * 24 * 3600))
            .unwrap();
        write(&recent, "y.cwasm", 10, 60);
        write(&dir, "old-in-use.cwasm", 100, 500);
        write(&dir, "old.cwasm", 100, 400);
        write(&dir, "middle.cwasm", 100, 300);
        write(&dir, "new.cwasm", 100, 1);
        write(&dir, ".1.2.tmp", 5, 7200);
        write(&dir, ".1.3.tmp", 5, 1);
        let in_use = HashSet::from(["old-in-use.cwasm".to_owned()]);
        let evicted = evict(&dir, 250, &in_use);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // 400 bytes over a 250 limit: `old` and `middle` go (the oldest not in use); the
        // entry in use stays although it is the oldest; the fresh temporary file stays.
        assert_eq!(left, [".1.3.tmp", "new.cwasm", "old-in-use.cwasm"]);
        assert!(!other.exists(), "another engine's idle folder is removed");
        assert!(recent.exists(), "another engine's folder in use is kept");
        assert_eq!(evicted.kept_bytes, 200);
        assert_eq!(evicted.removed, 4);
    }
}
