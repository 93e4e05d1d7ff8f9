//! How each kind of part starts and when it is ready. Each returns a note for its progress line.

use std::{ffi::OsString, time::Duration};

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use topology::{GatewayKind, Health};

use super::{
    calls::function_arn,
    run::{PartError, Run, free_port, listening},
};

/// Parameter Store prefix of the functions' mTLS material (registrator and extension agree).
pub const EXTENSION_PREFIX: &str = "/lambdamesh";
/// The registrator's function name on the platform.
pub const REGISTRATOR: &str = "lambdamesh-registrator";
const EXTENSION_LAYER: &str = "lambdamesh-extension";

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `NAME_URL` for upstream `name` (the seed's variable names).
fn url_var(name: &str) -> String {
    format!(
        "{}_URL",
        name.to_ascii_uppercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

impl Run {
    fn aws_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_REGION".into(), super::calls::REGION.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            (
                "AWS_ENDPOINT_URL".into(),
                format!("http://{}", self.t.platform.addr),
            ),
            ("CONSUL_HTTP_ADDR".into(), self.t.server.http.to_string()),
        ]
    }

    pub(super) fn start_server(&mut self) -> Result<String, PartError> {
        let data = self.state.root.join("server");
        let mut argv = vec![self.bin.clone().into_os_string()];
        argv.extend(os(&["server", "-data-dir"]));
        argv.push(data.into_os_string());
        argv.extend(os(&[
            "-http-addr",
            &self.t.server.http.to_string(),
            "-grpc-addr",
            &self.t.server.grpc.to_string(),
            "-lambda-endpoint",
            &format!("http://{}", self.t.platform.addr),
        ]));
        let env = self.aws_env();
        let i = self.spawn("server", argv, &env)?;
        self.wait(Some(i), Duration::from_secs(30), "a leader", |r| {
            r.consul
                .call("GET", "/v1/status/leader", None)
                .is_ok_and(|(s, body)| s == 200 && body.trim().len() > 2)
        })?;
        let http = self.t.server.http.to_string();
        self.set_endpoint("http", format!("http://{http}"));
        Ok(format!("http://{http}"))
    }

    pub(super) fn start_platform(&mut self) -> Result<String, PartError> {
        let mut argv = vec![self.bin.clone().into_os_string()];
        argv.extend(os(&[
            "lambda",
            "serve",
            "-addr",
            &self.t.platform.addr.to_string(),
        ]));
        argv.push("-data-dir".into());
        argv.push(self.state.root.join("lambda").into_os_string());
        argv.push("-python".into());
        argv.push(self.python.clone().into_os_string());
        let env = self.aws_env();
        let i = self.spawn("platform", argv, &env)?;
        self.wait(
            Some(i),
            Duration::from_secs(30),
            "the Lambda API answers",
            |r| r.aws.reachable(),
        )?;
        let url = format!("http://{}", self.t.platform.addr);
        self.set_endpoint("lambda", url.clone());
        Ok(url)
    }

    /// Creates or updates a function (code zipped from a directory or read from a zip).
    fn put_function(
        &mut self,
        name: &str,
        config: Value,
        code: &std::path::Path,
        tags: &Value,
    ) -> anyhow::Result<()> {
        let zip = if code.is_dir() {
            lambda_platform::code::zip_dir(code)
                .with_context(|| format!("cannot zip {}", code.display()))?
        } else {
            std::fs::read(code).with_context(|| format!("cannot read {}", code.display()))?
        };
        use base64::Engine as _;
        let zip = base64::engine::general_purpose::STANDARD.encode(zip);
        let path = format!("/2015-03-31/functions/{name}");
        let exists = self.aws.lambda_answer("GET", &path, None).is_ok();
        if exists {
            // The platform keeps functions across runs: bring this one up to the file.
            self.aws.lambda(
                "PUT",
                &format!("{path}/code"),
                Some(&json!({"ZipFile": zip})),
            )?;
            self.wait_active(name)?;
            self.aws
                .lambda("PUT", &format!("{path}/configuration"), Some(&config))?;
            self.sync_tags(name, tags)?;
        } else {
            let mut body = config;
            body["FunctionName"] = json!(name);
            body["Code"] = json!({"ZipFile": zip});
            body["Tags"] = tags.clone();
            self.aws
                .lambda("POST", "/2015-03-31/functions", Some(&body))?;
        }
        self.wait_active(name)
    }

    /// Makes an existing function's tags exactly the file's: the registrator reads them, so a
    /// tag removed from the file (say, `lambda/enabled`) must go from the function too.
    fn sync_tags(&mut self, name: &str, tags: &Value) -> anyhow::Result<()> {
        let path = format!(
            "/2017-03-31/tags/{}",
            function_arn(name).replace(':', "%3A")
        );
        let wanted = tags.as_object().cloned().unwrap_or_default();
        let current = self.aws.lambda("GET", &path, None)?;
        let stale: Vec<String> = current["Tags"]
            .as_object()
            .map(|t| {
                t.keys()
                    .filter(|k| !wanted.contains_key(*k))
                    .map(|k| format!("tagKeys={}", query_escape(k)))
                    .collect()
            })
            .unwrap_or_default();
        if !stale.is_empty() {
            self.aws
                .lambda("DELETE", &format!("{path}?{}", stale.join("&")), None)?;
        }
        if !wanted.is_empty() {
            self.aws
                .lambda("POST", &path, Some(&json!({"Tags": wanted})))?;
        }
        Ok(())
    }

    fn wait_active(&self, name: &str) -> anyhow::Result<()> {
        let path = format!("/2015-03-31/functions/{name}/configuration");
        for _ in 0..600 {
            let c = self.aws.lambda("GET", &path, None)?;
            let updating = c["LastUpdateStatus"] == "InProgress";
            if c["State"] == "Active" && !updating {
                return Ok(());
            }
            if c["State"] == "Failed" {
                return Err(anyhow!("function {name} failed: {}", c["StateReason"]));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(anyhow!("function {name} did not become Active"))
    }

    pub(super) fn start_registrator(&mut self) -> Result<String, PartError> {
        let Some(reg) = self.t.registrator.clone() else {
            return Ok(String::new());
        };
        // The deployment package: a bootstrap that execs this binary in Lambda mode.
        let pkg = self.state.root.join("registrator");
        std::fs::create_dir_all(&pkg).map_err(anyhow::Error::from)?;
        let bootstrap = pkg.join("bootstrap");
        std::fs::write(
            &bootstrap,
            format!(
                "#!/bin/sh\nexec '{}' registrator lambda\n",
                self.bin.display()
            ),
        )
        .map_err(anyhow::Error::from)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755))
            .map_err(anyhow::Error::from)?;
        let mut vars = json!({
            "CONSUL_HTTP_ADDR": self.t.server.http.to_string(),
            "NODE_NAME": reg.node,
        });
        if self.t.functions.iter().any(|f| f.extension.is_some()) {
            vars["CONSUL_EXTENSION_DATA_PREFIX"] = json!(EXTENSION_PREFIX);
        }
        let config = json!({
            "Runtime": "provided.al2023",
            "Handler": "bootstrap",
            "Role": format!("arn:aws:iam::{}:role/lambdamesh-registrator", super::calls::ACCOUNT),
            "Timeout": 120,
            "MemorySize": 128,
            "Environment": {"Variables": vars},
        });
        self.put_function(REGISTRATOR, config, &pkg, &json!({}))?;
        // Triggers, as the Terraform module deploys them: CloudTrail-shaped Lambda API calls
        // and a schedule.
        let arn = function_arn(REGISTRATOR);
        let rules = [
            (
                "lambdamesh-registrator-events",
                json!({"Name": "lambdamesh-registrator-events", "EventPattern": json!({
                    "source": ["aws.lambda"], "detail-type": ["AWS API Call via CloudTrail"],
                    "detail": {"eventSource": ["lambda.amazonaws.com"]}}).to_string()}),
            ),
            (
                "lambdamesh-registrator-schedule",
                json!({"Name": "lambdamesh-registrator-schedule", "ScheduleExpression": reg.schedule}),
            ),
        ];
        for (name, rule) in rules {
            self.aws.target("events", "AWSEvents.PutRule", &rule)?;
            self.aws.target(
                "events",
                "AWSEvents.PutTargets",
                &json!({"Rule": name, "Targets": [{"Id": "registrator", "Arn": arn}]}),
            )?;
        }
        // One full sync now: proves it reaches Consul, and catches up with functions kept
        // from an earlier run.
        let (failed, answer) = self.aws.invoke(
            REGISTRATOR,
            &json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
        )?;
        if failed {
            return Err(PartError::Failed {
                message: format!("its first full sync failed: {answer}"),
                log: Some(
                    self.state
                        .root
                        .join("lambda/logs")
                        .join(format!("{REGISTRATOR}.log")),
                ),
            });
        }
        Ok(reg.schedule)
    }

    pub(super) fn start_service(&mut self, i: usize) -> Result<String, PartError> {
        let s = self.t.services[i].clone();
        if s.command.is_empty() {
            return Ok("runs elsewhere: registered only".into());
        }
        let program = topology::probe::find_program(&self.t.base, &s.command[0])
            .ok_or_else(|| anyhow!("command {:?} not found", s.command[0]))?;
        let mut argv = vec![program.into_os_string()];
        argv.extend(s.command[1..].iter().map(OsString::from));
        let mut env = vec![
            ("PORT".to_owned(), s.port.to_string()),
            ("SERVICE_NAME".to_owned(), s.name.clone()),
            (
                "CONSUL_HTTP_ADDR".to_owned(),
                self.t.server.http.to_string(),
            ),
        ];
        for u in s.sidecar.iter().flat_map(|sc| &sc.upstreams) {
            env.push((url_var(&u.name), format!("http://127.0.0.1:{}", u.port)));
        }
        env.extend(s.env.clone());
        let name = format!("service {}", s.name);
        let idx = self.spawn(&name, argv, &env)?;
        let port = s.port;
        match &s.health {
            Health::Tcp => self.wait(
                Some(idx),
                Duration::from_secs(30),
                "its port accepts",
                move |_| listening(port),
            )?,
            Health::Http(path) => {
                let url = format!("http://127.0.0.1:{port}{path}");
                let agent = ureq::Agent::new_with_config(
                    ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_secs(2)))
                        .build(),
                );
                self.wait(
                    Some(idx),
                    Duration::from_secs(30),
                    &format!("GET {url} answers 2xx"),
                    move |_| agent.get(&url).call().is_ok(),
                )?;
            }
        }
        self.set_endpoint(&s.name, format!("http://127.0.0.1:{port}"));
        Ok(format!("127.0.0.1:{port}"))
    }

    /// Runs `connect envoy ...` and waits for Envoy's `/ready` and its listeners.
    fn start_envoy(
        &mut self,
        part: &str,
        args: Vec<String>,
        metrics: u16,
        mut ports: Vec<u16>,
    ) -> Result<(), PartError> {
        ports.push(metrics);
        let admin = free_port()?;
        let mut argv = vec![self.bin.clone().into_os_string()];
        argv.extend(os(&["connect", "envoy"]));
        argv.extend(args.iter().map(OsString::from));
        argv.extend(os(&[
            "-admin-bind",
            &format!("127.0.0.1:{admin}"),
            "-grpc-addr",
            &self.t.server.grpc.to_string(),
            "--",
            "-l",
            "warning",
        ]));
        let mut env = self.aws_env();
        env.push(("ENVOY_BIN".into(), super::envoy_bin(&self.t.base)));
        let idx = self.spawn(part, argv, &env)?;
        // Envoy's admin API: its config dump and stats are how a user sees what it was given.
        self.set_endpoint(
            &format!("{part} admin"),
            format!("http://127.0.0.1:{admin}"),
        );
        // Consul's metrics listener (`envoy_prometheus_bind_addr`): what `migrate` scrapes.
        self.set_endpoint(
            &format!("{part} metrics"),
            format!(
                "http://127.0.0.1:{metrics}{}",
                xds::bootstrap::PROMETHEUS_PATH
            ),
        );
        let ready = format!("http://127.0.0.1:{admin}/ready");
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(2)))
                .build(),
        );
        self.wait(
            Some(idx),
            Duration::from_secs(60),
            "Envoy is ready with its listeners",
            move |_| agent.get(&ready).call().is_ok() && ports.iter().all(|p| listening(*p)),
        )
    }

    pub(super) fn start_sidecar(&mut self, i: usize) -> Result<String, PartError> {
        let s = self.t.services[i].clone();
        let Some(sc) = &s.sidecar else {
            return Ok(String::new());
        };
        if let Some(protocol) = &s.protocol {
            self.consul.must(
                "PUT",
                "/v1/config",
                Some(&json!({"Kind": "service-defaults", "Name": s.name, "Protocol": protocol})),
            )?;
        }
        let port = match self.sidecar_ports[i] {
            Some(p) => p,
            None => free_port()?,
        };
        self.sidecar_ports[i] = Some(port);
        let upstreams: Vec<Value> = sc
            .upstreams
            .iter()
            .map(|u| json!({"DestinationName": u.name, "LocalBindPort": u.port}))
            .collect();
        let metrics = free_port()?;
        let reg = json!({
            "Name": s.name, "ID": s.name, "Port": s.port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": port, "Proxy": {
                "Upstreams": upstreams,
                "Config": {"envoy_prometheus_bind_addr": format!("127.0.0.1:{metrics}")},
            }}},
        });
        self.consul.must(
            "PUT",
            "/v1/agent/service/register?replace-existing-checks=true",
            Some(&reg),
        )?;
        for u in &sc.upstreams {
            self.set_endpoint(
                &format!("{} → {}", s.name, u.name),
                format!("http://127.0.0.1:{}", u.port),
            );
        }
        let mut ports = vec![port];
        ports.extend(sc.upstreams.iter().map(|u| u.port));
        self.start_envoy(
            &format!("sidecar {}", s.name),
            vec!["-sidecar-for".into(), s.name.clone()],
            metrics,
            ports,
        )?;
        Ok(format!("mTLS on 127.0.0.1:{port}"))
    }

    pub(super) fn start_gateway(&mut self, i: usize) -> Result<String, PartError> {
        let g = self.t.gateways[i].clone();
        // Registered here rather than with `connect envoy -register`, which has no way to set
        // the proxy's `Config`: the metrics listener's address goes there.
        let metrics = free_port()?;
        let kind = match g.kind {
            GatewayKind::Mesh => "mesh-gateway",
            GatewayKind::Terminating => "terminating-gateway",
        };
        self.consul.must(
            "PUT",
            "/v1/agent/service/register",
            Some(&json!({
                "Kind": kind, "ID": g.name, "Name": g.name,
                "Address": "127.0.0.1", "Port": g.port,
                "Proxy": {"Config": {"envoy_prometheus_bind_addr": format!("127.0.0.1:{metrics}")}},
            })),
        )?;
        self.start_envoy(
            &format!("gateway {}", g.name),
            vec![
                "-gateway".into(),
                g.kind.as_str().into(),
                "-service".into(),
                g.name.clone(),
            ],
            metrics,
            // A terminating gateway has no listener until a service is linked to it (the
            // config entries come last): only Envoy's readiness counts for it.
            if g.kind == GatewayKind::Mesh {
                vec![g.port]
            } else {
                vec![]
            },
        )?;
        if g.kind == GatewayKind::Mesh {
            self.set_endpoint("mesh_gateway", format!("127.0.0.1:{}", g.port));
        }
        Ok(format!("{} on 127.0.0.1:{}", g.kind.as_str(), g.port))
    }

    /// The extension layer, published once per run (a new version each run, as a rebuild
    /// would on AWS).
    fn extension_layer(&mut self) -> Result<String, PartError> {
        if let Some(arn) = self.record["extension_layer"].as_str() {
            return Ok(arn.to_owned());
        }
        let binary = self.bin.with_file_name("lambdamesh-extension");
        if !binary.exists() {
            return Err(anyhow!(
                "no extension binary at {} (build it: cargo build -p lambdamesh-extension)",
                binary.display()
            )
            .into());
        }
        // A debug build carries MBs of debug info a layer does not need.
        let copy = self.state.root.join("lambdamesh-extension");
        std::fs::copy(&binary, &copy).map_err(anyhow::Error::from)?;
        let _ = std::process::Command::new("strip")
            .arg("--strip-debug")
            .arg(&copy)
            .status();
        let zip = crate::lambda::layer_zip(&copy)?;
        use base64::Engine as _;
        let published = self.aws.lambda(
            "POST",
            &format!("/2018-10-31/layers/{EXTENSION_LAYER}/versions"),
            Some(&json!({"Content": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
                "Description": "lambdamesh-extension (lambdamesh up)"})),
        )?;
        let arn = published["LayerVersionArn"]
            .as_str()
            .ok_or_else(|| anyhow!("PublishLayerVersion answered no LayerVersionArn"))?
            .to_owned();
        self.record["extension_layer"] = json!(arn);
        Ok(arn)
    }

    pub(super) fn start_function(&mut self, i: usize) -> Result<String, PartError> {
        let f = self.t.functions[i].clone();
        let mut vars = serde_json::Map::new();
        let mut layers = f.layers.clone();
        if let Some(ext) = &f.extension {
            layers.push(self.extension_layer()?);
            let gateway = self
                .t
                .gateways
                .iter()
                .find(|g| g.kind == GatewayKind::Mesh)
                .map(|g| g.port)
                .ok_or_else(|| anyhow!("no mesh gateway"))?;
            vars.insert(
                "CONSUL_MESH_GATEWAY_URI".into(),
                json!(format!("127.0.0.1:{gateway}")),
            );
            vars.insert(
                "CONSUL_EXTENSION_DATA_PREFIX".into(),
                json!(EXTENSION_PREFIX),
            );
            let ups: Vec<String> = ext
                .upstreams
                .iter()
                .map(|u| format!("{}:{}", u.name, u.port))
                .collect();
            vars.insert("CONSUL_SERVICE_UPSTREAMS".into(), json!(ups.join(",")));
            for u in &ext.upstreams {
                vars.insert(
                    url_var(&u.name),
                    json!(format!("http://localhost:{}", u.port)),
                );
            }
        }
        for (k, v) in &f.environment {
            vars.insert(k.clone(), json!(v));
        }
        let config = json!({
            "Runtime": f.runtime, "Handler": f.handler,
            "Role": format!("arn:aws:iam::{}:role/lambda", super::calls::ACCOUNT),
            "Timeout": f.timeout.unwrap_or(3), "MemorySize": f.memory.unwrap_or(128),
            "Environment": {"Variables": vars}, "Layers": layers,
        });
        let tags = json!(f.tags);
        self.put_function(&f.name, config, &f.code, &tags)?;
        if !f.mesh_enabled() {
            return Ok("not in the mesh".into());
        }
        // The registrator takes it from the CreateFunction event; wait for its writes.
        let name = f.name.clone();
        let ext = f.extension.is_some();
        let param = format!("{EXTENSION_PREFIX}/default/default/{name}");
        let log = self
            .state
            .root
            .join("lambda/logs")
            .join(format!("{REGISTRATOR}.log"));
        self.wait(
            None,
            Duration::from_secs(60),
            "the registrator registers it",
            |r| {
                let registered = r
                    .consul
                    .get_json(&format!("/v1/catalog/service/{name}"))
                    .is_some_and(|v| v.to_string().contains("managed-by-lambda-registrator"));
                let defaults = r
                    .consul
                    .call("GET", &format!("/v1/config/service-defaults/{name}"), None)
                    .is_ok_and(|(s, _)| s == 200);
                let material = !ext
                    || r.aws
                        .target("ssm", "AmazonSSM.GetParameter", &json!({"Name": param}))
                        .is_ok();
                registered && defaults && material
            },
        )
        .map_err(|e| match e {
            PartError::Failed { message, .. } => PartError::Failed {
                message,
                log: Some(log),
            },
            e => e,
        })?;
        Ok(if ext {
            "registered, with mTLS material".into()
        } else {
            "registered".into()
        })
    }

    pub(super) fn write_config_entries(&mut self) -> Result<String, PartError> {
        let entries = self.t.config_entries.clone();
        for e in &entries {
            self.consul
                .must("PUT", "/v1/config", Some(&e.json))
                .map_err(|err| anyhow!("{}: {err:#}", e.label))?;
        }
        Ok(entries
            .iter()
            .map(|e| e.label.as_str())
            .collect::<Vec<_>>()
            .join(", "))
    }

    pub(super) fn write_intentions(&mut self) -> Result<String, PartError> {
        let intentions = self.t.intentions.clone();
        for i in &intentions {
            let path = format!(
                "/v1/connect/intentions/exact?source={}&destination={}",
                i.source, i.destination
            );
            let action = if i.allow { "allow" } else { "deny" };
            self.consul
                .must("PUT", &path, Some(&json!({"Action": action})))
                .map_err(|e| anyhow!("{} → {}: {e:#}", i.source, i.destination))?;
        }
        Ok(format!("{} written", intentions.len()))
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay as they are).
fn query_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
