//! `acl bootstrap`, `acl token create`, `acl policy create`, with Consul's flags and its
//! "pretty" output.

use std::io::Read;

use anyhow::{Context, bail};
use clap::Subcommand;

use consul_client::acl::{AclPolicy, AclPolicyLink, AclToken, NewToken};

use super::{HttpArgs, out};

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Bootstrap the ACL system and print the management token.
    Bootstrap {
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Create ACL tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create ACL policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token linked to policies (by -policy-name or -policy-id).
    Create {
        #[command(flatten)]
        http: HttpArgs,
        /// Name of a policy for the token (repeatable).
        #[arg(long = "policy-name")]
        policy_names: Vec<String>,
        /// ID of a policy for the token (repeatable).
        #[arg(long = "policy-id")]
        policy_ids: Vec<String>,
        /// A description of the token.
        #[arg(long, default_value = "")]
        description: String,
        /// Create the token with this AccessorID (a UUID).
        #[arg(long, default_value = "")]
        accessor: String,
        /// Create the token with this SecretID (a UUID).
        #[arg(long, default_value = "")]
        secret: String,
        /// A datacenter-local token.
        #[arg(long)]
        local: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Create a policy: -rules takes the rules, `@FILE` to read them from a file, `-` from stdin.
    Create {
        #[command(flatten)]
        http: HttpArgs,
        /// The policy's name.
        #[arg(long)]
        name: String,
        /// A description of the policy.
        #[arg(long, default_value = "")]
        description: String,
        /// Datacenter the policy is valid in (repeatable).
        #[arg(long = "valid-datacenter")]
        datacenters: Vec<String>,
        /// The rules (HCL or JSON), `@FILE` or `-`.
        #[arg(long, default_value = "")]
        rules: String,
    },
}

pub fn acl(cmd: AclCommand) -> anyhow::Result<u8> {
    match cmd {
        AclCommand::Bootstrap { http } => {
            let t = http
                .client()
                .acl_bootstrap()
                .context("Failed ACL bootstrapping")?;
            print_token(&t)?;
            Ok(0)
        }
        AclCommand::Token(TokenCommand::Create {
            http,
            policy_names,
            policy_ids,
            description,
            accessor,
            secret,
            local,
        }) => {
            if policy_names.is_empty() && policy_ids.is_empty() {
                bail!(
                    "Cannot create a token without specifying -policy-name or -policy-id at least once"
                );
            }
            let policies = policy_names
                .into_iter()
                .map(|name| AclPolicyLink {
                    id: String::new(),
                    name,
                })
                .chain(policy_ids.into_iter().map(|id| AclPolicyLink {
                    id,
                    name: String::new(),
                }))
                .collect();
            let token = NewToken {
                accessor_id: accessor,
                secret_id: secret,
                description,
                local,
                policies,
            };
            let t = http
                .client()
                .acl_token_create(&token)
                .context("Failed to create new token")?;
            print_token(&t)?;
            Ok(0)
        }
        AclCommand::Policy(PolicyCommand::Create {
            http,
            name,
            description,
            datacenters,
            rules,
        }) => {
            let rules = load_data_source(&rules).context("Error loading rules")?;
            let policy = AclPolicy {
                id: String::new(),
                name,
                description,
                datacenters,
                rules,
            };
            let p = http
                .client()
                .acl_policy_create(&policy)
                .context("Failed to create new policy")?;
            out(format!("ID:           {}", p.id))?;
            out(format!("Name:         {}", p.name))?;
            out(format!("Description:  {}", p.description))?;
            out(format!("Datacenters:  {}", p.datacenters.join(", ")))?;
            out("Rules:")?;
            out(p.rules.trim_end())?;
            Ok(0)
        }
    }
}

/// A token as Consul's "pretty" formatter prints it.
fn print_token(t: &AclToken) -> anyhow::Result<()> {
    out(format!("AccessorID:       {}", t.accessor_id))?;
    out(format!("SecretID:         {}", t.secret_id))?;
    out(format!("Description:      {}", t.description))?;
    out(format!("Local:            {}", t.local))?;
    out(format!("Create Time:      {}", t.create_time))?;
    if !t.policies.is_empty() {
        out("Policies:")?;
        for p in &t.policies {
            out(format!("   {} - {}", p.id, p.name))?;
        }
    }
    Ok(())
}

/// A flag value as Consul's CLI reads data: `@PATH` is the file's contents, `-` is stdin,
/// anything else is the value itself.
fn load_data_source(value: &str) -> anyhow::Result<String> {
    if let Some(path) = value.strip_prefix('@') {
        return std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"));
    }
    if value == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read stdin")?;
        return Ok(s);
    }
    Ok(value.to_owned())
}
