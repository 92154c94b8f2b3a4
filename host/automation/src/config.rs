//! Pack configs on disk: each pack's `config.schema.yaml` and the operator's values file
//! `<configs>/<pack>.yaml`, read at every packs reload, validated ([`ConfigSchema`]) and kept
//! by the pack manager (`crate::packs::PackManager`).
//!
//! A pack gets a config when it has a values file (validated against its schema, or used as
//! it is without one) or a schema (its defaults, as StackStorm's config loader gives a pack
//! without a values file). A schema or values file that does not parse or validate is refused
//! with its message in the log and in the reload report, and the pack keeps the config it had.
//!
//! Values written as templates (`{{ st2kv.system.token }}`) stay templates here (the API shows
//! them so); [`resolve`] renders them against the datastore each time a config is used, as
//! StackStorm does, and [`context`] is the `config_context` of action parameters.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use stormhook_packs::{ConfigSchema, PackConfig};
use stormhook_rules::template::Renderer;

/// The schema file in a pack folder.
pub const SCHEMA_FILE: &str = "config.schema.yaml";
/// The largest schema or values file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A pack's config as loaded, and where its values came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The validated config (templates not rendered).
    pub config: Arc<PackConfig>,
    /// The values file, when the pack has one (a pack with only a schema has its defaults).
    pub values_file: Option<PathBuf>,
}

/// One pack's config as read: `Ok(None)` when the pack has neither schema nor values file.
type ReadConfig = Result<Option<LoadedConfig>, String>;

/// Reads and validates the config of every pack folder under `root` (values from
/// `configs_dir`), on the blocking pool, and merges the result with `previous`: a pack whose
/// files are refused keeps its previous config, and each refusal is logged and pushed to
/// `errors`.
pub(crate) async fn reload(
    root: &Path,
    configs_dir: Option<&Path>,
    previous: &BTreeMap<String, LoadedConfig>,
    errors: &mut Vec<String>,
) -> BTreeMap<String, LoadedConfig> {
    let (root, dir) = (root.to_owned(), configs_dir.map(Path::to_owned));
    let read = tokio::task::spawn_blocking(move || read_all(&root, dir.as_deref()))
        .await
        .unwrap_or_else(|e| {
            errors.push(format!("reading the pack configs failed: {e}"));
            Vec::new()
        });
    let mut configs = BTreeMap::new();
    for (pack, outcome) in read {
        match outcome {
            Ok(Some(loaded)) => {
                tracing::debug!(
                    pack,
                    keys = loaded.config.values.len(),
                    secrets = loaded.config.secret_keys.len(),
                    "pack config loaded"
                );
                configs.insert(pack, loaded);
            }
            Ok(None) => {}
            Err(message) => {
                let kept = previous.get(&pack);
                tracing::error!(
                    pack,
                    kept_previous = kept.is_some(),
                    "refused pack config: {message}"
                );
                errors.push(message);
                if let Some(kept) = kept {
                    configs.insert(pack, kept.clone());
                }
            }
        }
    }
    configs
}

/// The config of every pack folder under `root`, by pack name.
fn read_all(root: &Path, configs_dir: Option<&Path>) -> Vec<(String, ReadConfig)> {
    let mut packs: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| Some((e.file_name().to_str()?.to_owned(), e.path())))
                .filter(|(name, _)| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    packs.sort();
    if let Some(dir) = configs_dir {
        for file in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = file.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let is_yaml = path.extension().is_some_and(|e| e == "yaml");
            if is_yaml && !packs.iter().any(|(name, _)| name == stem) {
                tracing::warn!(
                    "{}: there is no pack {stem:?} in {}; this config is not used",
                    path.display(),
                    root.display()
                );
            }
        }
    }
    packs
        .into_iter()
        .map(|(pack, folder)| {
            let values = configs_dir.map(|dir| dir.join(format!("{pack}.yaml")));
            let read = read_pack(&pack, &folder.join(SCHEMA_FILE), values.as_deref());
            (pack, read)
        })
        .collect()
}

/// One pack's config from its schema file and values file (either may be absent).
fn read_pack(pack: &str, schema_file: &Path, values_file: Option<&Path>) -> ReadConfig {
    let schema_text = read_bounded(schema_file)?;
    let values_text = match values_file {
        Some(file) => read_bounded(file)?,
        None => None,
    };
    let schema = match &schema_text {
        Some(text) => ConfigSchema::parse(&schema_file.display().to_string(), text)
            .map_err(|e| e.to_string())?,
        None => ConfigSchema::default(),
    };
    Ok(match (values_text, values_file) {
        (Some(text), Some(file)) => Some(LoadedConfig {
            config: Arc::new(
                schema
                    .validate(pack, &file.display().to_string(), &text)
                    .map_err(|e| e.to_string())?,
            ),
            values_file: Some(file.to_owned()),
        }),
        _ if schema_text.is_some() => Some(LoadedConfig {
            config: Arc::new(schema.defaults()),
            values_file: None,
        }),
        _ => None,
    })
}

/// The text of `file`, `None` when it does not exist.
fn read_bounded(file: &Path) -> Result<Option<String>, String> {
    let shown = file.display();
    let opened = match std::fs::File::open(file) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{shown}: cannot read: {e}")),
    };
    let mut bytes = Vec::new();
    opened
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "{shown}: larger than {MAX_CONFIG_BYTES} bytes; not read"
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{shown}: not UTF-8 text"))
}

/// `config` with its template values rendered against the datastore (`st2kv`, as the
/// executor's templates see it: `{system: {name: value}}`).
///
/// # Errors
///
/// A value that does not render: StackStorm's message, naming the key and the pack (not the
/// value).
pub fn resolve(
    pack: &str,
    config: &PackConfig,
    st2kv: &Value,
    renderer: &Renderer,
) -> Result<PackConfig, String> {
    if !config.has_templates() {
        return Ok(config.clone());
    }
    let context = json!({ "st2kv": st2kv });
    config
        .resolve(|template| {
            // An empty rendering (a datastore key that does not exist renders as "") is `None`,
            // as in StackStorm's `config_loader._get_datastore_value_for_expression`.
            renderer
                .render(&Value::String(template.to_owned()), &context)
                .map(|v| if v == "" { Value::Null } else { v })
        })
        .map_err(|(key, reason)| {
            format!(
                "Failed to render dynamic configuration value for key \"{key}\" for pack \"{pack}\" config: {reason}"
            )
        })
}

/// `config_context` for the action parameters of pack `pack`: its config with templates
/// rendered, secrets in clear; `{}` for a pack without config. When a value does not render,
/// the failure is logged and the context is `{}` (as StackStorm's parameter rendering does), so
/// a parameter that uses it fails to render and names it.
pub fn context(
    config: Option<Arc<PackConfig>>,
    pack: &str,
    st2kv: &Value,
    renderer: &Renderer,
) -> Value {
    let Some(config) = config else {
        return Value::Object(Map::new());
    };
    match resolve(pack, &config, st2kv, renderer) {
        Ok(resolved) => Value::Object(resolved.values),
        Err(message) => {
            tracing::warn!(pack, "{message}");
            Value::Object(Map::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Folder(tempfile::TempDir);

    impl Folder {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("packs/t")).unwrap();
            std::fs::create_dir_all(dir.path().join("configs")).unwrap();
            Self(dir)
        }

        fn write(&self, rel: &str, text: &str) {
            std::fs::write(self.0.path().join(rel), text).unwrap();
        }

        async fn reload(
            &self,
            previous: &BTreeMap<String, LoadedConfig>,
        ) -> (BTreeMap<String, LoadedConfig>, Vec<String>) {
            let mut errors = Vec::new();
            let configs = reload(
                &self.0.path().join("packs"),
                Some(&self.0.path().join("configs")),
                previous,
                &mut errors,
            )
            .await;
            (configs, errors)
        }
    }

    #[tokio::test]
    async fn a_refused_config_keeps_the_previous_one_and_is_reported() {
        let folder = Folder::new();
        folder.write("packs/t/config.schema.yaml", "port: {type: integer}\n");
        folder.write("configs/t.yaml", "port: 1\n");
        let (good, errors) = folder.reload(&BTreeMap::new()).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(good["t"].config.values["port"], 1);

        folder.write("configs/t.yaml", "port: one\n");
        let (configs, errors) = folder.reload(&good).await;
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].ends_with(
                "configs/t.yaml:1:1: config key \"port\" must be of type integer, found string"
            ),
            "{errors:?}"
        );
        assert_eq!(
            configs["t"].config.values["port"], 1,
            "the previous config serves"
        );

        folder.write("configs/t.yaml", "port: [unclosed\n");
        let (configs, errors) = folder.reload(&BTreeMap::new()).await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(!configs.contains_key("t"), "nothing to keep: no config");
    }

    #[tokio::test]
    async fn schema_only_gives_defaults_and_values_only_are_used_as_they_are() {
        let folder = Folder::new();
        folder.write(
            "packs/t/config.schema.yaml",
            "channel: {type: string, default: ops}\n",
        );
        let (configs, errors) = folder.reload(&BTreeMap::new()).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(configs["t"].config.values["channel"], "ops");
        assert!(configs["t"].values_file.is_none());

        std::fs::remove_file(folder.0.path().join("packs/t/config.schema.yaml")).unwrap();
        folder.write("configs/t.yaml", "anything: [1, 2]\n");
        let (configs, _) = folder.reload(&BTreeMap::new()).await;
        assert_eq!(configs["t"].config.values["anything"], json!([1, 2]));
        assert!(configs["t"].values_file.is_some());

        std::fs::remove_file(folder.0.path().join("configs/t.yaml")).unwrap();
        let (configs, _) = folder.reload(&configs).await;
        assert!(configs.is_empty(), "no schema, no values: no config");
    }

    #[tokio::test]
    async fn an_oversized_values_file_is_refused() {
        let folder = Folder::new();
        folder.write(
            "configs/t.yaml",
            &format!("k: \"{}\"\n", "x".repeat(MAX_CONFIG_BYTES as usize)),
        );
        let (configs, errors) = folder.reload(&BTreeMap::new()).await;
        assert!(configs.is_empty());
        assert!(
            errors[0].ends_with("larger than 1048576 bytes; not read"),
            "{errors:?}"
        );
    }

    #[test]
    fn templates_render_against_the_datastore_and_failures_name_the_key() {
        let schema = ConfigSchema::parse("s", "token: {type: string, secret: true}\n").unwrap();
        let config = schema
            .validate("t", "c", "token: \"{{ st2kv.system.tok }}\"\nplain: x\n")
            .unwrap();
        let renderer = Renderer::new();
        let resolved = resolve(
            "t",
            &config,
            &json!({"system": {"tok": "s3cr3t"}}),
            &renderer,
        )
        .unwrap();
        assert_eq!(resolved.values["token"], "s3cr3t");
        assert_eq!(resolved.secret_values(), ["s3cr3t"]);
        // A key that does not exist renders as "", which StackStorm's config loader makes
        // `None` (it no longer fails: st2kv lookups are never undefined).
        let missing = resolve("t", &config, &json!({"system": {}}), &renderer).unwrap();
        assert_eq!(missing.values["token"], Value::Null);
        let config = schema
            .validate("t", "c", "token: \"{{ st2kv.system.tok | decrypt_kv }}\"\n")
            .unwrap();
        let err = resolve("t", &config, &json!({"system": {}}), &renderer).unwrap_err();
        assert!(
            err.starts_with(
                "Failed to render dynamic configuration value for key \"token\" for pack \"t\" config: "
            ),
            "{err}"
        );
    }
}
