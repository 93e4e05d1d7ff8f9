//! Function tags → desired services: never panics; enabled services are named after the
//! function and carry its ARN.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use registrator::{Config, tags::{Desired, Function, desired, function_name}};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Lines of `key=value`; the first line is the function name.
    let mut lines = text.lines();
    let name = lines.next().unwrap_or_default().to_owned();
    let _ = function_name(&name);
    let tags: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("serverless.consul.hashicorp.com/v1alpha1/lambda/{k}"), v.to_owned()))
        .collect();
    let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
    let f = Function { arn: arn.clone(), name: name.clone(), tags };
    let mut cfg = Config::from_vars(&BTreeMap::new()).unwrap_or_else(|_| unreachable!());
    for enterprise in [false, true] {
        cfg.enterprise = enterprise;
        cfg.partitions = vec!["default".into()];
        if let Ok(Desired::Enabled(services)) = desired(&f, &cfg) {
            for s in services {
                assert!(s.name.starts_with(&name));
                assert!(s.arn.starts_with(&arn));
            }
        }
    }
});
