//! Config-entry decoding and validation never panic, and every decoded entry survives
//! `to_json` → `decode_value` unchanged, and a valid Lambda marking is usable. Resolver-filter
//! syntax (bexpr) rides along.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_model::bexpr::{self, FieldValue, Lookup};
use mesh_model::config_entry::{self, ConfigEntrySet};

/// A fixed instance to evaluate parsed filters against.
struct Instance;

impl Lookup for Instance {
    fn lookup(&self, path: &[String]) -> Option<FieldValue> {
        match path
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["Service", "Meta", "version"] => Some(FieldValue::Str("v1".into())),
            ["Service", "Tags"] => Some(FieldValue::List(vec!["a".into()])),
            ["Service", "Port"] => Some(FieldValue::Number(8080.0)),
            _ => None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = config_entry::decode_json(data);
        return;
    };
    for decoded in [
        config_entry::decode_json(data),
        config_entry::decode_hcl_or_json(text),
    ] {
        let Ok(entry) = decoded else { continue };
        let valid = entry.validate().is_ok();
        let back = config_entry::decode_value(entry.to_json())
            .unwrap_or_else(|e| panic!("to_json output does not decode: {e}"));
        assert_eq!(back, entry, "round trip changed the entry");
        assert_eq!(back.validate().is_ok(), valid, "validation is not stable");
        // A valid Lambda marking is always one the xDS compiler can use: nothing that passes
        // the write-time checks is dropped silently at request time.
        if valid
            && let config_entry::ConfigEntry::ServiceDefaults(sd) = &entry
            && sd.is_lambda()
        {
            assert!(sd.lambda_target().is_some(), "valid Lambda marking unusable");
        }
        let set = ConfigEntrySet::default();
        if set.validate_upsert(&entry).is_ok() {
            let mut set = set;
            set.insert(entry.clone());
            let _ = set.validate_delete(&entry.key());
        }
    }
    if let Ok(expr) = bexpr::parse(text) {
        // `not` must flip the answer: catches precedence or negation slips in the evaluator.
        let negated = bexpr::Expr::Not(Box::new(expr.clone()));
        assert_ne!(
            bexpr::eval(&expr, &Instance),
            bexpr::eval(&negated, &Instance)
        );
    }
});
