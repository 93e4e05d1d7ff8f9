"""Compatibility: `/v1/agent/metrics?format=prometheus` as a Prometheus scraper reads it.

The scrape is parsed by Prometheus' own Python client (`prometheus_client`'s text parser), after
known traffic sent through the independent Consul client `py-consul`."""

import json
import urllib.error
import urllib.request

import consul
from prometheus_client.parser import text_string_to_metric_families


def scrape(s, token=None):
    req = urllib.request.Request(f"http://{s.addr}/v1/agent/metrics?format=prometheus")
    if token:
        req.add_header("X-Consul-Token", token)
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        families = list(text_string_to_metric_families(r.read().decode()))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), names
    for f in families:
        assert f.type != "unknown" and f.documentation, f
    return {f.name: f for f in families}


def sample(families, family, name, **labels):
    for s in families[family].samples:
        if s.name == name and s.labels == labels:
            return s.value
    raise AssertionError(f"no {name} {labels} in {families[family].samples}")


def test_prometheus_counts_what_py_consul_registered(server):
    c = consul.Consul(host=server.host, port=server.port)
    before = scrape(server)
    base = sample(before, "consul_state_services", "consul_state_services", datacenter="dc1")
    for name in ["alpha", "beta", "gamma"]:
        assert c.catalog.register("n1", "10.0.0.1", service={"Service": name, "Port": 80})
    assert c.config.set("service-defaults", "alpha", {"Protocol": "http"})
    m = scrape(server)
    assert sample(m, "consul_state_services", "consul_state_services", datacenter="dc1") == base + 3
    _, services = c.catalog.services()
    assert sample(m, "consul_state_services", "consul_state_services", datacenter="dc1") == len(services)
    assert (
        sample(
            m,
            "consul_state_config_entries",
            "consul_state_config_entries",
            datacenter="dc1",
            kind="service-defaults",
        )
        == 1
    )
    # Requests by route (Consul's path label) and status code.
    assert (
        sample(
            m,
            "lambdamesh_api_http_requests",
            "lambdamesh_api_http_requests_total",
            method="PUT",
            path="v1_catalog_register",
            code="200",
        )
        == 3
    )
    assert m["consul_api_http"].type == "summary"
    assert m["lambdamesh_store_commit_duration_seconds"].type == "histogram"


def test_json_without_format(server):
    with urllib.request.urlopen(f"http://{server.addr}/v1/agent/metrics", timeout=10) as r:
        body = json.load(r)
    assert set(body) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
    gauge = next(g for g in body["Gauges"] if g["Name"] == "consul.state.nodes")
    assert gauge["Labels"] == {"datacenter": "dc1"} and gauge["Value"] >= 1


def test_agent_read_required(acl_server):
    try:
        scrape(acl_server)
        raise AssertionError("anonymous scrape allowed")
    except urllib.error.HTTPError as e:
        assert e.code == 403
        assert "agent:read" in e.read().decode()
