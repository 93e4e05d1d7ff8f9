//! `intention create|check|get|list|match|delete`, with Consul's arguments, output and exit
//! codes (`check`: 0 allowed, 2 denied; `list`: 2 when there are none).

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use consul_client::ClientError;
use consul_client::connect::{Intention, MatchBy};

use super::{HttpArgs, out};
use crate::table::columns;

#[derive(Subcommand, Debug)]
pub enum IntentionCommand {
    /// Create an intention SRC => DST.
    Create {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long, conflicts_with = "deny")]
        allow: bool,
        #[arg(long)]
        deny: bool,
        /// Replace an existing intention between the same pair.
        #[arg(long)]
        replace: bool,
        #[arg(long)]
        description: Option<String>,
        source: String,
        destination: String,
    },
    /// Check whether SRC may connect to DST (exit 0 allowed, 2 denied).
    Check {
        #[command(flatten)]
        http: HttpArgs,
        source: String,
        destination: String,
    },
    /// Delete the intention SRC => DST.
    Delete {
        #[command(flatten)]
        http: HttpArgs,
        source: String,
        destination: String,
    },
    /// Show the intention SRC => DST (or the one with ID).
    Get {
        #[command(flatten)]
        http: HttpArgs,
        /// SRC DST, or the intention's ID.
        #[arg(num_args = 1..=2, required = true, value_names = ["SRC", "DST"])]
        names: Vec<String>,
    },
    /// List every intention with its ID and precedence.
    List {
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show the intentions that apply to a destination (or, with -source, a source), in the
    /// order they are evaluated.
    Match {
        #[command(flatten)]
        http: HttpArgs,
        /// Match intentions with NAME as their source.
        #[arg(long, conflicts_with = "destination")]
        source: bool,
        /// Match intentions with NAME as their destination (the default).
        #[arg(long)]
        destination: bool,
        name: String,
    },
}

pub fn intention(cmd: IntentionCommand) -> anyhow::Result<u8> {
    match cmd {
        IntentionCommand::Create {
            http,
            allow: _,
            deny,
            replace,
            description,
            source,
            destination,
        } => {
            let client = http.client();
            if !replace {
                match client.intention_exact(&source, &destination) {
                    Ok(_) => bail!(
                        "Error creating intention: an intention {source} => {destination} already exists; use -replace to overwrite it"
                    ),
                    Err(ClientError::Http { status: 404, .. }) => {}
                    Err(e) => return Err(e).context("Error checking for an existing intention"),
                }
            }
            let action = if deny { "deny" } else { "allow" };
            let mut body = json!({ "SourceType": "consul", "Action": action });
            if let Some(d) = description {
                body["Description"] = Value::from(d);
            }
            client
                .put_intention_exact(&source, &destination, &body)
                .context("Error creating intention")?;
            out(format!("Created: {source} => {destination} ({action})"))?;
            Ok(0)
        }
        IntentionCommand::Check {
            http,
            source,
            destination,
        } => {
            let allowed = http
                .client()
                .intention_check(&source, &destination)
                .context("Error checking the connection")?;
            if allowed {
                out("Allowed")?;
                Ok(0)
            } else {
                out("Denied")?;
                Ok(2)
            }
        }
        IntentionCommand::Delete {
            http,
            source,
            destination,
        } => {
            http.client()
                .delete_intention_exact(&source, &destination)
                .context("Error deleting intention")?;
            out("Intention deleted.")?;
            Ok(0)
        }
        IntentionCommand::Get { http, names } => {
            let client = http.client();
            let ixn = match names.as_slice() {
                [source, destination] => client
                    .intention_exact(source, destination)
                    .context("Error reading the intention")?,
                [id] => client
                    .intentions(&http.tenancy())
                    .context("Error reading the intention")?
                    .into_iter()
                    .find(|i| i.id == *id)
                    .with_context(|| {
                        format!("Error reading the intention: no intention has ID {id:?}")
                    })?,
                _ => bail!("command requires exactly 1 or 2 arguments"),
            };
            print_intention(&ixn)?;
            Ok(0)
        }
        IntentionCommand::List { http } => {
            let list = http
                .client()
                .intentions(&http.tenancy())
                .context("Failed to retrieve the intentions list")?;
            if list.is_empty() {
                eprintln!("There are no intentions.");
                return Ok(2);
            }
            let mut rows = vec![
                ["ID", "Source", "Action", "Destination", "Precedence"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            rows.extend(list.iter().map(|i| {
                vec![
                    i.id.clone(),
                    i.source_name.clone(),
                    i.action.clone(),
                    i.destination_name.clone(),
                    i.precedence.to_string(),
                ]
            }));
            out(columns(&rows))?;
            Ok(0)
        }
        IntentionCommand::Match {
            http,
            source,
            destination: _,
            name,
        } => {
            let by = if source {
                MatchBy::Source
            } else {
                MatchBy::Destination
            };
            let found = http
                .client()
                .intention_match(by, &name, &http.tenancy())
                .context("Error matching the connection")?;
            for i in found {
                out(i.summary())?;
            }
            Ok(0)
        }
    }
}

/// `intention get`'s layout: one `Label:  value` line each, then the L7 permissions as JSON.
fn print_intention(i: &Intention) -> anyhow::Result<()> {
    let mut rows = vec![
        vec!["Source:".to_owned(), i.source_string()],
        vec!["Destination:".to_owned(), i.destination_string()],
    ];
    let mut optional = |label: &str, v: &str| {
        if !v.is_empty() {
            rows.push(vec![label.to_owned(), v.to_owned()]);
        }
    };
    optional("Action:", &i.action);
    optional("ID:", &i.id);
    optional("Description:", &i.description);
    for (k, v) in &i.meta {
        rows.push(vec![format!("Meta[{k}]:"), v.clone()]);
    }
    if !i.created_at.is_empty() {
        rows.push(vec!["Created At:".to_owned(), i.created_at.clone()]);
    }
    out(columns(&rows))?;
    if !i.permissions.is_empty() {
        let json = serde_json::to_string_pretty(&i.permissions)
            .context("cannot format the permissions")?;
        out(format!("Permissions:\n{json}"))?;
    }
    Ok(())
}
