//! Intentions → Envoy RBAC (reference §5.2). Intentions arrive sorted by precedence, highest
//! first; the first one whose source matches decides. RBAC has no order, so each intention's
//! principal is narrowed with `AND NOT (every higher intention's source)`: a connection covered
//! by a higher intention can never be decided by a lower one. With default deny the filter is an
//! ALLOW list of the allowing intentions; with default allow, a DENY list of the denying ones.
//! Intentions whose action equals the default add no policy (only their NOT terms matter).
//!
//! Where the rules live decides how fast a change reaches traffic. On HTTP listeners the RBAC
//! filter takes its rules over ECDS (`http_rbac_filter`): an intention change updates that
//! resource in place, the listener stays as it is, and every request that starts after Envoy
//! accepts the update (on connections old and new) is decided by the new rules. On TCP
//! listeners the network RBAC filter is inline in the filter chain on purpose: a change replaces
//! the chain, new connections get the new rules at once, and the connections of the old chain
//! are closed when Envoy's drain time ends (which the launcher bounds; `docs/xds.md`).

use mesh_model::config_entry::HeaderMatch;
use mesh_model::intentions::{Intention, IntentionAction, IntentionPermission};
use mesh_model::names::{DEFAULT, WILDCARD};

use crate::pb::{self, core, hcm, rbac};
use crate::resources::Resources;

/// The ECDS resource (and HTTP filter) name of the intentions of the service with SNI `sni`
/// (its subsets share it: intentions are per service).
pub fn http_rbac_name(sni: &str) -> String {
    format!("lambdamesh.intentions.{sni}")
}

/// The HTTP RBAC filter deciding by the rules of the ECDS resource `name`, which it adds to
/// `out`. Until Envoy has that resource the listener warms; if it never comes, the default
/// denies everything (an ALLOW list without policies): a missing rule set fails closed.
pub(crate) fn http_rbac_filter(
    name: &str,
    rules: rbac::Rbac,
    out: &mut Resources,
) -> hcm::HttpFilter {
    let deny_all = pb::http_rbac::Rbac {
        rules: Some(rbac::Rbac {
            action: rbac::rbac::Action::Allow as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let config = core::TypedExtensionConfig {
        name: name.to_owned(),
        typed_config: Some(pb::pack_any(pb::http_rbac::Rbac {
            rules: Some(rules),
            ..Default::default()
        })),
    };
    out.extension_configs
        .insert(name.to_owned(), pb::pack_any(config));
    hcm::HttpFilter {
        name: name.to_owned(),
        config_type: Some(hcm::http_filter::ConfigType::ConfigDiscovery(
            core::ExtensionConfigSource {
                config_source: Some(pb::ads_source()),
                default_config: Some(pb::pack_any(deny_all)),
                apply_default_config_without_warming: false,
                type_urls: vec![<pb::http_rbac::Rbac as prost::Name>::type_url()],
            },
        )),
        ..Default::default()
    }
}

/// The URI-SAN regex of a source (datacenter never checked, as Consul does).
pub fn source_regex(trust_domain: &str, i: &Intention) -> String {
    let part = |s: &str| {
        if s == WILDCARD {
            "[^/]+".to_owned()
        } else {
            regex::escape(s)
        }
    };
    let ap = if i.source.meta.partition == DEFAULT || i.source.meta.partition.is_empty() {
        String::new()
    } else {
        format!("/ap/{}", regex::escape(&i.source.meta.partition))
    };
    format!(
        "^spiffe://{}{ap}/ns/{}/dc/[^/]+/svc/{}$",
        regex::escape(trust_domain),
        part(&i.source.meta.namespace),
        part(&i.source.name)
    )
}

fn principal_for(trust_domain: &str, i: &Intention) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::Authenticated(
            rbac::principal::Authenticated {
                principal_name: Some(pb::regex_matcher(&source_regex(trust_domain, i))),
            },
        )),
    }
}

/// `match(i) AND NOT (match(higher_0) OR ...)`.
fn narrowed_principal(trust_domain: &str, i: &Intention, higher: &[&Intention]) -> rbac::Principal {
    let own = principal_for(trust_domain, i);
    if higher.is_empty() {
        return own;
    }
    let others = rbac::Principal {
        identifier: Some(rbac::principal::Identifier::OrIds(rbac::principal::Set {
            ids: higher
                .iter()
                .map(|h| principal_for(trust_domain, h))
                .collect(),
        })),
    };
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::AndIds(rbac::principal::Set {
            ids: vec![
                own,
                rbac::Principal {
                    identifier: Some(rbac::principal::Identifier::NotId(Box::new(others))),
                },
            ],
        })),
    }
}

fn any_permission() -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::Any(true)),
    }
}

pub(crate) fn header_matcher(h: &HeaderMatch) -> pb::route::HeaderMatcher {
    use pb::route::header_matcher::HeaderMatchSpecifier as S;
    let spec = if h.present {
        S::PresentMatch(true)
    } else if !h.exact.is_empty() {
        S::StringMatch(pb::exact_matcher(&h.exact))
    } else if !h.prefix.is_empty() {
        S::StringMatch(pb::matcher::StringMatcher {
            match_pattern: Some(pb::matcher::string_matcher::MatchPattern::Prefix(
                h.prefix.clone(),
            )),
            ignore_case: h.ignore_case,
        })
    } else if !h.suffix.is_empty() {
        S::StringMatch(pb::matcher::StringMatcher {
            match_pattern: Some(pb::matcher::string_matcher::MatchPattern::Suffix(
                h.suffix.clone(),
            )),
            ignore_case: h.ignore_case,
        })
    } else {
        S::StringMatch(pb::regex_matcher(&h.regex))
    };
    pb::route::HeaderMatcher {
        name: h.name.to_lowercase(),
        invert_match: h.invert,
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

/// One L7 permission's match as an RBAC permission (all conditions ANDed).
fn http_permission(p: &IntentionPermission) -> rbac::Permission {
    let Some(http) = &p.http else {
        return any_permission();
    };
    let mut rules = Vec::new();
    let path = if !http.path_exact.is_empty() {
        Some(pb::exact_matcher(&http.path_exact))
    } else if !http.path_prefix.is_empty() {
        Some(pb::matcher::StringMatcher {
            match_pattern: Some(pb::matcher::string_matcher::MatchPattern::Prefix(
                http.path_prefix.clone(),
            )),
            ..Default::default()
        })
    } else if !http.path_regex.is_empty() {
        Some(pb::regex_matcher(&http.path_regex))
    } else {
        None
    };
    if let Some(m) = path {
        rules.push(rbac::Permission {
            rule: Some(rbac::permission::Rule::UrlPath(pb::matcher::PathMatcher {
                rule: Some(pb::matcher::path_matcher::Rule::Path(m)),
            })),
        });
    }
    for h in &http.header {
        rules.push(rbac::Permission {
            rule: Some(rbac::permission::Rule::Header(header_matcher(h))),
        });
    }
    if !http.methods.is_empty() {
        let re = http
            .methods
            .iter()
            .map(|m| regex::escape(m))
            .collect::<Vec<_>>()
            .join("|");
        rules.push(rbac::Permission {
            rule: Some(rbac::permission::Rule::Header(pb::route::HeaderMatcher {
                name: ":method".into(),
                header_match_specifier: Some(
                    pb::route::header_matcher::HeaderMatchSpecifier::StringMatch(
                        pb::regex_matcher(&format!("^(?:{re})$")),
                    ),
                ),
                ..Default::default()
            })),
        });
    }
    match rules.len() {
        0 => any_permission(),
        1 => rules.remove(0),
        _ => rbac::Permission {
            rule: Some(rbac::permission::Rule::AndRules(rbac::permission::Set {
                rules,
            })),
        },
    }
}

fn and_not(p: rbac::Permission, earlier: Vec<rbac::Permission>) -> rbac::Permission {
    if earlier.is_empty() {
        return p;
    }
    let not = rbac::Permission {
        rule: Some(rbac::permission::Rule::NotRule(Box::new(
            rbac::Permission {
                rule: Some(rbac::permission::Rule::OrRules(rbac::permission::Set {
                    rules: earlier,
                })),
            },
        ))),
    };
    rbac::Permission {
        rule: Some(rbac::permission::Rule::AndRules(rbac::permission::Set {
            rules: vec![p, not],
        })),
    }
}

/// Compiles intentions (sorted, highest precedence first) into RBAC rules. `http` selects L7
/// handling; on a TCP listener an L7 intention counts as deny, as in Consul.
pub fn compile_rbac(
    intentions: &[Intention],
    default_allow: bool,
    trust_domain: &str,
    http: bool,
) -> rbac::Rbac {
    let policy_action = if default_allow {
        IntentionAction::Deny
    } else {
        IntentionAction::Allow
    };
    let mut policies = std::collections::HashMap::new();
    for (idx, i) in intentions.iter().enumerate() {
        let higher: Vec<&Intention> = intentions[..idx].iter().collect();
        let permissions: Vec<rbac::Permission> = if i.is_l7() {
            if !http {
                // L7 on a TCP listener: deny. Only contributes a policy under default allow.
                if policy_action == IntentionAction::Deny {
                    vec![any_permission()]
                } else {
                    vec![]
                }
            } else {
                let mut out = Vec::new();
                let mut earlier_opposite = Vec::new();
                for p in &i.permissions {
                    let action = p.action.unwrap_or(IntentionAction::Deny);
                    if action == policy_action {
                        out.push(and_not(http_permission(p), earlier_opposite.clone()));
                    } else {
                        earlier_opposite.push(http_permission(p));
                    }
                }
                out
            }
        } else if i.action == Some(policy_action) {
            vec![any_permission()]
        } else {
            vec![]
        };
        if permissions.is_empty() {
            continue;
        }
        let name = if i.is_l7() && http {
            format!("consul-intentions-layer7-{idx}")
        } else {
            format!("consul-intentions-layer4-{idx}")
        };
        policies.insert(
            name,
            rbac::Policy {
                permissions,
                principals: vec![narrowed_principal(trust_domain, i, &higher)],
                ..Default::default()
            },
        );
    }
    rbac::Rbac {
        action: if default_allow {
            rbac::rbac::Action::Deny as i32
        } else {
            rbac::rbac::Action::Allow as i32
        },
        policies,
        ..Default::default()
    }
}
