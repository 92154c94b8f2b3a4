//! Golden files for rule documents: every `rules/valid/*.yaml` parses to the summary in its
//! `.out` file; every `rules/invalid/*.yaml` fails with exactly the message in its `.err` file
//! (file, line, column, message). Add a case by adding a file. `BLESS=1 cargo test -p
//! stormhook-packs --test golden` rewrites the expectations; review the diff before committing.

use std::path::Path;

use stormhook_packs::RuleDoc;

fn summary(rule: &RuleDoc) -> String {
    let criteria: Vec<&String> = rule.criteria.keys().collect();
    format!(
        "ref: {}\nenabled: {}\ntrigger: {} {}\ncriteria: {criteria:?}\naction: {} {}\ntype: {}\nwasm: {}\n",
        rule.reference(),
        rule.enabled,
        rule.trigger.trigger_type,
        serde_json::Value::Object(rule.trigger.parameters.clone()),
        rule.action.reference,
        serde_json::Value::Object(rule.action.parameters.clone()),
        rule.rule_type
            .as_ref()
            .map_or_else(|| "standard".to_owned(), |t| t.to_string()),
        rule.wasm.as_ref().map_or_else(
            || "none".to_owned(),
            |w| format!(
                "{} timeout_ms={:?} memory_mb={:?}",
                w.entry_point, w.timeout_ms, w.memory_mb
            )
        ),
    )
}

fn check(dir: &str, extension: &str, produce: impl Fn(&str, &str) -> String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/rules")
        .join(dir);
    let bless = std::env::var_os("BLESS").is_some();
    let mut cases = 0;
    let mut paths: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let shown = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(&path).unwrap();
        let got = produce(&shown, &text);
        let expected_path = path.with_extension(extension);
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
        } else {
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
                panic!("missing {} (run with BLESS=1)", expected_path.display())
            });
            assert_eq!(got, expected, "{shown}");
        }
        cases += 1;
    }
    assert!(cases > 0, "no cases in {}", root.display());
}

#[test]
fn valid_rules_parse_to_their_summaries() {
    check("valid", "out", |shown, text| {
        match RuleDoc::parse(shown, text, "golden") {
            Ok(rule) => summary(&rule),
            Err(e) => panic!("{e}"),
        }
    });
}

#[test]
fn invalid_rules_fail_with_file_line_and_column() {
    check("invalid", "err", |shown, text| {
        match RuleDoc::parse(shown, text, "golden") {
            Ok(rule) => panic!("{shown} parsed: {rule:?}"),
            Err(e) => {
                assert!(
                    e.line.is_some() && e.column.is_some(),
                    "{shown}: {e} has no position"
                );
                format!("{e}\n")
            }
        }
    });
}
