//! `lambdamesh lambda ...`: the local Lambda platform's server and its human CLI.
//!
//! `serve` runs the platform; the other subcommands are thin signed clients of its API (the same
//! wire calls boto3 makes), except `logs`, which reads the function's log file in the data dir.

mod python;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use clap::{Args, Subcommand};
use lambda_platform::{Credentials, PlatformConfig, client::Client, sigv4::uri_encode};
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum LambdaCommand {
    /// Run the local Lambda platform (Lambda API, Runtime/Extensions API, SSM, tagging, events).
    Serve(ServeArgs),
    /// Create a function from a directory (zipped on the fly) or a zip file.
    Create(CreateArgs),
    /// Invoke a function synchronously and print its response.
    Invoke(InvokeArgs),
    /// List functions.
    List(ConnArgs),
    /// Add tags (KEY=VALUE) to a function.
    Tag(TagArgs),
    /// Print a function's logs.
    Logs(LogsArgs),
    /// Delete a function.
    Rm(NameArgs),
    /// Package the Lambda extension as a layer zip (`extensions/lambdamesh-extension`), and
    /// publish it to the platform (or AWS) as a layer version.
    LayerExtension(LayerExtensionArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    addr: String,
    /// Directory for functions, code, parameters, rules and logs.
    #[arg(long, default_value = "lambda-data")]
    data_dir: PathBuf,
    /// The access key clients must sign with.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "test")]
    access_key: String,
    /// The secret key clients must sign with.
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        default_value = "test",
        hide_env_values = true
    )]
    secret_key: String,
    /// Region in ARNs and signatures.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Account id in ARNs.
    #[arg(long, default_value = "123456789012")]
    account: String,
    /// Python interpreter with awslambdaric installed [default: the project's venv when found
    /// (active venv, beside this program, .venv in a parent directory, the setup's cache), else
    /// python3].
    #[arg(long, env = "LAMBDAMESH_PYTHON")]
    python: Option<PathBuf>,
    /// Stop sandboxes idle this long (e.g. 5m, 30s).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Most sandboxes alive at once.
    #[arg(long, default_value_t = 64)]
    max_sandboxes: usize,
    /// Freeze sandboxes between invokes (SIGSTOP/SIGCONT), as Lambda does; `-freeze=false` to
    /// let them run (e.g. to attach a debugger).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    freeze: bool,
}

#[derive(Args, Debug)]
pub struct ConnArgs {
    /// Platform endpoint.
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:9001"
    )]
    endpoint: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "test")]
    access_key: String,
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        default_value = "test",
        hide_env_values = true
    )]
    secret_key: String,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Function name.
    name: String,
    /// Directory holding the code (zipped on the fly, modes kept).
    #[arg(long, conflicts_with = "zip")]
    dir: Option<PathBuf>,
    /// Zip file holding the code.
    #[arg(long)]
    zip: Option<PathBuf>,
    /// Runtime (python3.x, provided.al2023, provided.al2).
    #[arg(long, default_value = "python3.11")]
    runtime: String,
    /// Handler (module.function for Python).
    #[arg(long, default_value = "")]
    handler: String,
    /// Execution role ARN (recorded only).
    #[arg(long, default_value = "arn:aws:iam::123456789012:role/lambda")]
    role: String,
    /// Timeout in seconds.
    #[arg(long, default_value_t = 3)]
    timeout: u32,
    /// Memory in MB.
    #[arg(long, default_value_t = 128)]
    memory: u32,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env")]
    env: Vec<String>,
    /// Layer version ARN (repeatable).
    #[arg(long = "layer")]
    layers: Vec<String>,
    /// Tag KEY=VALUE (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct InvokeArgs {
    /// Function name or ARN (optionally :qualifier).
    name: String,
    /// JSON payload.
    #[arg(long, default_value = "{}")]
    payload: String,
    /// Also print the invoke's log tail to stderr.
    #[arg(long)]
    log: bool,
    /// Print the response bytes exactly as returned (no newline added at the end).
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    name: String,
    /// KEY=VALUE pairs.
    #[arg(required = true)]
    tags: Vec<String>,
    /// Account of the function's ARN.
    #[arg(long, default_value = "123456789012")]
    account: String,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    name: String,
    /// The platform's data dir.
    #[arg(long, default_value = "lambda-data")]
    data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct LayerExtensionArgs {
    /// The extension binary (default: `lambdamesh-extension` next to this executable).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Write the zip here (default `lambdamesh-extension.zip` when not publishing).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Publish the zip as a new version of this layer (PublishLayerVersion) and print it.
    #[arg(long)]
    publish: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    name: String,
    #[command(flatten)]
    conn: ConnArgs,
}

pub async fn run(cmd: LambdaCommand) -> anyhow::Result<u8> {
    match cmd {
        LambdaCommand::Serve(a) => serve(a).await,
        LambdaCommand::Create(a) => create(a).await,
        LambdaCommand::Invoke(a) => invoke(a).await,
        LambdaCommand::List(c) => list(c).await,
        LambdaCommand::Tag(a) => tag(a).await,
        LambdaCommand::Logs(a) => logs(a),
        LambdaCommand::LayerExtension(a) => layer_extension(a).await,
        LambdaCommand::Rm(a) => {
            let client = connect(&a.conn)?;
            client
                .lambda(
                    "DELETE",
                    &format!("/2015-03-31/functions/{}", uri_encode(&a.name, true)),
                    None,
                )
                .await?;
            Ok(0)
        }
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<u8> {
    let listener = tokio::net::TcpListener::bind(&a.addr)
        .await
        .with_context(|| format!("cannot listen on {}", a.addr))?;
    let mut config = PlatformConfig::new(a.data_dir);
    config.credentials = Credentials {
        access_key: a.access_key,
        secret_key: a.secret_key,
    };
    config.region = a.region;
    config.account = a.account;
    let (python, usable) = match a.python {
        Some(p) => (p, None),
        None => {
            let (p, ok) = python::find();
            (p, Some(ok))
        }
    };
    config.python = python;
    config.idle_timeout = a.idle_timeout;
    config.max_sandboxes = a.max_sandboxes;
    config.freeze = a.freeze;
    // Python functions need awslambdaric in this interpreter; say so now as well as in each
    // invoke's `Runtime.Unavailable` error (the platform checks before a cold start).
    let usable = match usable {
        Some(ok) => ok,
        None => tokio::process::Command::new(&config.python)
            .args(["-c", "import awslambdaric"])
            .output()
            .await
            .is_ok_and(|o| o.status.success()),
    };
    if usable {
        tracing::info!(python = %config.python.display(), "python runtimes use this interpreter");
    } else {
        tracing::warn!(python = %config.python.display(), "python runtimes unavailable: interpreter missing or without awslambdaric; pass -python PATH (or set LAMBDAMESH_PYTHON)");
    }
    tracing::info!(addr = %listener.local_addr()?, data_dir = %config.data_dir.display(), "lambda platform listening");
    lambda_platform::serve(listener, config, crate::signals::shutdown_signal()).await?;
    Ok(0)
}

fn connect(c: &ConnArgs) -> anyhow::Result<Client> {
    Ok(Client::new(
        &c.endpoint,
        Credentials {
            access_key: c.access_key.clone(),
            secret_key: c.secret_key.clone(),
        },
        &c.region,
    )?)
}

fn pairs(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    list.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .context(format!("expected KEY=VALUE, got {kv}"))
        })
        .collect()
}

async fn create(a: CreateArgs) -> anyhow::Result<u8> {
    let zip = match (&a.dir, &a.zip) {
        (Some(dir), None) => lambda_platform::code::zip_dir(dir)
            .with_context(|| format!("cannot zip {}", dir.display()))?,
        (None, Some(z)) => {
            std::fs::read(z).with_context(|| format!("cannot read {}", z.display()))?
        }
        _ => bail!("give exactly one of --dir or --zip"),
    };
    let mut body = json!({
        "FunctionName": a.name,
        "Runtime": a.runtime,
        "Handler": a.handler,
        "Role": a.role,
        "Timeout": a.timeout,
        "MemorySize": a.memory,
        "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
        "Environment": {"Variables": pairs(&a.env)?},
        "Tags": pairs(&a.tags)?,
    });
    if !a.layers.is_empty() {
        body["Layers"] = json!(a.layers);
    }
    let client = connect(&a.conn)?;
    let out = client
        .lambda("POST", "/2015-03-31/functions", Some(&body))
        .await?;
    print_json(&out)?;
    Ok(0)
}

async fn invoke(a: InvokeArgs) -> anyhow::Result<u8> {
    let client = connect(&a.conn)?;
    let mut headers = vec![("content-type", "application/json")];
    if a.log {
        headers.push(("x-amz-log-type", "Tail"));
    }
    let resp = client
        .invoke(&a.name, Bytes::from(a.payload), &headers)
        .await?;
    if resp.status >= 300 {
        // AWS names the exception in a header; show it as the AWS CLI does.
        let kind = resp.header("x-amzn-errortype").unwrap_or("error");
        bail!(
            "invoke failed ({} {kind}): {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
    }
    if let Some(tail) = resp.header("x-amz-log-result") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(tail)
            .unwrap_or_default();
        eprint!("{}", String::from_utf8_lossy(&bytes));
    }
    write_out(&with_final_newline(&resp.body, a.raw))?;
    Ok(if resp.header("x-amz-function-error").is_some() {
        1
    } else {
        0
    })
}

async fn list(c: ConnArgs) -> anyhow::Result<u8> {
    let client = connect(&c)?;
    let mut marker: Option<String> = None;
    loop {
        let path = match &marker {
            Some(m) => format!("/2015-03-31/functions/?Marker={}", uri_encode(m, true)),
            None => "/2015-03-31/functions/".to_owned(),
        };
        let page = client.lambda("GET", &path, None).await?;
        for f in page
            .get("Functions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let line = format!(
                "{}\t{}\t{}\n",
                f.get("FunctionName")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                f.get("Runtime").and_then(Value::as_str).unwrap_or_default(),
                f.get("LastModified")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
            write_out(line.as_bytes())?;
        }
        marker = page
            .get("NextMarker")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if marker.is_none() {
            return Ok(0);
        }
    }
}

async fn tag(a: TagArgs) -> anyhow::Result<u8> {
    let client = connect(&a.conn)?;
    let arn = if a.name.starts_with("arn:") {
        a.name.clone()
    } else {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            a.conn.region, a.account, a.name
        )
    };
    let body = json!({"Tags": pairs(&a.tags)?});
    client
        .lambda(
            "POST",
            &format!("/2017-03-31/tags/{}", uri_encode(&arn, true)),
            Some(&body),
        )
        .await?;
    Ok(0)
}

/// The layer's file name of the extension: Lambda runs `/opt/extensions/<name>`, and the
/// extension registers under the same name.
const EXTENSION_NAME: &str = "lambdamesh-extension";

async fn layer_extension(a: LayerExtensionArgs) -> anyhow::Result<u8> {
    let binary = match a.binary {
        Some(b) => b,
        None => std::env::current_exe()
            .context("cannot find this executable")?
            .with_file_name(EXTENSION_NAME),
    };
    let zip = layer_zip(&binary)?;
    let out = match (&a.out, &a.publish) {
        (Some(out), _) => Some(out.clone()),
        (None, None) => Some(PathBuf::from(format!("{EXTENSION_NAME}.zip"))),
        (None, Some(_)) => None,
    };
    if let Some(out) = &out {
        std::fs::write(out, &zip).with_context(|| format!("cannot write {}", out.display()))?;
        tracing::info!(zip = %out.display(), bytes = zip.len(), "layer zip written");
    }
    if let Some(layer) = &a.publish {
        let body = json!({
            "Description": format!("{EXTENSION_NAME} {}", env!("CARGO_PKG_VERSION")),
            "Content": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(&zip)},
            "CompatibleArchitectures": [host_architecture()],
            "LicenseInfo": "MPL-2.0",
        });
        let client = connect(&a.conn)?;
        let published = client
            .lambda(
                "POST",
                &format!("/2018-10-31/layers/{}/versions", uri_encode(layer, true)),
                Some(&body),
            )
            .await?;
        print_json(&published)?;
    }
    Ok(0)
}

/// A zip holding only `extensions/lambdamesh-extension`, executable.
pub(crate) fn layer_zip(binary: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(binary).with_context(|| {
        format!(
            "no extension binary at {} (build it with `cargo build -p lambdamesh-extension`, or pass --binary)",
            binary.display()
        )
    })?;
    if !meta.is_file() {
        bail!("{} is not a file", binary.display());
    }
    let staging = tempfile::tempdir()?;
    let dir = staging.path().join("extensions");
    std::fs::create_dir(&dir)?;
    let target = dir.join(EXTENSION_NAME);
    std::fs::copy(binary, &target).with_context(|| format!("cannot read {}", binary.display()))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
    lambda_platform::code::zip_dir(staging.path()).context("cannot zip the layer")
}

/// Lambda's name for this machine's architecture.
fn host_architecture() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x86_64"
    }
}

fn logs(a: LogsArgs) -> anyhow::Result<u8> {
    let path = a.data_dir.join("logs").join(format!("{}.log", a.name));
    let bytes = std::fs::read(&path).with_context(|| format!("no logs at {}", path.display()))?;
    write_out(&bytes)?;
    Ok(0)
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    write_out(s.as_bytes())
}

/// The response as printed: a line ends with a newline, so the shell prompt does not run into
/// the output (`-raw` keeps the bytes exact, e.g. for a binary payload).
fn with_final_newline(body: &[u8], raw: bool) -> std::borrow::Cow<'_, [u8]> {
    if raw || body.is_empty() || body.ends_with(b"\n") {
        std::borrow::Cow::Borrowed(body)
    } else {
        let mut v = body.to_vec();
        v.push(b'\n');
        std::borrow::Cow::Owned(v)
    }
}

fn write_out(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}
