//! ACL rules, policies, tokens and authorization decisions.
