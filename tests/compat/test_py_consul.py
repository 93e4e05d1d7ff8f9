"""Compatibility: the independent Python client `py-consul` drives lambdamesh unchanged."""

import threading
import time

import consul
import consul.exceptions
import pytest


def client(s, token=None):
    return consul.Consul(host=s.host, port=s.port, token=token)


def test_agent_register_catalog_and_health(server):
    c = client(server)
    assert c.agent.service.register(
        "web", service_id="web-1", port=8080, tags=["v1"], check=consul.Check.ttl("30s")
    )
    index, services = c.catalog.services()
    assert "web" in services and services["web"] == ["v1"]
    assert int(index) >= 1
    _, nodes = c.catalog.service("web")
    assert nodes[0]["ServiceID"] == "web-1" and nodes[0]["ServicePort"] == 8080
    # A new TTL check is critical; passing it makes the instance healthy.
    _, healthy = c.health.service("web", passing=True)
    assert healthy == []
    c.agent.check.ttl_pass("service:web-1", notes="ok")
    _, healthy = c.health.service("web", passing=True)
    assert [h["Service"]["ID"] for h in healthy] == ["web-1"]
    assert "web-1" in c.agent.services()
    assert c.agent.service.deregister("web-1")
    _, services = c.catalog.services()
    assert "web" not in services


def test_catalog_register_like_the_lambda_registrator(server):
    c = client(server)
    assert c.catalog.register(
        "lambdas",
        "",
        service={"ID": "greeter", "Service": "greeter", "Tags": ["managed-by-lambda-registrator"]},
        node_meta={"external-node": "true", "external-probe": "true"},
        skip_node_update=True,
    )
    _, rows = c.catalog.service("greeter")
    assert rows[0]["Node"] == "lambdas"
    assert c.catalog.deregister("lambdas", service_id="greeter")
    _, rows = c.catalog.service("greeter")
    assert rows == []


def test_config_entries(server):
    c = client(server)
    assert c.config.set("service-defaults", "authentication", {"Protocol": "http"})
    entry = c.config.get("service-defaults", "authentication")
    assert entry["Protocol"] == "http" and entry["Kind"] == "service-defaults"
    assert [e["Name"] for e in c.config.list("service-defaults")] == ["authentication"]
    # check-and-set: stale index refused, current index accepted
    assert c.config.set("service-defaults", "authentication", {"Protocol": "grpc"}, cas=entry["ModifyIndex"] + 50) is False
    assert c.config.set("service-defaults", "authentication", {"Protocol": "grpc"}, cas=entry["ModifyIndex"]) is True
    with pytest.raises(consul.exceptions.BadRequest) as e:
        c.config.set("service-splitter", "authentication", {"Splits": [{"Weight": 10}]})
    assert "100" in str(e.value)
    assert c.config.delete("service-defaults", "authentication")
    assert c.config.get("service-defaults", "authentication") is None


def test_a_bad_value_names_its_field(server):
    """A value of the wrong type is a 400 naming the field's path, as an independent client sends it."""
    c = client(server)
    with pytest.raises(consul.exceptions.BadRequest) as e:
        c.catalog.register("n", "10.0.0.1", service={"Service": "web", "Port": "abc"})
    assert "Service.Port: invalid type" in str(e.value), str(e.value)
    _, services = c.catalog.services()
    assert "web" not in services


def test_blocking_query_wakes_on_change(server):
    c = client(server)
    index, _ = c.catalog.services()
    result = {}

    def watch():
        t = time.monotonic()
        result["index"], result["services"] = c.catalog.services(index=index, wait="20s")
        result["elapsed"] = time.monotonic() - t

    th = threading.Thread(target=watch)
    th.start()
    time.sleep(0.3)
    assert th.is_alive(), "a blocking query returned before anything changed"
    c.agent.service.register("late", port=1)
    th.join(10)
    assert not th.is_alive()
    assert "late" in result["services"]
    assert int(result["index"]) > int(index)
    assert result["elapsed"] < 10


def test_intentions(server):
    c = client(server)
    assert c.connect.intentions.upsert("api", "authentication", action="allow")
    assert c.connect.intentions.upsert("*", "authentication", action="deny")
    i = c.connect.intentions.read("api", "authentication")
    assert i["Action"] == "allow" and i["Precedence"] == 9


def test_acl_tokens(acl_server):
    anon = client(acl_server)
    boot = anon.acl.bootstrap()
    mgmt = client(acl_server, token=boot["SecretID"])
    # py-consul sends rules as JSON (it json.dumps the argument), which Consul's parser accepts.
    policy = mgmt.acl.policy.create("web", rules={"service": {"web": {"policy": "write"}}})
    token = mgmt.acl.token.create(policies_id=[policy["ID"]], description="web")
    web = client(acl_server, token=token["SecretID"])
    assert web.agent.service.register("web", port=80)
    with pytest.raises(consul.exceptions.ACLPermissionDenied) as e:
        web.agent.service.register("db", port=81)
    assert "lacks permission 'service:write' on \"db\"" in str(e.value)
    with pytest.raises(consul.exceptions.ACLPermissionDenied):
        anon.agent.service.register("web", port=80)


def test_lambda_service_defaults_both_markings(server):
    """The registrator's lower-camel extension arguments and the ≤1.14 Meta keys are accepted as
    written by an independent client; bad markings are a 400 that names the field."""
    c = client(server)
    arn = "arn:aws:lambda:us-east-1:123456789012:function:greeter"
    assert c.config.set(
        "service-defaults",
        "greeter",
        {
            "Protocol": "http",
            "EnvoyExtensions": [
                {
                    "Name": "builtin/aws/lambda",
                    "Required": False,
                    "Arguments": {"arn": arn, "invocationMode": "ASYNCHRONOUS", "payloadPassthrough": False},
                }
            ],
        },
    )
    entry = c.config.get("service-defaults", "greeter")
    assert entry["EnvoyExtensions"][0]["Arguments"]["arn"] == arn
    p = "serverless.consul.hashicorp.com/v1alpha1/lambda/"
    assert c.config.set(
        "service-defaults",
        "legacy",
        {"Protocol": "http", "Meta": {p + "enabled": "true", p + "arn": arn, p + "region": "us-east-1"}},
    )
    for body, field in [
        ({"Protocol": "tcp", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": arn}}]}, "Protocol"),
        ({"Protocol": "http", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": "nope"}}]}, "ARN"),
        ({"Protocol": "http", "Meta": {p + "enabled": "true", p + "arn": arn, p + "region": "eu-west-1"}}, "region"),
        # A misspelt argument (Consul dropped it, leaving passthrough off) is named.
        ({"Protocol": "http", "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": arn, "PayloadPasthrough": True}}]}, "PayloadPasthrough"),
    ]:
        with pytest.raises(consul.exceptions.BadRequest) as e:
            c.config.set("service-defaults", "bad", body)
        assert field in str(e.value), str(e.value)
    assert c.config.get("service-defaults", "bad") is None


def test_kv_put_get_cas_recurse_delete_and_blocking(server):
    c = client(server)
    assert c.kv.put("lambdamesh/migrations/greeter", '{"State": "running"}')
    index, row = c.kv.get("lambdamesh/migrations/greeter")
    assert row["Key"] == "lambdamesh/migrations/greeter"
    assert row["Value"] == b'{"State": "running"}'
    assert row["LockIndex"] == 0 and row["Flags"] == 0
    assert row["CreateIndex"] == row["ModifyIndex"] and int(index) >= row["ModifyIndex"]
    # check-and-set: a stale index and cas=0 on an existing key are refused, the current one wins
    assert c.kv.put("lambdamesh/migrations/greeter", "x", cas=row["ModifyIndex"] + 7) is False
    assert c.kv.put("lambdamesh/migrations/greeter", "x", cas=0) is False
    assert c.kv.put("lambdamesh/migrations/greeter", "second", cas=row["ModifyIndex"], flags=42)
    _, row2 = c.kv.get("lambdamesh/migrations/greeter")
    assert row2["Value"] == b"second" and row2["Flags"] == 42
    assert row2["CreateIndex"] == row["CreateIndex"] and row2["ModifyIndex"] > row["ModifyIndex"]
    assert c.kv.put("lambdamesh/migrations/web", "")
    _, empty = c.kv.get("lambdamesh/migrations/web")
    assert empty["Value"] is None
    # recurse, keys with a separator, missing keys
    _, rows = c.kv.get("lambdamesh/migrations/", recurse=True)
    assert [r["Key"] for r in rows] == ["lambdamesh/migrations/greeter", "lambdamesh/migrations/web"]
    _, keys = c.kv.get("lambdamesh/", keys=True, separator="/")
    assert keys == ["lambdamesh/migrations/"]
    _, missing = c.kv.get("nothing/here")
    assert missing is None
    # a blocking read returns when the key changes
    index, _ = c.kv.get("lambdamesh/migrations/greeter")

    def later():
        time.sleep(0.3)
        c.kv.put("lambdamesh/migrations/greeter", "third")

    t = threading.Thread(target=later)
    t.start()
    started = time.monotonic()
    new_index, row3 = c.kv.get("lambdamesh/migrations/greeter", index=index, wait="10s")
    t.join()
    assert row3["Value"] == b"third" and int(new_index) > int(index)
    assert time.monotonic() - started < 9
    # deletes: cas refused on a stale index, then recursive
    assert c.kv.delete("lambdamesh/migrations/web", cas=1) is False
    assert c.kv.delete("lambdamesh/migrations/web", cas=empty["ModifyIndex"]) is True
    assert c.kv.delete("lambdamesh/", recurse=True)
    _, gone = c.kv.get("lambdamesh/", recurse=True)
    assert gone is None
