use serde_json::{Value, json};

use super::*;

/// Decodes and validates; returns the error text, or "" when the entry is accepted.
fn check(v: Value) -> String {
    match decode_value(v).and_then(|e| e.validate()) {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}

fn assert_table(cases: &[(Value, &str)]) {
    for (v, want) in cases {
        let got = check(v.clone());
        if want.is_empty() {
            assert!(got.is_empty(), "expected {v} to be valid, got: {got}");
        } else {
            assert!(
                got.contains(want),
                "for {v}\n  want error containing: {want}\n  got: {got:?}"
            );
        }
    }
}

#[test]
fn kinds_round_trip_and_unknown_is_named() {
    for k in Kind::ALL {
        assert_eq!(Kind::parse(k.as_str()).unwrap(), k);
    }
    // Consul matches kinds exactly.
    assert!(Kind::parse("Service-Defaults").is_err());
    assert!(Kind::parse("service-default").is_err());
    let err = Kind::parse("ingress-gateway").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config entry kind \"ingress-gateway\""
    );
}

#[test]
fn kind_and_name_required_unknown_fields_named() {
    assert_table(&[
        (json!({"Name": "web"}), "Kind is required"),
        (json!({"Kind": "", "Name": "web"}), "Kind is required"),
        (json!({"Kind": 3, "Name": "web"}), "Kind: expected a string"),
        (
            json!({"Kind": "nope", "Name": "web"}),
            "invalid config entry kind \"nope\"",
        ),
        (
            json!({"Kind": "service-defaults"}),
            "service-defaults \"\": Name: is required",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "Protocl": "http"}),
            "unknown field `Protocl`",
        ),
        (
            json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 100, "Bogus": 1}]}),
            "Splits[0].Bogus: unknown field `Bogus`",
        ),
        (
            json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": "x"}]}),
            "Splits[0].Weight: invalid type",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "a/b"}),
            "Name: service name \"a/b\" contains invalid characters",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "Namespace": "Bad_NS"}),
            "Namespace: namespace \"Bad_NS\" is invalid",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "CreateIndex": 4, "ModifyIndex": 5}),
            "",
        ),
        (json!(["not", "an", "object"]), "must be a JSON object"),
    ]);
}

#[test]
fn service_defaults_rules() {
    assert_table(&[
        (
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
            "",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "HTTP2"}),
            "",
        ),
        (
            json!({"kind": "service-defaults", "name": "web", "protocol": "grpc"}),
            "",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "udp"}),
            "Protocol: unsupported protocol \"udp\"",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "*"}),
            "Name: must be the name of a service, and not a wildcard",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "Mode": "sideways"}),
            "Mode: invalid value \"sideways\"",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "MeshGateway": {"Mode": "local"}}),
            "",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "MeshGateway": {"Mode": "far"}}),
            "MeshGateway.Mode",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "MutualTLSMode": "permissive"}),
            "",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "EnvoyExtensions": [{"Arguments": {"ARN": "x"}}]}),
            "EnvoyExtensions[0].Name: is required",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "fn", "Protocol": "http", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"arn": "arn:aws:lambda:us-east-1:1:function:f", "payloadPassthrough": true}}]}),
            "",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "fn", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"payloadPassthrough": true}}]}),
            "EnvoyExtensions[0].Arguments.ARN: is required",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "fn", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": "arn:aws:s3:::bucket"}}]}),
            "EnvoyExtensions[0].Arguments.ARN: invalid ARN",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "fn", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"arn": "arn:aws:lambda:eu-west-1:123456789012:function:f:live", "invocationMode": "ASYNCHRONOUS", "PayloadPassthrough": false}}]}),
            "",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "fn", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": "arn:aws:lambda:us-east-1:1:function:f", "PayloadPassthrough": "yes"}}]}),
            "Arguments.PayloadPassthrough: must be a boolean",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "fn", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": "arn:aws:lambda:us-east-1:1:function:f", "InvocationMode": "later"}}]}),
            "Arguments.InvocationMode: must be \"synchronous\" or \"asynchronous\"",
        ),
        // A misspelt argument is refused by name with the key it most likely meant (Consul's
        // mapstructure dropped it and passthrough silently stayed off).
        (
            json!({"Kind": "service-defaults", "Name": "fn", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": "arn:aws:lambda:us-east-1:1:function:f", "PayloadPasthrough": true}}]}),
            "EnvoyExtensions[0].Arguments: unknown argument \"PayloadPasthrough\" (did you mean \"PayloadPassthrough\"?)",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "fn", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"arn": "arn:aws:lambda:us-east-1:1:function:f", "payload_passthrough": true, "Region": "us-east-1"}}]}),
            "unknown arguments \"Region\", \"payload_passthrough\" (did you mean \"PayloadPassthrough\"?)",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "fn", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"aRn": "arn:aws:lambda:us-east-1:1:function:f", "PAYLOADPASSTHROUGH": true, "invocationmode": "synchronous"}}]}),
            "",
        ),
        // Other extensions' arguments are theirs to check.
        (
            json!({"Kind": "service-defaults", "Name": "fn", "EnvoyExtensions": [{"Name": "builtin/lua", "Arguments": {"Script": "x", "ProxyType": "connect-proxy"}}]}),
            "",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "Meta": (0..65).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "Meta: exceeds maximum element count 64",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "Meta": {"k": "v".repeat(513)}}),
            "exceeds maximum length 512",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {}, "Destination": {"Addresses": ["a.com"], "Port": 443}}),
            "mutually exclusive",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "Destination": {"Addresses": ["a.com"], "Port": 0}}),
            "Destination.Port",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "MaxInboundConnections": -1}),
            "MaxInboundConnections: must be >= 0",
        ),
    ]);
    // Protocol is normalised to lowercase, as Consul's Normalize does.
    let e = decode_value(json!({"Kind": "service-defaults", "Name": "web", "Protocol": "HTTP"}))
        .unwrap();
    assert_eq!(e.to_json()["Protocol"], "http");
}

#[test]
fn proxy_defaults_and_mesh_names_are_fixed() {
    assert_table(&[
        (
            json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http", "some_key": 1}}),
            "",
        ),
        (
            json!({"Kind": "proxy-defaults", "Name": "other"}),
            "Name: invalid name (\"other\"), only \"global\" is supported",
        ),
        (json!({"Kind": "proxy-defaults"}), "Name: is required"),
        (
            json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "quic"}}),
            "Config.protocol: unsupported protocol",
        ),
        (
            json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": 7}}),
            "Config.protocol: must be a string",
        ),
        (json!({"Kind": "mesh"}), ""),
        (
            json!({"Kind": "mesh", "Name": "mesh", "TransparentProxy": {"MeshDestinationsOnly": true}}),
            "",
        ),
        (
            json!({"Kind": "mesh", "Name": "other"}),
            "only \"mesh\" is supported",
        ),
        (
            json!({"Kind": "mesh", "Namespace": "team"}),
            "Namespace: mesh entries can only be created in the default namespace",
        ),
        (
            json!({"Kind": "proxy-defaults", "Name": "global", "Namespace": "team"}),
            "proxy-defaults entries can only be created in the default namespace",
        ),
        (
            json!({"Kind": "proxy-defaults", "Name": "global", "Namespace": "default", "Partition": "ap1"}),
            "",
        ),
        (
            json!({"Kind": "mesh", "HTTP": {"SanitizeXForwardedClientCert": true}, "Peering": {"PeerThroughMeshGateways": true}}),
            "",
        ),
    ]);
    // User keys inside Config keep their spelling.
    let e = decode_value(
        json!({"kind": "proxy-defaults", "name": "global", "config": {"Some_Key": 1}}),
    )
    .unwrap();
    assert_eq!(e.to_json()["Config"], json!({"Some_Key": 1}));
}

#[test]
fn splitter_rules() {
    let split =
        |splits: Value| json!({"Kind": "service-splitter", "Name": "web", "Splits": splits});
    assert_table(&[
        (
            split(json!([{"Weight": 90}, {"Weight": 10, "Service": "web-v2"}])),
            "",
        ),
        (
            split(
                json!([{"Weight": 33.33}, {"Weight": 33.33, "ServiceSubset": "b"}, {"Weight": 33.34, "ServiceSubset": "c"}]),
            ),
            "",
        ),
        (split(json!([{"Weight": 100, "Service": "web"}])), ""),
        (
            split(json!([{"Weight": 0, "ServiceSubset": "v2"}, {"Weight": 100}])),
            "",
        ),
        (split(json!([])), "Splits: no splits configured"),
        (
            split(json!([{"Weight": 80}, {"Weight": 10, "Service": "b"}])),
            "service-splitter \"web\": split weights must sum to 100, got 90",
        ),
        (
            split(json!([{"Weight": 50.5}, {"Weight": 49.49, "Service": "b"}])),
            "got 99.99",
        ),
        (
            split(json!([{"Weight": 120}, {"Weight": -20, "Service": "b"}])),
            "Splits[0].Weight: must be between 0 and 100, got 120",
        ),
        (
            split(json!([{"Weight": 100}, {"Weight": -0.5, "Service": "b"}])),
            "Splits[1].Weight: must be between 0 and 100",
        ),
        (
            split(json!([{"Weight": 33.333}, {"Weight": 66.667, "Service": "b"}])),
            "Splits[0].Weight: must have at most 2 decimal places",
        ),
        (
            split(json!([{"Weight": 50, "Service": "b"}, {"Weight": 50, "Service": "b"}])),
            "Splits[1]: split destination occurs more than once: service=\"b\"",
        ),
        // An empty Service means the splitter's own service.
        (
            split(json!([{"Weight": 50}, {"Weight": 50, "Service": "web"}])),
            "occurs more than once",
        ),
        // Same service, different subset or namespace: distinct targets.
        (
            split(
                json!([{"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}]),
            ),
            "",
        ),
        (
            split(json!([{"Weight": 50, "Namespace": "a"}, {"Weight": 50, "Namespace": "b"}])),
            "",
        ),
        (
            split(json!([{"Weight": 50}, {"Weight": 50, "Namespace": "default"}])),
            "occurs more than once",
        ),
        (
            split(json!([{"Weight": 100, "Service": "bad name"}])),
            "Splits[0].Service",
        ),
    ]);
}

#[test]
fn router_rules() {
    let route = |r: Value| json!({"Kind": "service-router", "Name": "web", "Routes": [r]});
    let http = |m: Value| route(json!({"Match": {"HTTP": m}, "Destination": {"Service": "admin"}}));
    assert_table(&[
        (http(json!({"PathPrefix": "/admin"})), ""),
        (
            http(json!({"PathExact": "/x", "Methods": ["get", "POST"]})),
            "",
        ),
        (http(json!({"PathRegex": "/api/v[0-9]+"})), ""),
        (
            http(json!({"PathPrefix": "admin"})),
            "Routes[0].Match.HTTP.PathPrefix: doesn't start with '/': \"admin\"",
        ),
        (
            http(json!({"PathExact": "x"})),
            "Routes[0].Match.HTTP.PathExact: doesn't start with '/'",
        ),
        (
            http(json!({"PathExact": "/x", "PathPrefix": "/y"})),
            "should only contain at most one of PathExact, PathPrefix, or PathRegex",
        ),
        (
            http(json!({"PathRegex": "(unclosed"})),
            "Routes[0].Match.HTTP.PathRegex: invalid regular expression",
        ),
        (
            http(json!({"Header": [{"Name": "x-debug", "Exact": "1"}]})),
            "",
        ),
        (
            http(json!({"header": [{"name": "x-debug", "present": true, "invert": true}]})),
            "",
        ),
        (
            http(json!({"Header": [{"Exact": "1"}]})),
            "Routes[0].Match.HTTP.Header[0]: missing required Name field",
        ),
        (
            http(json!({"Header": [{"Name": "a", "Exact": "1", "Prefix": "2"}]})),
            "Header[0]: should only contain one of Present, Exact, Prefix, Suffix, or Regex",
        ),
        (
            http(json!({"Header": [{"Name": "a"}]})),
            "should only contain one of",
        ),
        (
            http(json!({"Header": [{"Name": "a", "Regex": "["}]})),
            "Header[0].Regex: invalid regular expression",
        ),
        (
            http(json!({"QueryParam": [{"Name": "debug", "Exact": "1"}]})),
            "",
        ),
        (
            http(json!({"QueryParam": [{"Name": "debug"}]})),
            "QueryParam[0]: should only contain one of Present, Exact, or Regex",
        ),
        (
            http(json!({"QueryParam": [{"Exact": "1"}]})),
            "QueryParam[0]: missing required Name field",
        ),
        (
            http(json!({"Methods": ["FETCH"]})),
            "Methods: contains an invalid method \"FETCH\"",
        ),
        (
            http(json!({"Methods": ["GET", "get"]})),
            "Methods: contains \"GET\" more than once",
        ),
        (
            route(
                json!({"Match": {"HTTP": {"PathPrefix": "/a"}}, "Destination": {"PrefixRewrite": "/"}}),
            ),
            "",
        ),
        (
            route(
                json!({"Match": {"HTTP": {"PathRegex": "/a.*"}}, "Destination": {"PrefixRewrite": "/"}}),
            ),
            "Routes[0].Destination.PrefixRewrite: cannot be used without configuring either PathExact or PathPrefix",
        ),
        (
            route(json!({"Destination": {"PrefixRewrite": "/"}})),
            "PrefixRewrite",
        ),
        (
            route(json!({"Destination": {"RetryOn": ["5xx", "bogus"]}})),
            "invalid retry condition: \"bogus\"",
        ),
        (
            route(json!({"Destination": {"RequestTimeout": "5s", "IdleTimeout": 1000000000}})),
            "",
        ),
        (
            route(json!({"Destination": {"RequestTimeout": "soon"}})),
            "Routes[0].Destination.RequestTimeout: invalid duration",
        ),
        (
            route(json!({"Destination": {"RequestTimeout": "-5s"}})),
            "RequestTimeout: must be >= 0",
        ),
    ]);
    // Methods are upper-cased on decode, like Consul's Normalize.
    let e = decode_value(http(json!({"Methods": ["get"]}))).unwrap();
    assert_eq!(
        e.to_json()["Routes"][0]["Match"]["HTTP"]["Methods"],
        json!(["GET"])
    );
}

#[test]
fn resolver_rules() {
    let res = |extra: Value| {
        let mut v = json!({"Kind": "service-resolver", "Name": "web"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let subsets = json!({"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2", "OnlyPassing": true}});
    assert_table(&[
        (
            res(json!({"DefaultSubset": "v1", "Subsets": subsets.clone()})),
            "",
        ),
        (
            res(json!({"DefaultSubset": "v3", "Subsets": subsets.clone()})),
            "DefaultSubset: \"v3\" is not a valid subset",
        ),
        (
            res(json!({"Subsets": {"V1": {}}})),
            "Subsets[\"V1\"]: subset \"V1\" is invalid",
        ),
        (res(json!({"Subsets": {"-a": {}}})), "is invalid"),
        (
            res(json!({"Subsets": {"v1": {"Filter": "Service.Meta.version =="}}})),
            "Subsets[\"v1\"].Filter: not a valid expression",
        ),
        (
            res(
                json!({"Subsets": {"v1": {"Filter": "Service.Tags contains canary and not (Service.Meta.x is empty)"}}}),
            ),
            "",
        ),
        (res(json!({"Redirect": {"Service": "other"}})), ""),
        (res(json!({"Redirect": {}})), "Redirect: Redirect is empty"),
        (
            res(json!({"Redirect": {"Service": "other"}, "Failover": {"*": {"Service": "x"}}})),
            "Redirect and Failover cannot both be set",
        ),
        (
            res(json!({"Redirect": {"ServiceSubset": "v1"}})),
            "Redirect.ServiceSubset: defined without Redirect.Service",
        ),
        (
            res(
                json!({"Redirect": {"Service": "web", "ServiceSubset": "v9"}, "Subsets": subsets.clone()}),
            ),
            "Redirect.ServiceSubset: \"v9\" is not a valid subset of \"web\"",
        ),
        (
            res(json!({"Redirect": {"Service": "x", "Peer": "p", "Datacenter": "dc2"}})),
            "Redirect.Peer: cannot be set with Redirect.Datacenter",
        ),
        (
            res(json!({"Failover": {"*": {"Datacenters": ["dc2"]}}})),
            "",
        ),
        (
            res(json!({"Failover": {"v1": {"Service": "backup"}}, "Subsets": subsets.clone()})),
            "",
        ),
        (
            res(json!({"Failover": {"v3": {"Service": "backup"}}, "Subsets": subsets.clone()})),
            "Failover[\"v3\"]: not a valid subset",
        ),
        (
            res(json!({"Failover": {"*": {}}})),
            "Failover[\"*\"]: one of Service, ServiceSubset",
        ),
        (
            res(json!({"Failover": {"*": {"ServiceSubset": "v9"}}, "Subsets": subsets.clone()})),
            "Failover[\"*\"].ServiceSubset: \"v9\" is not a valid subset",
        ),
        (
            res(
                json!({"Failover": {"*": {"Datacenters": ["dc2"], "Targets": [{"Service": "a"}]}}}),
            ),
            "Targets: cannot be set with Datacenters",
        ),
        (
            res(json!({"Failover": {"*": {"Service": "b", "Targets": [{"Service": "a"}]}}})),
            "Targets: cannot be set with Service",
        ),
        (
            res(json!({"Failover": {"*": {"Targets": [{"Peer": "p", "Partition": "x"}]}}})),
            "Targets[0]: Partition cannot be set with Peer",
        ),
        (
            res(json!({"Failover": {"*": {"Targets": [{"ServiceSubset": "nope"}]}}})),
            "Targets[0].ServiceSubset",
        ),
        (
            res(json!({"Failover": {"*": {"Datacenters": [""]}}})),
            "Datacenters: found empty datacenter",
        ),
        (
            res(json!({"Failover": {"*": {"Service": "b", "Policy": {"Mode": "random"}}}})),
            "Policy.Mode",
        ),
        (
            res(json!({"ConnectTimeout": "15s", "RequestTimeout": 5000000000_i64})),
            "",
        ),
        (
            res(json!({"ConnectTimeout": "-1s"})),
            "ConnectTimeout: bad value '-1s', must be >= 0",
        ),
        (
            res(json!({"ConnectTimeout": "fast"})),
            "ConnectTimeout: invalid duration \"fast\"",
        ),
        (
            res(
                json!({"LoadBalancer": {"Policy": "ring_hash", "RingHashConfig": {"MinimumRingSize": 1024}, "HashPolicies": [{"Field": "header", "FieldValue": "x-user"}]}}),
            ),
            "",
        ),
        (
            res(json!({"LoadBalancer": {"Policy": "fastest"}})),
            "LoadBalancer.Policy: \"fastest\" is not supported",
        ),
        (
            res(json!({"LoadBalancer": {"Policy": "random", "RingHashConfig": {}}})),
            "RingHashConfig: specified for incompatible",
        ),
        (
            res(
                json!({"LoadBalancer": {"Policy": "round_robin", "HashPolicies": [{"SourceIP": true}]}}),
            ),
            "non-hash-based",
        ),
        (
            res(
                json!({"LoadBalancer": {"Policy": "maglev", "HashPolicies": [{"Field": "header"}]}}),
            ),
            "was specified without a FieldValue",
        ),
        (
            res(
                json!({"LoadBalancer": {"Policy": "maglev", "HashPolicies": [{"Field": "cookie", "FieldValue": "c", "CookieConfig": {"Session": true, "TTL": "5s"}}]}}),
            ),
            "session cookie cannot have an associated TTL",
        ),
    ]);
    // Durations come back in Go's format.
    let e = decode_value(res(json!({"ConnectTimeout": 15000000000_i64}))).unwrap();
    assert_eq!(e.to_json()["ConnectTimeout"], "15s");
}

#[test]
fn terminating_gateway_rules() {
    let tgw = |svcs: Value| json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": svcs});
    assert_table(&[
        (
            tgw(json!([{"Name": "lambda-fn"}, {"Name": "*", "Namespace": "ext"}])),
            "",
        ),
        (
            tgw(
                json!([{"Name": "billing", "CAFile": "/ca.pem", "CertFile": "/c.pem", "KeyFile": "/k.pem", "SNI": "b.example"}]),
            ),
            "",
        ),
        (
            tgw(json!([{"Namespace": "x"}])),
            "Services[0].Name: is required",
        ),
        (
            tgw(json!([{"Name": "a", "CertFile": "/c.pem"}])),
            "Services[0]: service \"a\" must have a KeyFile if a CertFile is specified",
        ),
        (
            tgw(json!([{"Name": "a", "KeyFile": "/k.pem"}])),
            "must have a CertFile if a KeyFile is specified",
        ),
        (
            tgw(json!([{"Name": "a"}, {"Name": "a"}])),
            "Services[1]: service \"a\" was specified more than once",
        ),
        (
            tgw(json!([{"Name": "a"}, {"Name": "a", "Namespace": "other"}])),
            "",
        ),
        (tgw(json!([{"Name": "a b"}])), "Services[0].Name"),
    ]);
}

#[test]
fn service_intentions_rules() {
    let ixn = |name: &str, sources: Value| json!({"Kind": "service-intentions", "Name": name, "Sources": sources});
    let perm = |http: Value| {
        ixn(
            "api",
            json!([{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": http}]}]),
        )
    };
    assert_table(&[
        (
            ixn(
                "api",
                json!([{"Name": "web", "Action": "allow"}, {"Name": "*", "Action": "deny"}]),
            ),
            "",
        ),
        (ixn("*", json!([{"Name": "*", "Action": "deny"}])), ""),
        (
            ixn("api", json!([])),
            "Sources: at least one source is required",
        ),
        (
            ixn("api", json!([{"Action": "allow"}])),
            "Sources[0].Name: is required",
        ),
        (
            ixn("api", json!([{"Name": "web"}])),
            "Sources[0].Action: must be set to 'allow' or 'deny'",
        ),
        (
            ixn("api", json!([{"Name": "web", "Action": "maybe"}])),
            "Sources[0].Action: unknown variant `maybe`",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Action": "allow", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]),
            ),
            "Sources[0].Action: must be omitted if Permissions are specified",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Action": "allow"}, {"Name": "web", "Action": "deny"}]),
            ),
            "Sources[1]: defines \"web\" more than once",
        ),
        // The same name in another namespace is another source.
        (
            ixn(
                "api",
                json!([{"Name": "web", "Action": "allow"}, {"Name": "web", "Namespace": "other", "Action": "deny"}]),
            ),
            "",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Namespace": "*", "Action": "allow"}]),
            ),
            "Sources[0].Name: exact value cannot follow wildcard namespace",
        ),
        (
            ixn("api", json!([{"Name": "we*", "Action": "allow"}])),
            "Sources[0].Name: wildcard character '*' cannot be used with partial values",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Partition": "*", "Action": "allow"}]),
            ),
            "Sources[0].Partition: cannot use wildcard",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Peer": "p1", "Partition": "x", "Action": "allow"}]),
            ),
            "Sources[0].Peer: cannot set Peer and Partition",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Peer": "p1", "SamenessGroup": "g", "Action": "allow"}]),
            ),
            "cannot set SamenessGroup and Peer",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Type": "external", "Action": "allow"}]),
            ),
            "Sources[0].Type: must be set to 'consul'",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "LegacyID": "x", "Action": "allow"}]),
            ),
            "Sources[0].LegacyID: must be omitted",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Description": "d".repeat(513), "Action": "allow"}]),
            ),
            "Sources[0].Description: exceeds maximum length",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Action": "allow", "Precedence": 3}]),
            ),
            "",
        ),
        (
            json!({"Kind": "service-intentions", "Name": "api", "Namespace": "*", "Sources": [{"Name": "web", "Action": "allow"}]}),
            "Name: exact value cannot follow wildcard namespace",
        ),
        (
            ixn(
                "*",
                json!([{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]),
            ),
            "Sources[0].Permissions: cannot be specified on intentions with wildcarded destinations",
        ),
        (perm(json!({"PathPrefix": "/v1", "Methods": ["GET"]})), ""),
        (
            perm(json!({"Header": [{"Name": "x-user", "Exact": "admin", "Invert": true}]})),
            "",
        ),
        (
            perm(json!({})),
            "Sources[0].Permissions[0].HTTP: should not be empty",
        ),
        (
            perm(json!({"PathPrefix": "v1"})),
            "Sources[0].Permissions[0].HTTP.PathPrefix: doesn't start with '/'",
        ),
        (
            perm(json!({"PathExact": "/a", "PathRegex": "/b"})),
            "should only contain at most one of PathExact, PathPrefix, or PathRegex",
        ),
        (
            perm(json!({"Header": [{"Name": "x", "Exact": "1", "Present": true}]})),
            "Permissions[0].HTTP.Header[0]: should only contain one of",
        ),
        (
            perm(json!({"Methods": ["BREW"]})),
            "Permissions[0].HTTP.Methods: contains an invalid method \"BREW\"",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Permissions": [{"HTTP": {"PathPrefix": "/"}}]}]),
            ),
            "Sources[0].Permissions[0].Action: must be set to 'allow' or 'deny'",
        ),
        (
            ixn(
                "api",
                json!([{"Name": "web", "Permissions": [{"Action": "deny"}]}]),
            ),
            "Sources[0].Permissions[0].HTTP: is required",
        ),
    ]);
}

#[test]
fn intention_sources_are_normalised() {
    let e = decode_value(json!({
        "Kind": "service-intentions", "Name": "api",
        "Sources": [
            {"Name": "*", "Action": "deny"},
            {"Name": "web", "Action": "allow", "Precedence": 1},
            {"Name": "*", "Namespace": "*", "Action": "deny"},
        ]
    }))
    .unwrap();
    let ConfigEntry::ServiceIntentions(ixn) = &e else {
        panic!("wrong kind")
    };
    let got: Vec<(&str, &str, u32, &str)> = ixn
        .sources
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.namespace.as_str(),
                s.precedence,
                s.r#type.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("web", "", 9, "consul"),
            ("*", "", 8, "consul"),
            ("*", "*", 7, "consul")
        ]
    );
}

/// Every kind, with every field set, survives to_json → decode_value, also when the keys are
/// rewritten to snake_case (which proves each field is in decode's canonical table).
#[test]
fn round_trips_through_json_and_snake_case() {
    let entries = vec![
        json!({"Kind": "service-defaults", "Name": "web", "Namespace": "ns1", "Partition": "ap1", "Protocol": "http", "Mode": "transparent",
            "TransparentProxy": {"OutboundListenerPort": 15001, "DialedDirectly": true}, "MutualTLSMode": "strict",
            "MeshGateway": {"Mode": "local"}, "Expose": {"Checks": true, "Paths": [{"ListenerPort": 21500, "Path": "/health", "LocalPathPort": 8080, "Protocol": "http", "ParsedFromCheck": true}]},
            "ExternalSNI": "web.example", "UpstreamConfig": {"Defaults": {"ConnectTimeoutMs": 5000}},
            "MaxInboundConnections": 10, "LocalConnectTimeoutMs": 100, "LocalRequestTimeoutMs": 200, "BalanceInboundConnections": "exact_balance",
            "RateLimits": {"InstanceLevel": {"RequestsPerSecond": 5}},
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Required": true, "Arguments": {"ARN": "arn:aws:lambda:us-east-1:1:function:f", "PayloadPassthrough": true}, "ConsulVersion": ">=1.15", "EnvoyVersion": ">=1.25"}],
            "Meta": {"Owner_Team": "x"}}),
        json!({"Kind": "service-defaults", "Name": "ext", "Destination": {"Addresses": ["a.example"], "Port": 443}}),
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http", "local_connect_timeout_ms": 5}, "Mode": "direct",
            "TransparentProxy": {"OutboundListenerPort": 1}, "MutualTLSMode": "permissive", "MeshGateway": {"Mode": "remote"},
            "Expose": {"Checks": true}, "AccessLogs": {"Enabled": true}, "EnvoyExtensions": [{"Name": "builtin/lua", "Required": false, "Arguments": {}}],
            "FailoverPolicy": {"Mode": "default"}, "PrioritizeByLocality": {"Mode": "failover"}, "Meta": {"a": "b"}}),
        json!({"Kind": "mesh", "Name": "mesh", "TransparentProxy": {"MeshDestinationsOnly": true}, "AllowEnablingPermissiveMutualTLS": true,
            "ValidateClusters": true, "TLS": {"Incoming": {"TLSMinVersion": "TLSv1_2"}}, "HTTP": {"SanitizeXForwardedClientCert": true},
            "Peering": {"PeerThroughMeshGateways": true}, "Meta": {"a": "b"}}),
        json!({"Kind": "service-router", "Name": "web", "Routes": [
            {"Match": {"HTTP": {"PathPrefix": "/admin", "Header": [{"Name": "x-a", "Present": true, "Invert": true}, {"Name": "x-b", "Suffix": "z", "IgnoreCase": true}],
                "QueryParam": [{"Name": "q", "Regex": "a+"}, {"Name": "p", "Present": true}], "Methods": ["GET", "PUT"]}},
             "Destination": {"Service": "admin", "ServiceSubset": "v1", "Namespace": "ns", "Partition": "ap", "PrefixRewrite": "/", "RequestTimeout": "5s", "IdleTimeout": "1m30s",
                "NumRetries": 3, "RetryOnConnectFailure": true, "RetryOn": ["5xx"], "RetryOnStatusCodes": [503],
                "RequestHeaders": {"Add": {"X-A": "1"}, "Set": {"X-B": "2"}, "Remove": ["X-C"]}, "ResponseHeaders": {"Remove": ["Server"]}}},
            {"Match": {"HTTP": {"PathExact": "/x", "Header": [{"Name": "h", "Exact": "e"}, {"Name": "h2", "Prefix": "p"}, {"Name": "h3", "Regex": "r"}], "QueryParam": [{"Name": "e", "Exact": "1"}]}}}
        ], "Meta": {"a": "b"}}),
        json!({"Kind": "service-splitter", "Name": "web", "Splits": [
            {"Weight": 90.5, "Service": "web", "ServiceSubset": "v1", "Namespace": "ns", "Partition": "ap", "RequestHeaders": {"Set": {"x-split": "a"}}, "ResponseHeaders": {"Add": {"x": "y"}}},
            {"Weight": 9.5, "ServiceSubset": "v2"}], "Meta": {"a": "b"}}),
        json!({"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1",
            "Subsets": {"v1": {"Filter": "Service.Meta.version == v1", "OnlyPassing": true}, "v2": {"Filter": "Service.Meta.version == v2"}},
            "Failover": {"*": {"Targets": [{"Service": "b", "ServiceSubset": "s", "Partition": "ap", "Namespace": "ns"}, {"Peer": "p1"}, {"Datacenter": "dc3"}], "Policy": {"Mode": "order-by-locality", "Regions": ["us"]}},
                         "v1": {"Service": "web-backup", "ServiceSubset": "x", "Namespace": "ns", "Datacenters": ["dc2"], "SamenessGroup": "g"}},
            "ConnectTimeout": "15s", "RequestTimeout": "1.5s",
            "LoadBalancer": {"Policy": "ring_hash", "RingHashConfig": {"MinimumRingSize": 1, "MaximumRingSize": 2},
                "HashPolicies": [{"Field": "cookie", "FieldValue": "c", "CookieConfig": {"TTL": "10s", "Path": "/"}, "Terminal": true}, {"SourceIP": true}]},
            "PrioritizeByLocality": {"Mode": "failover"}, "Meta": {"a": "b"}}),
        json!({"Kind": "service-resolver", "Name": "old", "Redirect": {"Service": "new", "ServiceSubset": "v1", "Namespace": "ns", "Partition": "ap", "Datacenter": "", "Peer": "", "SamenessGroup": ""},
            "LoadBalancer": {"Policy": "least_request", "LeastRequestConfig": {"ChoiceCount": 3}}}),
        json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "fn", "Namespace": "ns", "Partition": "ap", "CAFile": "/ca", "CertFile": "/c", "KeyFile": "/k", "SNI": "s", "DisableAutoHostRewrite": true}], "Meta": {"a": "b"}}),
        json!({"Kind": "service-intentions", "Name": "api", "Namespace": "ns", "Partition": "ap", "JWT": {"Providers": [{"Name": "okta"}]}, "Meta": {"a": "b"}, "Sources": [
            {"Name": "web", "Namespace": "ns", "Action": "allow", "Description": "d", "Type": "consul"},
            {"Name": "peer-web", "Peer": "p1", "Action": "deny"},
            {"Name": "grp", "SamenessGroup": "g", "Action": "deny"},
            {"Name": "admin", "Permissions": [{"Action": "allow", "HTTP": {"PathRegex": "/a.*", "Methods": ["GET"], "Header": [{"Name": "x", "Suffix": "y"}]}, "JWT": {"Providers": []}}, {"Action": "deny", "HTTP": {"PathExact": "/b"}}]}
        ]}),
    ];
    for v in entries {
        let e = decode_value(v.clone()).unwrap_or_else(|err| panic!("{v}: {err}"));
        e.validate().unwrap_or_else(|err| panic!("{v}: {err}"));
        let out = e.to_json();
        assert_eq!(out["Kind"], v["Kind"]);
        let back = decode_value(out.clone()).unwrap();
        assert_eq!(back, e, "plain round trip of {}", v["Kind"]);
        let snake = to_snake_keys(out.clone(), false);
        let back = decode_value(snake.clone()).unwrap_or_else(|err| panic!("{snake}: {err}"));
        assert_eq!(back, e, "snake_case round trip of {snake}");
        // Nothing was dropped: every input field name appears in the output (modulo the
        // empty values `omitempty` drops).
        assert_eq!(
            count_keys(&out),
            count_keys(&decode_value(out.clone()).unwrap().to_json())
        );
    }
}

/// Rewrites keys to snake_case except inside user maps, like a hand-written HCL file would.
fn to_snake_keys(v: Value, user: bool) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let is_user = matches!(
                        k.as_str(),
                        "Meta" | "Config" | "Arguments" | "Add" | "Set" | "Subsets" | "Failover"
                            // Opaque objects: canonicalised where their fields are known, but
                            // not every nested name is in decode's table.
                            | "UpstreamConfig" | "AccessLogs" | "TLS" | "JWT"
                    );
                    let named = matches!(k.as_str(), "Subsets" | "Failover");
                    let nk = if user { k.clone() } else { snake(&k) };
                    let nv = if named {
                        match v {
                            Value::Object(inner) => Value::Object(
                                inner
                                    .into_iter()
                                    .map(|(sk, sv)| (sk, to_snake_keys(sv, false)))
                                    .collect(),
                            ),
                            other => other,
                        }
                    } else {
                        to_snake_keys(v, user || is_user)
                    };
                    (nk, nv)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| to_snake_keys(x, user)).collect()),
        other => other,
    }
}

fn snake(k: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = k.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        if c.is_uppercase() && i > 0 && (prev_lower || (next_lower && chars[i - 1].is_uppercase()))
        {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

fn count_keys(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.len() + m.values().map(count_keys).sum::<usize>(),
        Value::Array(a) => a.iter().map(count_keys).sum(),
        _ => 0,
    }
}

#[test]
fn hcl_files_decode_like_consul_config_write() {
    let e = decode_hcl_or_json(
        r#"
Kind = "service-resolver"
Name = "web"
DefaultSubset = "v1"
Subsets = {
  v1 = { Filter = "Service.Meta.version == v1" }
  v2 = { filter = "Service.Meta.version == v2", only_passing = true }
}
connect_timeout = "5s"
"#,
    )
    .unwrap();
    e.validate().unwrap();
    assert_eq!(
        e.to_json()["Subsets"]["v2"],
        json!({"Filter": "Service.Meta.version == v2", "OnlyPassing": true})
    );
    assert_eq!(e.to_json()["ConnectTimeout"], "5s");

    let e = decode_hcl_or_json(
        r#"
kind = "service-intentions"
name = "api"
sources {
  name = "web"
  permissions {
    action = "allow"
    http {
      path_prefix = "/v1"
      header {
        name  = "x-user"
        exact = "admin"
      }
    }
  }
}
"#,
    )
    .unwrap();
    e.validate().unwrap();
    let j = e.to_json();
    assert_eq!(
        j["Sources"][0]["Permissions"][0]["HTTP"]["Header"],
        json!([{"Name": "x-user", "Exact": "admin"}])
    );

    let e =
        decode_hcl_or_json(r#"{"Kind": "service-defaults", "Name": "web", "Protocol": "http"}"#)
            .unwrap();
    assert_eq!(e.kind(), Kind::ServiceDefaults);
    assert!(
        decode_hcl_or_json("Kind = ")
            .unwrap_err()
            .to_string()
            .contains("invalid HCL")
    );
    assert!(
        decode_json(b"{nope")
            .unwrap_err()
            .to_string()
            .contains("invalid JSON")
    );
}

#[test]
fn ent_meta_defaults_and_query_fill_in() {
    let mut e = decode_value(json!({"Kind": "service-defaults", "Name": "web"})).unwrap();
    assert_eq!(e.ent_meta(), EntMeta::default());
    e.set_ent_meta(&EntMeta::new(Some("ap1"), Some("ns1")));
    assert_eq!(
        e.key(),
        EntryKey {
            kind: Kind::ServiceDefaults,
            meta: EntMeta::new(Some("ap1"), Some("ns1")),
            name: "web".into()
        }
    );
    assert_eq!(e.to_json()["Namespace"], "ns1");
    // The body's own namespace wins over the query.
    let mut e =
        decode_value(json!({"Kind": "service-defaults", "Name": "web", "Namespace": "body"}))
            .unwrap();
    e.set_ent_meta(&EntMeta::new(None, Some("query")));
    assert_eq!(e.ent_meta().namespace, "body");
}

#[test]
fn an_entry_given_its_tenancy_is_what_its_json_decodes_to() {
    // The store keeps the entry a handler built and logs its JSON; replay decodes that JSON.
    // Both must be the same entry, also when the tenancy came from the query (intention
    // precedence depends on it).
    let mut e = decode_value(json!({"Kind": "service-intentions", "Name": "web",
        "Sources": [{"Name": "api", "Action": "allow"}, {"Name": "*", "Action": "deny"}]}))
    .unwrap();
    let before = e.clone();
    e.set_ent_meta(&EntMeta::new(None, Some("*")));
    assert_ne!(
        e, before,
        "a wildcard namespace changes the sources' precedence"
    );
    assert_eq!(decode_value(e.to_json()).unwrap(), e);
}

#[test]
fn a_linked_service_takes_the_gateways_tenancy_where_it_names_none() {
    let gw = EntMeta::new(Some("ap1"), Some("ns1"));
    let linked = |partition: &str, namespace: &str| LinkedService {
        name: "fn".into(),
        partition: partition.into(),
        namespace: namespace.into(),
        ..Default::default()
    };
    assert_eq!(linked("", "").ent_meta_within(&gw), gw);
    assert_eq!(
        linked("", "other").ent_meta_within(&gw),
        EntMeta::new(Some("ap1"), Some("other"))
    );
    assert_eq!(
        linked("ap2", "").ent_meta_within(&gw),
        EntMeta::new(Some("ap2"), Some("ns1"))
    );
    assert_eq!(
        linked("", "").ent_meta_within(&EntMeta::default()),
        EntMeta::default()
    );
}

// --- ConfigEntrySet -----------------------------------------------------------------------

fn entry(v: Value) -> ConfigEntry {
    decode_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn set_of(entries: Vec<Value>) -> ConfigEntrySet {
    let mut s = ConfigEntrySet::default();
    for v in entries {
        let e = entry(v);
        s.validate_upsert(&e).unwrap_or_else(|err| panic!("{err}"));
        s.insert(e);
    }
    s
}

fn http_defaults(name: &str) -> Value {
    json!({"Kind": "service-defaults", "Name": name, "Protocol": "http"})
}

#[test]
fn set_get_list_insert_remove() {
    let mut s = set_of(vec![
        http_defaults("b"),
        http_defaults("a"),
        json!({"Kind": "service-defaults", "Name": "a", "Namespace": "ns2"}),
        json!({"Kind": "proxy-defaults", "Name": "global"}),
    ]);
    assert_eq!(s.len(), 4);
    let names: Vec<_> = s
        .list(Kind::ServiceDefaults)
        .iter()
        .map(|e| (e.name().to_owned(), e.ent_meta().namespace))
        .collect();
    assert_eq!(
        names,
        vec![
            ("a".into(), "default".into()),
            ("b".into(), "default".into()),
            ("a".into(), "ns2".into())
        ]
    );
    assert_eq!(s.list(Kind::ProxyDefaults).len(), 1);
    assert!(s.list(Kind::Mesh).is_empty());
    let key = entry(http_defaults("a")).key();
    assert_eq!(s.get(&key).map(ConfigEntry::name), Some("a"));
    let old = s.insert(entry(
        json!({"Kind": "service-defaults", "Name": "a", "Protocol": "grpc"}),
    ));
    assert!(matches!(old, Some(ConfigEntry::ServiceDefaults(sd)) if sd.protocol == "http"));
    assert!(s.remove(&key).is_some());
    assert!(s.get(&key).is_none());
    assert_eq!(s.iter().count(), 3);
}

#[test]
fn protocol_of_falls_back_to_proxy_defaults_then_tcp() {
    let web = ServiceName::default_tenancy("web");
    let mut s = ConfigEntrySet::default();
    assert_eq!(s.protocol_of(&web), "tcp");
    s.insert(entry(
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "HTTP2"}}),
    ));
    assert_eq!(s.protocol_of(&web), "http2");
    s.insert(entry(
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"}),
    ));
    assert_eq!(s.protocol_of(&web), "grpc");
    // A service-defaults without Protocol inherits.
    s.insert(entry(json!({"Kind": "service-defaults", "Name": "db"})));
    assert_eq!(s.protocol_of(&ServiceName::default_tenancy("db")), "http2");
    // Another partition has its own proxy-defaults.
    assert_eq!(
        s.protocol_of(&ServiceName::new("web", EntMeta::new(Some("ap2"), None))),
        "tcp"
    );
}

#[test]
fn splitters_and_routers_need_http_protocol() {
    let splitter = json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 100}]});
    let router = json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathPrefix": "/"}}}]});
    let empty = ConfigEntrySet::default();
    for v in [&splitter, &router] {
        let err = empty
            .validate_upsert(&entry(v.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("uses a protocol \"tcp\" that does not permit advanced routing or splitting behavior"), "{err}");
    }
    let s = set_of(vec![http_defaults("web")]);
    s.validate_upsert(&entry(splitter.clone())).unwrap();
    s.validate_upsert(&entry(router.clone())).unwrap();
    // proxy-defaults can supply the protocol.
    let s = set_of(vec![
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}),
    ]);
    s.validate_upsert(&entry(splitter.clone())).unwrap();

    // Changing the protocol back to tcp would break the splitter: refused, naming it.
    let s = set_of(vec![http_defaults("web"), splitter.clone()]);
    let err = s
        .validate_upsert(&entry(
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "tcp"}),
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("service-defaults \"web\": would invalidate service-splitter \"web\""),
        "{err}"
    );
    // ... and so would deleting the service-defaults.
    let err = s
        .validate_delete(&entry(http_defaults("web")).key())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would invalidate service-splitter \"web\""),
        "{err}"
    );
    // Other services are unaffected.
    s.validate_upsert(&entry(
        json!({"Kind": "service-defaults", "Name": "other", "Protocol": "tcp"}),
    ))
    .unwrap();
    // Deleting the splitter itself is fine.
    s.validate_delete(&entry(splitter).key()).unwrap();
}

#[test]
fn split_targets_must_share_the_protocol() {
    let s = set_of(vec![http_defaults("web")]);
    let splitter = entry(
        json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 50}, {"Weight": 50, "Service": "web-v2"}]}),
    );
    let err = s.validate_upsert(&splitter).unwrap_err().to_string();
    assert!(
        err.contains("Splits[1]: discovery chain \"web\" uses inconsistent protocols; service \"web-v2\" has \"tcp\" which is not \"http\""),
        "{err}"
    );
    let s = set_of(vec![http_defaults("web"), http_defaults("web-v2")]);
    s.validate_upsert(&splitter).unwrap();
}

#[test]
fn referenced_subsets_must_exist() {
    let resolver = json!({"Kind": "service-resolver", "Name": "web", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {}}});
    let splitter = json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}]});
    // No resolver yet.
    let s = set_of(vec![http_defaults("web")]);
    let err = s
        .validate_upsert(&entry(splitter.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "Splits[0].ServiceSubset: service \"web\" does not have a subset named \"v1\""
        ),
        "{err}"
    );
    // With the resolver it is fine.
    let s = set_of(vec![
        http_defaults("web"),
        resolver.clone(),
        splitter.clone(),
    ]);
    // Removing a subset the splitter uses is refused ...
    let err = s
        .validate_upsert(&entry(
            json!({"Kind": "service-resolver", "Name": "web", "Subsets": {"v1": {}}}),
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would invalidate service-splitter \"web\": Splits[1].ServiceSubset"),
        "{err}"
    );
    // ... and so is deleting the resolver.
    assert!(s.validate_delete(&entry(resolver).key()).is_err());
    // Routers are checked the same way.
    let router = entry(
        json!({"Kind": "service-router", "Name": "web", "Routes": [{"Destination": {"ServiceSubset": "v3"}}]}),
    );
    let err = s.validate_upsert(&router).unwrap_err().to_string();
    assert!(err.contains("Routes[0].Destination.ServiceSubset: service \"web\" does not have a subset named \"v3\""), "{err}");
    // A resolver redirecting or failing over to another service's subset.
    let s = set_of(vec![
        json!({"Kind": "service-resolver", "Name": "db", "Subsets": {"primary": {}}}),
    ]);
    s.validate_upsert(&entry(json!({"Kind": "service-resolver", "Name": "old-db", "Redirect": {"Service": "db", "ServiceSubset": "primary"}}))).unwrap();
    let err = s
        .validate_upsert(&entry(json!({"Kind": "service-resolver", "Name": "old-db", "Redirect": {"Service": "db", "ServiceSubset": "replica"}})))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "Redirect.ServiceSubset: service \"db\" does not have a subset named \"replica\""
        ),
        "{err}"
    );
    let err = s
        .validate_upsert(&entry(json!({"Kind": "service-resolver", "Name": "x", "Failover": {"*": {"Service": "db", "ServiceSubset": "nope"}}})))
        .unwrap_err()
        .to_string();
    assert!(err.contains("Failover[\"*\"].ServiceSubset"), "{err}");
}

#[test]
fn resolver_targets_must_share_the_protocol() {
    // Consul's FailoverCrossesProtocols / RedirectCrossesProtocols compile cases.
    let s = set_of(vec![
        json!({"Kind": "service-defaults", "Name": "main", "Protocol": "grpc"}),
        json!({"Kind": "service-defaults", "Name": "other", "Protocol": "tcp"}),
    ]);
    for resolver in [
        json!({"Kind": "service-resolver", "Name": "main", "Failover": {"*": {"Service": "other"}}}),
        json!({"Kind": "service-resolver", "Name": "main", "Redirect": {"Service": "other"}}),
        json!({"Kind": "service-resolver", "Name": "main", "Failover": {"*": {"Targets": [{"Service": "other"}]}}}),
    ] {
        let err = s
            .validate_upsert(&entry(resolver.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("discovery chain \"main\" uses inconsistent protocols; service \"other\" has \"tcp\" which is not \"grpc\""),
            "{resolver}: {err}"
        );
    }
    // Same-service datacenter failover and peer targets have nothing to compare.
    s.validate_upsert(&entry(json!({"Kind": "service-resolver", "Name": "main", "Failover": {"*": {"Datacenters": ["dc2"]}}}))).unwrap();
    s.validate_upsert(&entry(json!({"Kind": "service-resolver", "Name": "main", "Failover": {"*": {"Targets": [{"Service": "other", "Peer": "p1"}]}}}))).unwrap();
    // Making "other" grpc too fixes it; switching it back is then refused.
    let s = set_of(vec![
        json!({"Kind": "service-defaults", "Name": "main", "Protocol": "grpc"}),
        json!({"Kind": "service-defaults", "Name": "other", "Protocol": "grpc"}),
        json!({"Kind": "service-resolver", "Name": "main", "Redirect": {"Service": "other"}}),
    ]);
    let err = s
        .validate_upsert(&entry(
            json!({"Kind": "service-defaults", "Name": "other", "Protocol": "tcp"}),
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would invalidate service-resolver \"main\": Redirect: discovery chain"),
        "{err}"
    );
}

#[test]
fn l7_intentions_need_http_destination() {
    let l7 = entry(
        json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]}),
    );
    let l4 = entry(
        json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "web", "Action": "allow"}]}),
    );
    let empty = ConfigEntrySet::default();
    empty.validate_upsert(&l4).unwrap();
    let err = empty.validate_upsert(&l7).unwrap_err().to_string();
    assert!(
        err.contains(
            "service \"api\" has protocol \"tcp\", but L7 intention Permissions require http"
        ),
        "{err}"
    );
    let mut s = set_of(vec![http_defaults("api")]);
    s.validate_upsert(&l7).unwrap();
    s.insert(l7);
    let err = s
        .validate_upsert(&entry(
            json!({"Kind": "service-defaults", "Name": "api", "Protocol": "tcp"}),
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would invalidate service-intentions \"api\""),
        "{err}"
    );
}

#[test]
fn preexisting_problems_elsewhere_do_not_block_unrelated_writes() {
    // Inserted without validation, as if written before a rule existed.
    let mut s = ConfigEntrySet::default();
    s.insert(entry(
        json!({"Kind": "service-splitter", "Name": "legacy", "Splits": [{"Weight": 100}]}),
    ));
    s.validate_upsert(&entry(http_defaults("web"))).unwrap();
    // But rewriting the broken entry itself must fix it.
    assert!(
        s.validate_upsert(&entry(
            json!({"Kind": "service-splitter", "Name": "legacy", "Splits": [{"Weight": 100}]})
        ))
        .is_err()
    );
}

#[test]
fn lambda_arns_parse() {
    let a = parse_lambda_arn("arn:aws:lambda:us-east-1:111111111111:function:fn:alias").unwrap();
    assert_eq!(
        (
            a.region.as_str(),
            a.function.as_str(),
            a.qualifier.as_deref()
        ),
        ("us-east-1", "fn", Some("alias"))
    );
    assert_eq!(
        parse_lambda_arn("arn:aws-cn:lambda:cn-north-1:1:function:f")
            .unwrap()
            .qualifier,
        None
    );
    for bad in [
        "",
        "arn:aws:lambda:us-east-1:1:function",
        "arn:aws:lambda::1:function:f",
        "arn:aws:lambda:r:1:layer:f",
        "arn:aws:lambda:r:1:function:f:",
        "x:aws:lambda:r:1:function:f",
    ] {
        assert!(parse_lambda_arn(bad).is_err(), "{bad}");
    }
}

#[test]
fn consul_documentation_hcl_1_examples_decode() {
    let e = decode_hcl_or_json(
        r#"
Kind = "service-router"
Name = "web"
Routes = [
  {
    Match {
      HTTP {
        PathPrefix = "/admin"
        Header = [
          {
            Name  = "x-debug"
            Exact = "1"
          },
        ]
      }
    }
    Destination {
      Service = "admin"
      RequestTimeout = "5s"
    }
  },
]
"#,
    )
    .unwrap();
    e.validate().unwrap();
    let j = e.to_json();
    assert_eq!(
        j["Routes"][0]["Match"]["HTTP"]["Header"][0]["Name"],
        "x-debug"
    );
    assert_eq!(j["Routes"][0]["Destination"]["RequestTimeout"], "5s");

    let e = decode_hcl_or_json(
        r#"
Kind = "service-intentions"
Name = "api"
Sources = [
  {
    Name = "web"
    Permissions = [
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/v1"
          Methods    = ["GET", "PUT"]
        }
      }
    ]
  },
  { Name = "*" Action = "deny" }
]
"#,
    )
    .unwrap();
    e.validate().unwrap();
    assert_eq!(
        e.to_json()["Sources"][0]["Permissions"][0]["HTTP"]["Methods"],
        json!(["GET", "PUT"])
    );
    // A real syntax error still reports the parser's own message.
    let err = decode_hcl_or_json("Kind = \"mesh\"\nRoutes = [ {")
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid HCL"), "{err}");
}

#[test]
fn lambda_services_must_speak_http() {
    let marked = |proto: &str| {
        json!({"Kind": "service-defaults", "Name": "fn", "Protocol": proto,
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": "arn:aws:lambda:us-east-1:1:function:f"}}]})
    };
    let empty = ConfigEntrySet::default();
    empty.validate_upsert(&entry(marked("http"))).unwrap();
    // Unset protocol inherits tcp: refused with the field and the reason.
    for proto in ["", "tcp", "grpc"] {
        let err = empty
            .validate_upsert(&entry(marked(proto)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "Protocol: service \"fn\" is an AWS Lambda function and must use protocol \"http\""
            ),
            "{proto}: {err}"
        );
    }
    // Inheriting http from proxy-defaults is fine, and turning that into tcp is refused.
    let s = set_of(vec![
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}),
    ]);
    s.validate_upsert(&entry(marked(""))).unwrap();
    let s = set_of(vec![
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}),
        marked(""),
    ]);
    let err = s
        .validate_upsert(&entry(
            json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}}),
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("AWS Lambda function"), "{err}");
    // The ≤1.14 Meta marking is held to the same rule.
    let meta = json!({"Kind": "service-defaults", "Name": "fn", "Meta": {
        "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled": "true",
        "serverless.consul.hashicorp.com/v1alpha1/lambda/arn": "arn:aws:lambda:us-east-1:1:function:f"}});
    assert!(empty.validate_upsert(&entry(meta)).is_err());
}

#[test]
fn lambda_meta_keys_are_checked_when_enabled() {
    let p = "serverless.consul.hashicorp.com/v1alpha1/lambda/";
    let sd = |meta: serde_json::Value| json!({"Kind": "service-defaults", "Name": "fn", "Protocol": "http", "Meta": meta});
    let arn = "arn:aws:lambda:eu-west-1:1:function:f:prod";
    let cases = [
        (
            json!({format!("{p}enabled"): "true", format!("{p}arn"): arn}),
            "",
        ),
        (
            json!({format!("{p}enabled"): "true", format!("{p}arn"): arn, format!("{p}region"): "eu-west-1",
                   format!("{p}payload-passhthrough"): "false", format!("{p}invocation-mode"): "ASYNCHRONOUS"}),
            "",
        ),
        // Not enabled: the keys are not a marking, so they are not checked.
        (
            json!({format!("{p}enabled"): "false", format!("{p}arn"): "nonsense"}),
            "",
        ),
        (
            json!({format!("{p}enabled"): "true"}),
            "lambda/arn\"]: is required",
        ),
        (
            json!({format!("{p}enabled"): "true", format!("{p}arn"): "arn:aws:s3:::b"}),
            "lambda/arn\"]: invalid ARN",
        ),
        (
            json!({format!("{p}enabled"): "true", format!("{p}arn"): arn, format!("{p}region"): "us-east-1"}),
            "lambda/region\"]: is \"us-east-1\" but the ARN's region is \"eu-west-1\"",
        ),
        (
            json!({format!("{p}enabled"): "true", format!("{p}arn"): arn, format!("{p}payload-passthrough"): "yes"}),
            "lambda/payload-passthrough\"]: must be \"true\" or \"false\"",
        ),
        (
            json!({format!("{p}enabled"): "true", format!("{p}arn"): arn, format!("{p}invocation-mode"): "later"}),
            "lambda/invocation-mode\"]: must be \"synchronous\" or \"asynchronous\"",
        ),
    ];
    for (meta, want) in cases {
        let got = decode_value(sd(meta.clone())).and_then(|e| {
            ConfigEntrySet::default().validate_upsert(&e)?;
            Ok(e)
        });
        match (got, want) {
            (Ok(_), "") => {}
            (Err(e), w) if !w.is_empty() => {
                assert!(e.to_string().contains(w), "{meta}: {e}");
            }
            (other, w) => panic!("{meta}: expected {w:?}, got {other:?}"),
        }
    }
}
