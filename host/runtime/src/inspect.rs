//! What a component declares, read before it is compiled.
//!
//! Compiling costs time and memory in proportion to what a component declares (a component
//! with 200,000 functions compiled for over 30 s before this check existed). Reading the
//! section headers of every core module inside it takes milliseconds, so the limits in
//! [`LoadLimits`] are checked here first, and a component past one is refused without being
//! compiled.

use wasmparser::{Parser, Payload};

use crate::config::LoadLimits;

/// Totals over every core module of a component (or of a core module).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Declared {
    /// Core modules.
    pub(crate) modules: u64,
    /// Functions defined (bodies), over all modules.
    pub(crate) functions: u64,
    /// Bytes of data sections.
    pub(crate) data_bytes: u64,
    /// Tables defined.
    pub(crate) tables: u64,
    /// Linear memories defined.
    pub(crate) memories: u64,
}

impl Declared {
    /// Reads the declarations of `bytes`.
    ///
    /// # Errors
    ///
    /// The bytes are not a well-formed WebAssembly binary.
    pub(crate) fn read(bytes: &[u8]) -> Result<Self, String> {
        let mut declared = Self::default();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(|e| e.to_string())? {
                Payload::Version {
                    encoding: wasmparser::Encoding::Module,
                    ..
                } => declared.modules += 1,
                Payload::FunctionSection(r) => declared.functions += u64::from(r.count()),
                Payload::TableSection(r) => declared.tables += u64::from(r.count()),
                Payload::MemorySection(r) => declared.memories += u64::from(r.count()),
                Payload::DataSection(r) => declared.data_bytes += r.range().len() as u64,
                _ => {}
            }
        }
        Ok(declared)
    }

    /// The first limit this exceeds, as a sentence.
    pub(crate) fn check(&self, limits: &LoadLimits) -> Result<(), String> {
        let checks = [
            (self.modules, limits.max_modules, "core modules"),
            (self.functions, limits.max_functions, "functions"),
            (
                self.data_bytes,
                limits.max_data_bytes,
                "bytes of data segments",
            ),
            (self.tables, limits.max_tables, "tables"),
            (self.memories, limits.max_memories, "memories"),
        ];
        for (found, limit, what) in checks {
            if found > limit {
                return Err(format!(
                    "declares {found} {what}, more than the limit of {limit}"
                ));
            }
        }
        Ok(())
    }
}
