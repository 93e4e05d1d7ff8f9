use std::collections::BTreeSet;

use super::*;

const SEED_FILE: &str = r#"
service {
  name = "api"
  id   = "api"
  port = 9090
  connect {
    sidecar_service {
      proxy {
        upstreams {
          local_bind_port  = 2345
          destination_name = "authentication"
        }
      }
    }
  }
}
"#;

#[test]
fn seed_service_file_parses_and_expands_its_sidecar() {
    let defs = ServiceFile::parse(SEED_FILE).unwrap();
    assert_eq!(defs.len(), 1);
    let api = &defs[0];
    assert_eq!(api.name, "api");
    assert_eq!(api.port, Some(9090));
    let sidecar = api.sidecar(&BTreeSet::new()).unwrap().unwrap();
    assert_eq!(sidecar.id, "api-sidecar-proxy");
    assert_eq!(sidecar.name, "api-sidecar-proxy");
    assert_eq!(sidecar.kind, "connect-proxy");
    assert_eq!(sidecar.port, Some(21000));
    let proxy = sidecar.proxy.as_ref().unwrap();
    assert_eq!(proxy.destination_service_name, "api");
    assert_eq!(proxy.destination_service_id, "api");
    assert_eq!(proxy.local_service_address, "127.0.0.1");
    assert_eq!(proxy.local_service_port, Some(9090));
    assert_eq!(proxy.upstreams[0].destination_name, "authentication");
    assert_eq!(proxy.upstreams[0].local_bind_port, 2345);
}

#[test]
fn sidecar_port_skips_used_ports_and_fails_when_range_is_full() {
    let defs = ServiceFile::parse(SEED_FILE).unwrap();
    let used: BTreeSet<u16> = [21000, 21001].into_iter().collect();
    assert_eq!(defs[0].sidecar(&used).unwrap().unwrap().port, Some(21002));
    let full: BTreeSet<u16> = (SIDECAR_PORT_MIN..=SIDECAR_PORT_MAX).collect();
    let err = defs[0].sidecar(&full).unwrap_err();
    assert!(err.to_string().contains("no free port"), "{err}");
}

#[test]
fn json_files_in_both_shapes() {
    let one = ServiceFile::parse(r#"{"service": {"name": "web", "port": 80}}"#).unwrap();
    assert_eq!(one[0].name, "web");
    let many = ServiceFile::parse(r#"{"Services": [{"Name": "a"}, {"Name": "b"}]}"#).unwrap();
    assert_eq!(
        many.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let bare = ServiceFile::parse(r#"{"Name": "bare", "Port": 1}"#).unwrap();
    assert_eq!(bare[0].name, "bare");
}

#[test]
fn unknown_fields_and_bad_values_are_named() {
    let err = ServiceFile::parse("service {\n  name = \"x\"\n  prot = 1\n}\n").unwrap_err();
    assert!(err.to_string().contains("prot"), "{err}");
    let err = ServiceDefinition::decode_json(br#"{"Name":"x","Port":70000}"#).unwrap_err();
    assert!(err.to_string().contains("Port"), "{err}");
    let err = ServiceDefinition::decode_json(br#"{"Port":1}"#).unwrap_err();
    assert!(err.to_string().contains("Missing service name"), "{err}");
    let err = ServiceDefinition::decode_json(br#"{"Name":"a/b"}"#).unwrap_err();
    assert!(err.to_string().contains("invalid characters"), "{err}");
    let err = ServiceDefinition::decode_json(br#"{"Name":"p","Kind":"connect-proxy","Port":1}"#)
        .unwrap_err();
    assert!(err.to_string().contains("DestinationServiceName"), "{err}");
    let err = ServiceDefinition::decode_json(br#"{"Name":"x","Kind":"bogus"}"#).unwrap_err();
    assert!(err.to_string().contains("invalid service kind"), "{err}");
    let err = ServiceDefinition::decode_json(br#"{"Name":"x","Check":{"TTL":"ten"}}"#).unwrap_err();
    assert!(err.to_string().contains("TTL"), "{err}");
    let err = ServiceDefinition::decode_json(b"{not json").unwrap_err();
    assert!(err.to_string().contains("invalid JSON"), "{err}");
}

#[test]
fn catalog_register_decodes_consul_body_and_refuses_sidecars() {
    let body = br#"{"Node":"lambdas","SkipNodeUpdate":true,"NodeMeta":{"external-node":"true","external-probe":"true"},
        "Service":{"ID":"fn","Service":"fn","Tags":["managed-by-lambda-registrator"],"Address":"","Port":0}}"#;
    let req = RegisterRequest::decode_json(body).unwrap();
    assert!(req.skip_node_update);
    let svc = req.service.unwrap().to_node_service("dc1").unwrap();
    assert_eq!(svc.service, "fn");
    assert_eq!(svc.tags, ["managed-by-lambda-registrator"]);
    assert_eq!(svc.namespace, "default");

    let err = RegisterRequest::decode_json(
        br#"{"Node":"n","Service":{"Service":"a","Connect":{"SidecarService":{}}}}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("SidecarService"), "{err}");
    let err = RegisterRequest::decode_json(br#"{"Address":"1.2.3.4"}"#).unwrap_err();
    assert_eq!(err.to_string(), "Must provide node");
}

#[test]
fn checks_get_consul_default_ids_and_critical_status() {
    let def = ServiceDefinition::decode_json(
        br#"{"Name":"web","ID":"web-1","Checks":[{"TTL":"10s"},{"TTL":"5s","Status":"passing"}]}"#,
    )
    .unwrap();
    let checks = def.health_checks("node1").unwrap();
    assert_eq!(checks[0].check_id, "service:web-1:1");
    assert_eq!(checks[0].status, CheckStatus::Critical);
    assert_eq!(checks[1].check_id, "service:web-1:2");
    assert_eq!(checks[1].status, CheckStatus::Passing);
    assert_eq!(checks[1].check_type, "ttl");
    assert_eq!(checks[0].service_name, "web");
    let single =
        ServiceDefinition::decode_json(br#"{"Name":"web","Check":{"TTL":"10s"}}"#).unwrap();
    assert_eq!(
        single.health_checks("n").unwrap()[0].check_id,
        "service:web"
    );
}

#[test]
fn go_durations() {
    use std::time::Duration;
    assert_eq!(
        definition::parse_go_duration("10s").unwrap(),
        Duration::from_secs(10)
    );
    assert_eq!(
        definition::parse_go_duration("1m30s").unwrap(),
        Duration::from_secs(90)
    );
    assert_eq!(
        definition::parse_go_duration("250ms").unwrap(),
        Duration::from_millis(250)
    );
    assert!(definition::parse_go_duration("10").is_err());
    assert!(definition::parse_go_duration("").is_err());
    assert!(definition::parse_go_duration("5x").is_err());
}

#[test]
fn kinds_and_statuses_are_spelled_as_consul_spells_them() {
    for (kind, text) in [
        (ServiceKind::Typical, ""),
        (ServiceKind::ConnectProxy, "connect-proxy"),
        (ServiceKind::TerminatingGateway, "terminating-gateway"),
        (ServiceKind::MeshGateway, "mesh-gateway"),
        (ServiceKind::IngressGateway, "ingress-gateway"),
        (ServiceKind::ApiGateway, "api-gateway"),
    ] {
        assert_eq!(serde_json::to_value(kind).unwrap(), text);
        assert_eq!(
            serde_json::from_value::<ServiceKind>(text.into()).unwrap(),
            kind
        );
        assert_eq!(ServiceKind::parse(text).unwrap(), kind);
    }
    assert_eq!(
        ServiceKind::parse("sidecar").unwrap_err().to_string(),
        "Kind: invalid service kind \"sidecar\": must be one of \"\", \"connect-proxy\", \
         \"terminating-gateway\", \"mesh-gateway\", \"ingress-gateway\", \"api-gateway\""
    );
    for (status, text) in [
        (CheckStatus::Passing, "passing"),
        (CheckStatus::Warning, "warning"),
        (CheckStatus::Critical, "critical"),
    ] {
        assert_eq!(serde_json::to_value(status).unwrap(), text);
        assert_eq!(
            serde_json::from_value::<CheckStatus>(text.into()).unwrap(),
            status
        );
        assert_eq!(CheckStatus::parse(text), Some(status));
    }
    assert_eq!(CheckStatus::parse("Passing"), None);
    assert_eq!(CheckStatus::parse("maintenance"), None);
    let records = [NodeService::default()];
    let row = serde_json::to_value(&records[0]).unwrap();
    assert_eq!(row["Kind"], "", "a typical service shows an empty Kind");
}

#[test]
fn aggregate_status_is_the_worst() {
    use CheckStatus::*;
    assert_eq!(CheckStatus::aggregate([]), Passing);
    assert_eq!(CheckStatus::aggregate([Passing, Warning]), Warning);
    assert_eq!(
        CheckStatus::aggregate([Warning, Critical, Passing]),
        Critical
    );
}

#[test]
fn invalid_kind_and_status_in_definitions_keep_consul_messages() {
    let err = ServiceDefinition::decode_json(br#"{"Name":"web","Kind":"nope"}"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Kind: invalid service kind \"nope\""),
        "{err}"
    );
    let err =
        ServiceDefinition::decode_json(br#"{"Name":"web","Check":{"TTL":"5s","Status":"ok"}}"#)
            .unwrap_err();
    assert_eq!(err.to_string(), "check Status: invalid status \"ok\"");
}
