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
    fn aws_env(&self, dc: usize) -> Vec<(String, String)> {
        let d = self.dc(dc);
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_REGION".into(), d.platform.region.clone()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            (
                "AWS_ENDPOINT_URL".into(),
                format!("http://{}", d.platform.addr),
            ),
            ("CONSUL_HTTP_ADDR".into(), d.server.http.to_string()),
        ]
    }

    /// Where a datacenter's platform keeps its functions, with their logs in `logs/`.
    fn lambda_dir(&self, dc: usize) -> std::path::PathBuf {
        self.dc_root(dc).join("lambda")
    }

    fn registrator_log(&self, dc: usize) -> std::path::PathBuf {
        self.lambda_dir(dc)
            .join("logs")
            .join(format!("{REGISTRATOR}.log"))
    }

    pub(super) fn start_server(&mut self, dc: usize) -> Result<String, PartError> {
        let d = self.dc(dc).clone();
        let root = self.dc_root(dc);
        let data = root.join("server");
        let mut argv = vec![self.bin.clone().into_os_string()];
        argv.extend(os(&["server", "-data-dir"]));
        argv.push(data.into_os_string());
        argv.extend(os(&[
            "-http-addr",
            &d.server.http.to_string(),
            "-grpc-addr",
            &d.server.grpc.to_string(),
            "-lambda-endpoint",
            &format!("http://{}", d.platform.addr),
        ]));
        if self.t.federated {
            argv.extend(self.federation_args(dc, &root)?);
        }
        let env = self.aws_env(dc);
        let name = self.t.scoped(dc, "server");
        let i = self.spawn(&name, argv, &env)?;
        self.wait(Some(i), Duration::from_secs(30), "a leader", |r| {
            r.consul(dc)
                .call("GET", "/v1/status/leader", None)
                .is_ok_and(|(s, body)| s == 200 && body.trim().len() > 2)
        })?;
        let http = d.server.http.to_string();
        self.set_endpoint(dc, "http", format!("http://{http}"));
        if self.t.federated && dc != self.t.primary {
            // Joined: the primary's roots, and an intermediate the primary signed, without
            // which no leaf of this datacenter can be issued.
            let primary = self.t.primary;
            self.wait(
                Some(i),
                Duration::from_secs(60),
                &format!(
                    "joined {} through its mesh gateway (its roots and an intermediate)",
                    self.t.primary().name
                ),
                |r| super::federation::joined(r.consul(primary), r.consul(dc)),
            )?;
            return Ok(format!("http://{http}, joined {}", self.t.primary().name));
        }
        Ok(format!("http://{http}"))
    }

    pub(super) fn start_platform(&mut self, dc: usize) -> Result<String, PartError> {
        let d = self.dc(dc).clone();
        let mut argv = vec![self.bin.clone().into_os_string()];
        argv.extend(os(&[
            "lambda",
            "serve",
            "-addr",
            &d.platform.addr.to_string(),
            "-region",
            &d.platform.region,
        ]));
        argv.push("-data-dir".into());
        argv.push(self.lambda_dir(dc).into_os_string());
        argv.push("-python".into());
        argv.push(self.python.clone().into_os_string());
        let env = self.aws_env(dc);
        let name = self.t.scoped(dc, "platform");
        let i = self.spawn(&name, argv, &env)?;
        self.wait(
            Some(i),
            Duration::from_secs(30),
            "the Lambda API answers",
            |r| r.aws(dc).reachable(),
        )?;
        let url = format!("http://{}", d.platform.addr);
        self.set_endpoint(dc, "lambda", url.clone());
        Ok(url)
    }

    /// Creates or updates a function (code zipped from a directory or read from a zip).
    fn put_function(
        &mut self,
        dc: usize,
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
        let aws = self.aws(dc);
        let exists = aws.lambda_answer("GET", &path, None).is_ok();
        if exists {
            // The platform keeps functions across runs: bring this one up to the file.
            aws.lambda(
                "PUT",
                &format!("{path}/code"),
                Some(&json!({"ZipFile": zip})),
            )?;
            self.wait_active(dc, name)?;
            self.aws(dc)
                .lambda("PUT", &format!("{path}/configuration"), Some(&config))?;
            self.sync_tags(dc, name, tags)?;
        } else {
            let mut body = config;
            body["FunctionName"] = json!(name);
            body["Code"] = json!({"ZipFile": zip});
            body["Tags"] = tags.clone();
            aws.lambda("POST", "/2015-03-31/functions", Some(&body))?;
        }
        self.wait_active(dc, name)
    }

    /// Makes an existing function's tags exactly the file's: the registrator reads them, so a
    /// tag removed from the file (say, `lambda/enabled`) must go from the function too.
    fn sync_tags(&mut self, dc: usize, name: &str, tags: &Value) -> anyhow::Result<()> {
        let aws = self.aws(dc);
        let path = format!(
            "/2017-03-31/tags/{}",
            function_arn(&aws.region, name).replace(':', "%3A")
        );
        let wanted = tags.as_object().cloned().unwrap_or_default();
        let current = aws.lambda("GET", &path, None)?;
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
            aws.lambda("DELETE", &format!("{path}?{}", stale.join("&")), None)?;
        }
        if !wanted.is_empty() {
            aws.lambda("POST", &path, Some(&json!({"Tags": wanted})))?;
        }
        Ok(())
    }

    fn wait_active(&self, dc: usize, name: &str) -> anyhow::Result<()> {
        let path = format!("/2015-03-31/functions/{name}/configuration");
        for _ in 0..600 {
            let c = self.aws(dc).lambda("GET", &path, None)?;
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

    pub(super) fn start_registrator(&mut self, dc: usize) -> Result<String, PartError> {
        let d = self.dc(dc).clone();
        let Some(reg) = d.registrator.clone() else {
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
            "CONSUL_HTTP_ADDR": d.server.http.to_string(),
            "NODE_NAME": reg.node,
        });
        if d.functions.iter().any(|f| f.extension.is_some()) {
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
        self.put_function(dc, REGISTRATOR, config, &pkg, &json!({}))?;
        // Triggers, as the Terraform module deploys them: CloudTrail-shaped Lambda API calls
        // and a schedule.
        let arn = function_arn(&d.platform.region, REGISTRATOR);
        let aws = self.aws(dc);
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
            aws.target("events", "AWSEvents.PutRule", &rule)?;
            aws.target(
                "events",
                "AWSEvents.PutTargets",
                &json!({"Rule": name, "Targets": [{"Id": "registrator", "Arn": arn}]}),
            )?;
        }
        // One full sync now: proves it reaches Consul, and catches up with functions kept
        // from an earlier run.
        let (failed, answer) = aws.invoke(
            REGISTRATOR,
            &json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
        )?;
        if failed {
            return Err(PartError::Failed {
                message: format!("its first full sync failed: {answer}"),
                log: Some(self.registrator_log(dc)),
            });
        }
        Ok(reg.schedule)
    }

    pub(super) fn start_service(&mut self, dc: usize, i: usize) -> Result<String, PartError> {
        let s = self.dc(dc).services[i].clone();
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
                self.dc(dc).server.http.to_string(),
            ),
        ];
        for u in s.sidecar.iter().flat_map(|sc| &sc.upstreams) {
            env.push((url_var(&u.label()), format!("http://127.0.0.1:{}", u.port)));
        }
        env.extend(s.env.clone());
        let name = self.t.scoped(dc, &format!("service {}", s.name));
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
        self.set_endpoint(dc, &s.name, format!("http://127.0.0.1:{port}"));
        Ok(format!("127.0.0.1:{port}"))
    }

    /// Runs `connect envoy ...` and waits for Envoy's `/ready` and its listeners.
    fn start_envoy(
        &mut self,
        dc: usize,
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
            &self.dc(dc).server.grpc.to_string(),
            "--",
            "-l",
            "warning",
        ]));
        let mut env = self.aws_env(dc);
        env.push(("ENVOY_BIN".into(), super::envoy_bin(&self.t.base)));
        let idx = self.spawn(&self.t.scoped(dc, part), argv, &env)?;
        // Envoy's admin API: its config dump and stats are how a user sees what it was given.
        self.set_endpoint(
            dc,
            &format!("{part} admin"),
            format!("http://127.0.0.1:{admin}"),
        );
        // Consul's metrics listener (`envoy_prometheus_bind_addr`): what `migrate` scrapes.
        self.set_endpoint(
            dc,
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

    pub(super) fn start_sidecar(&mut self, dc: usize, i: usize) -> Result<String, PartError> {
        let s = self.dc(dc).services[i].clone();
        let Some(sc) = &s.sidecar else {
            return Ok(String::new());
        };
        if let Some(protocol) = &s.protocol {
            self.consul(dc).must(
                "PUT",
                "/v1/config",
                Some(&json!({"Kind": "service-defaults", "Name": s.name, "Protocol": protocol})),
            )?;
        }
        let port = match self.sidecar_ports[dc][i] {
            Some(p) => p,
            None => free_port()?,
        };
        self.sidecar_ports[dc][i] = Some(port);
        let upstreams: Vec<Value> = sc
            .upstreams
            .iter()
            .map(|u| {
                let mut up = json!({"DestinationName": u.name, "LocalBindPort": u.port});
                if let Some(other) = &u.datacenter {
                    up["Datacenter"] = json!(other);
                }
                up
            })
            .collect();
        let metrics = free_port()?;
        let reg = json!({
            "Name": s.name, "ID": s.name, "Port": s.port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": port, "Proxy": {
                "Upstreams": upstreams,
                "Config": {"envoy_prometheus_bind_addr": format!("127.0.0.1:{metrics}")},
            }}},
        });
        self.consul(dc).must(
            "PUT",
            "/v1/agent/service/register?replace-existing-checks=true",
            Some(&reg),
        )?;
        for u in &sc.upstreams {
            self.set_endpoint(
                dc,
                &format!("{} → {}", s.name, u.label()),
                format!("http://127.0.0.1:{}", u.port),
            );
        }
        let mut ports = vec![port];
        ports.extend(sc.upstreams.iter().map(|u| u.port));
        self.start_envoy(
            dc,
            &format!("sidecar {}", s.name),
            vec!["-sidecar-for".into(), s.name.clone()],
            metrics,
            ports,
        )?;
        Ok(format!("mTLS on 127.0.0.1:{port}"))
    }

    pub(super) fn start_gateway(&mut self, dc: usize, i: usize) -> Result<String, PartError> {
        let g = self.dc(dc).gateways[i].clone();
        // Registered here rather than with `connect envoy -register`, which has no way to set
        // the proxy's `Config`: the metrics listener's address goes there.
        let metrics = free_port()?;
        let kind = match g.kind {
            GatewayKind::Mesh => "mesh-gateway",
            GatewayKind::Terminating => "terminating-gateway",
        };
        let mut reg = json!({
            "Kind": kind, "ID": g.name, "Name": g.name,
            "Address": "127.0.0.1", "Port": g.port,
            "Proxy": {"Config": {"envoy_prometheus_bind_addr": format!("127.0.0.1:{metrics}")}},
        });
        let exposes_servers = self.t.federated && g.kind == GatewayKind::Mesh;
        if exposes_servers {
            // `-expose-servers`: the gateway also routes `server.<dc>.consul` to this
            // datacenter's server, which is how the other datacenters reach it.
            reg["Meta"] = json!({mesh_model::federation::WAN_FEDERATION_META: "1"});
        }
        self.consul(dc)
            .must("PUT", "/v1/agent/service/register", Some(&reg))?;
        self.start_envoy(
            dc,
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
            self.set_endpoint(dc, "mesh_gateway", format!("127.0.0.1:{}", g.port));
        }
        if exposes_servers && dc != self.t.primary {
            // The way back: the primary reaches this datacenter through the gateways it reports
            // (every 10 s at most; on a restart the map may still hold last run's address).
            // Ready when a `?dc=` read from the primary is answered here.
            let primary = self.t.primary;
            let path = format!("/v1/status/leader?dc={}", self.dc(dc).name);
            self.wait(
                None,
                Duration::from_secs(60),
                &format!(
                    "{} reaches it (?dc={})",
                    self.t.primary().name,
                    self.dc(dc).name
                ),
                |r| {
                    r.consul(primary)
                        .call("GET", &path, None)
                        .is_ok_and(|(s, _)| s == 200)
                },
            )?;
        }
        Ok(format!(
            "{} on 127.0.0.1:{}{}",
            g.kind.as_str(),
            g.port,
            if exposes_servers {
                ", exposing the servers"
            } else {
                ""
            }
        ))
    }

    /// The extension layer, published once per run (a new version each run, as a rebuild
    /// would on AWS).
    fn extension_layer(&mut self, dc: usize) -> Result<String, PartError> {
        // One layer per platform: each datacenter has its own.
        let key = self.t.scoped(dc, "extension_layer");
        if let Some(arn) = self.record[&key].as_str() {
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
        let published = self.aws(dc).lambda(
            "POST",
            &format!("/2018-10-31/layers/{EXTENSION_LAYER}/versions"),
            Some(&json!({"Content": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
                "Description": "lambdamesh-extension (lambdamesh up)"})),
        )?;
        let arn = published["LayerVersionArn"]
            .as_str()
            .ok_or_else(|| anyhow!("PublishLayerVersion answered no LayerVersionArn"))?
            .to_owned();
        self.record[&key] = json!(arn);
        Ok(arn)
    }

    pub(super) fn start_function(&mut self, dc: usize, i: usize) -> Result<String, PartError> {
        let f = self.dc(dc).functions[i].clone();
        let mut vars = serde_json::Map::new();
        let mut layers = f.layers.clone();
        if let Some(ext) = &f.extension {
            layers.push(self.extension_layer(dc)?);
            let gateway = self
                .dc(dc)
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
            // The extension's own form: `name:port[:dc]`.
            let ups: Vec<String> = ext
                .upstreams
                .iter()
                .map(|u| match &u.datacenter {
                    Some(other) => format!("{}:{}:{other}", u.name, u.port),
                    None => format!("{}:{}", u.name, u.port),
                })
                .collect();
            vars.insert("CONSUL_SERVICE_UPSTREAMS".into(), json!(ups.join(",")));
            if self.t.federated {
                // Upstreams that name no datacenter are in the function's own.
                vars.insert("CONSUL_DATACENTER".into(), json!(self.dc(dc).name));
            }
            for u in &ext.upstreams {
                vars.insert(
                    url_var(&u.label()),
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
        self.put_function(dc, &f.name, config, &f.code, &tags)?;
        if !f.mesh_enabled() {
            return Ok("not in the mesh".into());
        }
        // The registrator takes it from the CreateFunction event; wait for its writes.
        let name = f.name.clone();
        let ext = f.extension.is_some();
        let param = format!("{EXTENSION_PREFIX}/default/default/{name}");
        let log = self.registrator_log(dc);
        self.wait(
            None,
            Duration::from_secs(60),
            "the registrator registers it",
            |r| {
                let registered = r
                    .consul(dc)
                    .get_json(&format!("/v1/catalog/service/{name}"))
                    .is_some_and(|v| v.to_string().contains("managed-by-lambda-registrator"));
                let defaults = r
                    .consul(dc)
                    .call("GET", &format!("/v1/config/service-defaults/{name}"), None)
                    .is_ok_and(|(s, _)| s == 200);
                let material = !ext
                    || r.aws(dc)
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

    pub(super) fn write_config_entries(&mut self, dc: usize) -> Result<String, PartError> {
        let entries = self.dc(dc).config_entries.clone();
        for e in &entries {
            self.consul(dc)
                .must("PUT", "/v1/config", Some(&e.json))
                .map_err(|err| anyhow!("{}: {err:#}", e.label))?;
        }
        if self.t.federated && dc != self.t.primary {
            // A secondary sends the write to the primary; it is in force here once replicated.
            let paths: Vec<String> = entries
                .iter()
                .map(|e| format!("/v1/config/{}", e.label))
                .collect();
            self.wait_replicated(dc, &paths, "the entries replicated from the primary")?;
        }
        Ok(entries
            .iter()
            .map(|e| e.label.as_str())
            .collect::<Vec<_>>()
            .join(", "))
    }

    pub(super) fn write_intentions(&mut self, dc: usize) -> Result<String, PartError> {
        let intentions = self.dc(dc).intentions.clone();
        let mut paths = Vec::new();
        for i in &intentions {
            let path = format!(
                "/v1/connect/intentions/exact?source={}&destination={}",
                i.source, i.destination
            );
            let action = if i.allow { "allow" } else { "deny" };
            self.consul(dc)
                .must("PUT", &path, Some(&json!({"Action": action})))
                .map_err(|e| anyhow!("{} → {}: {e:#}", i.source, i.destination))?;
            paths.push(path);
        }
        if self.t.federated && dc != self.t.primary {
            // As config entries: written to the primary, in force here once replicated.
            self.wait_replicated(dc, &paths, "the intentions replicated from the primary")?;
        }
        Ok(format!("{} written", intentions.len()))
    }

    /// Waits until `dc`'s server answers every path of `paths` (writes a secondary sent to the
    /// primary, back by replication).
    fn wait_replicated(
        &mut self,
        dc: usize,
        paths: &[String],
        what: &str,
    ) -> Result<(), PartError> {
        self.wait(None, Duration::from_secs(60), what, |r| {
            paths.iter().all(|p| {
                r.consul(dc)
                    .call("GET", p, None)
                    .is_ok_and(|(s, _)| s == 200)
            })
        })?;
        Ok(())
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
