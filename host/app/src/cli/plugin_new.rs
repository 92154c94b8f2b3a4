//! `stormhook plugin new <pack>.<name> --kind action|rule`: writes a plugin crate that builds in
//! a folder of its own, outside this repository.
//!
//! The files come from `plugins/sdk/template/` (see its README for the mapping and the
//! placeholders), with the SDK's source and the WIT package vendored, all embedded in the
//! binary by its build script (`templates.rs`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

/// The embedded template files: (path relative to the folder named in each doc, contents).
mod templates {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

/// `stormhook plugin new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's reference, `<pack>.<name>` (letters, digits, `_` and `-` in each part; the
    /// name starts with a letter or `_`, as a crate name must).
    #[arg(value_name = "PACK.NAME")]
    pub reference: String,
    /// Which kind of plugin to write.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Where to write the crate (a folder that does not exist or is empty). Default: `./<name>`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// A plugin kind, as `--kind` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// An action: runs with JSON parameters, returns a JSON result.
    Action,
    /// A rule component: decides whether a trigger instance matches.
    Rule,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Action => "action",
            Self::Rule => "rule",
        })
    }
}

/// Names cargo or rustc refuse or confuse as a crate name: Rust keywords, the standard
/// crates, and the crates the template depends on.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "Self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "stormhook_sdk",
    "serde",
    "serde_json",
    "wit_bindgen",
    "wasip2",
];

/// The longest name accepted (crates.io's limit for a package name).
const MAX_NAME: usize = 64;

/// A validated `<pack>.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRef {
    /// The pack.
    pub pack: String,
    /// The action or rule name.
    pub name: String,
}

impl PluginRef {
    /// The crate name (and the `.wasm` file's stem): the name with `-` turned into `_`.
    pub fn crate_name(&self) -> String {
        self.name.replace('-', "_")
    }
}

/// Parses and checks `<pack>.<name>`.
///
/// # Errors
///
/// A message naming the part that is wrong and why.
pub fn parse_ref(reference: &str) -> Result<PluginRef, String> {
    let Some((pack, name)) = reference.split_once('.') else {
        return Err(format!(
            "invalid plugin reference {reference:?}: expected <pack>.<name>, for example mypack.notify"
        ));
    };
    check_part("pack", reference, pack)?;
    check_part("plugin", reference, name)?;
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err(format!(
            "invalid plugin name {name:?}: it must start with a letter or `_` (it is also the crate's name)"
        ));
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "invalid plugin name {name:?}: {} characters, at most {MAX_NAME} are allowed",
            name.len()
        ));
    }
    let crate_name = name.replace('-', "_");
    if crate_name.chars().all(|c| c == '_') || RESERVED.contains(&crate_name.as_str()) {
        return Err(format!(
            "invalid plugin name {name:?}: `{crate_name}` cannot be a crate's name (a Rust keyword or a crate the plugin depends on)"
        ));
    }
    Ok(PluginRef {
        pack: pack.to_owned(),
        name: name.to_owned(),
    })
}

/// Checks one part of a reference: not empty, only letters, digits, `_` and `-`.
fn check_part(what: &str, reference: &str, part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err(format!(
            "invalid plugin reference {reference:?}: the {what} name is empty"
        ));
    }
    match part
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        Some(c) => Err(format!(
            "invalid {what} name {part:?}: {c:?} is not allowed (use letters, digits, `_` and `-`)"
        )),
        None => Ok(()),
    }
}

/// The files of a new crate, as (path relative to its folder, contents), in writing order.
pub fn render(plugin: &PluginRef, kind: Kind) -> Vec<(String, String)> {
    let crate_name = plugin.crate_name();
    let kind_name = kind.to_string();
    let fill = |text: &str| {
        text.replace("@@pack@@", &plugin.pack)
            .replace("@@name@@", &plugin.name)
            .replace("@@crate@@", &crate_name)
            .replace("@@kind@@", &kind_name)
    };
    let own = match kind {
        Kind::Action => templates::ACTION,
        Kind::Rule => templates::RULE,
    };
    let mut files: Vec<(String, String)> = templates::COMMON
        .iter()
        .chain(own)
        .map(|(path, text)| ((*path).to_owned(), fill(text)))
        .collect();
    files.extend(
        templates::SDK
            .iter()
            .map(|(path, text)| (format!("vendor/stormhook-sdk/{path}"), (*text).to_owned())),
    );
    files.extend(
        templates::WIT
            .iter()
            .map(|(path, text)| (format!("wit/{path}"), (*text).to_owned())),
    );
    files
}

/// Runs `stormhook plugin new`.
///
/// # Errors
///
/// An invalid reference, a destination that exists and is not an empty folder, or a file
/// that cannot be written.
pub fn run(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let plugin = parse_ref(&args.reference).map_err(anyhow::Error::msg)?;
    let dest = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&plugin.name));
    check_dest(&dest)?;
    let files = render(&plugin, args.kind);
    for (rel, text) in &files {
        let path = dest.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the folder {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = format!(
        "Wrote the {} {}.{} into {}:\n",
        args.kind,
        plugin.pack,
        plugin.name,
        dest.display()
    );
    for (rel, _) in files.iter().filter(|(rel, _)| !rel.starts_with("vendor/")) {
        out.push_str(&format!("  {rel}\n"));
    }
    out.push_str("  vendor/stormhook-sdk/  (the SDK, vendored)\n");
    out.push_str(&next_steps(&plugin, args.kind, &dest));
    super::output::emit(&out);
    Ok(ExitCode::SUCCESS)
}

/// What to do after `plugin new`: build, try, install.
fn next_steps(plugin: &PluginRef, kind: Kind, dest: &Path) -> String {
    let crate_name = plugin.crate_name();
    let (pack, name) = (&plugin.pack, &plugin.name);
    let wasm = format!("target/wasm32-wasip2/release/{crate_name}.wasm");
    let (folder, doc) = match kind {
        Kind::Action => ("actions", "action.yaml"),
        Kind::Rule => ("rules", "rule.yaml"),
    };
    let dir = shell_word(&dest.display().to_string());
    let mut text = format!(
        "\nNext:\n  cd {dir} && cargo build --release\n  # -> {dir}/{wasm}\n  # (rustup adds the wasm32-wasip2 target on the first build: rust-toolchain.toml)\n"
    );
    if kind == Kind::Action {
        text.push_str(&format!(
            "  stormhook plugin run {wasm} --ref {pack}.{name} --params '{{\"name\": \"Ada\"}}'\n"
        ));
    }
    text.push_str(&format!(
        "Install it into a pack (the server loads it within a second):\n  mkdir -p <data-dir>/packs/{pack}/{folder}\n  cp {doc} <data-dir>/packs/{pack}/{folder}/{name}.yaml\n  cp {wasm} <data-dir>/packs/{pack}/{folder}/\n"
    ));
    text
}

/// `word` quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Refuses a destination that exists and is not an empty folder.
fn check_dest(dest: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dest.display())),
        Ok(meta) if !meta.is_dir() => anyhow::bail!(
            "{} exists and is not a folder; give another destination with --dir",
            dest.display()
        ),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dest)
                .with_context(|| format!("reading the folder {}", dest.display()))?;
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} exists and is not empty; give an empty or new folder with --dir",
                    dest.display()
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_checked_part_by_part() {
        let ok = parse_ref("my-pack.notify-ops").unwrap();
        assert_eq!(
            (ok.pack.as_str(), ok.name.as_str()),
            ("my-pack", "notify-ops")
        );
        assert_eq!(ok.crate_name(), "notify_ops");
        for (bad, message) in [
            ("notify", "expected <pack>.<name>"),
            (".notify", "the pack name is empty"),
            ("pack.", "the plugin name is empty"),
            ("pa/ck.x", "invalid pack name \"pa/ck\": '/' is not allowed"),
            (
                "pack.a.b",
                "invalid plugin name \"a.b\": '.' is not allowed",
            ),
            ("pack.9lives", "must start with a letter or `_`"),
            ("pack.fn", "`fn` cannot be a crate's name"),
            ("pack.serde-json", "`serde_json` cannot be a crate's name"),
            ("pack.__", "`__` cannot be a crate's name"),
        ] {
            let err = parse_ref(bad).unwrap_err();
            assert!(err.contains(message), "{bad}: {err}");
        }
        assert!(
            parse_ref(&format!("p.{}", "a".repeat(65)))
                .unwrap_err()
                .contains("at most 64")
        );
    }

    #[test]
    fn rendering_fills_the_placeholders_and_vendors_the_sdk_and_the_wit() {
        let plugin = parse_ref("mypack.notify-ops").unwrap();
        for kind in [Kind::Action, Kind::Rule] {
            let files = render(&plugin, kind);
            let get = |p: &str| {
                files
                    .iter()
                    .find(|(rel, _)| rel == p)
                    .map(|(_, t)| t.as_str())
                    .unwrap_or_else(|| panic!("{p} written"))
            };
            assert!(get("Cargo.toml").contains("name = \"notify_ops\""));
            assert!(get(".cargo/config.toml").contains("wasm32-wasip2"));
            get("rust-toolchain.toml");
            get(".gitignore");
            get("vendor/stormhook-sdk/Cargo.toml");
            get("vendor/stormhook-sdk/src/lib.rs");
            get("vendor/stormhook-sdk/README.md");
            assert!(get("wit/worlds.wit").contains("stormhook:plugin"));
            assert!(!files.iter().any(|(rel, _)| rel.starts_with("wit/frozen")));
            let doc = match kind {
                Kind::Action => get("action.yaml"),
                Kind::Rule => get("rule.yaml"),
            };
            assert!(
                doc.contains("pack: mypack") && doc.contains("notify_ops.wasm"),
                "{doc}"
            );
            for (rel, text) in &files {
                if !rel.starts_with("vendor/stormhook-sdk/src") && !rel.starts_with("wit/") {
                    assert!(!text.contains("@@"), "{rel} still has a placeholder");
                }
            }
        }
    }

    #[test]
    fn a_non_empty_destination_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        check_dest(&dir.path().join("new")).unwrap();
        check_dest(dir.path()).unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let err = check_dest(dir.path()).unwrap_err().to_string();
        assert!(err.contains("exists and is not empty"), "{err}");
        let err = check_dest(&dir.path().join("f")).unwrap_err().to_string();
        assert!(err.contains("exists and is not a folder"), "{err}");
    }
}
