//! Intentions: the flattened `/v1/connect/intentions` view of `service-intentions` entries,
//! Consul's precedence rules, matching and the allow/deny decision.

use crate::names::{ServiceName, WILDCARD};

/// Consul's intention precedence (reference §5.1): the destination's exactness sets the maximum
/// (9, 6, 3 for exact name, exact namespace only, all wildcard) and each non-exact source part
/// subtracts one.
pub fn precedence(source: &ServiceName, destination: &ServiceName) -> u32 {
    let max = match count_exact(destination) {
        2 => 9,
        1 => 6,
        _ => 3,
    };
    max - (2 - count_exact(source))
}

/// Exact parts of a name: `*/*` → 0, `ns/*` → 1, `ns/name` → 2. An exact name after a wildcard
/// namespace is invalid (refused by validation) and counts as 0.
fn count_exact(n: &ServiceName) -> u32 {
    if n.meta.namespace == WILDCARD {
        0
    } else if n.name == WILDCARD {
        1
    } else {
        2
    }
}
