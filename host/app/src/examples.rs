//! The example packs (`examples/` in the repository), embedded in the binary with their built
//! components so that `stormhook serve` has something to serve on a fresh data directory.

use std::io;
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/examples.rs"));

/// Writes the example packs into `dest` (which must not hold them yet). Returns how many files
/// were written; zero when the binary was built without plugins.
///
/// # Errors
///
/// IO errors creating folders or writing files.
pub fn install(dest: &Path) -> io::Result<usize> {
    for (rel, bytes) in EXAMPLE_FILES {
        let path = dest.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
    }
    Ok(EXAMPLE_FILES.len())
}
