"""Compatibility across datacenters (docs/multi-dc.md): py-consul's `dc=` reads against two real
`lambdamesh server` processes, dc1 the primary and dc2 a secondary joined to it. The servers reach
each other on the direct path: dc2 lists dc1's server port as its primary gateway, and dc2's
"gateway" registered with `consul-wan-federation` is its own server port (the protocol is
SNI-addressed TLS, so a real mesh gateway is transparent; crates/cli/tests/multi_dc.rs runs the
same through real Envoy gateways)."""

import json
import os
import tempfile
import threading
import time
import urllib.request

import consul
import consul.exceptions
import pytest

from conftest import Server, _free_port


def _get(s, path):
    with urllib.request.urlopen(f"http://{s.addr}{path}", timeout=10) as r:
        return json.loads(r.read())


def _put(s, path, body):
    req = urllib.request.Request(
        f"http://{s.addr}{path}", data=json.dumps(body).encode(), method="PUT"
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def _wait(what, f, secs=60):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            if f():
                return
        except consul.exceptions.ConsulException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def two_dcs():
    with tempfile.TemporaryDirectory() as d:
        p1, p2 = _free_port(), _free_port()
        cfg1 = os.path.join(d, "dc1.hcl")
        with open(cfg1, "w") as f:
            f.write('datacenter = "dc1"\nconnect { enable_mesh_gateway_wan_federation = true }\n')
        dc1 = Server("server", "-data-dir", os.path.join(d, "dc1"), "-config-file", cfg1,
                     "-server-port", str(p1))
        try:
            roots = _get(dc1, "/v1/connect/ca/roots")
            ca = os.path.join(d, "roots.pem")
            with open(ca, "w") as f:
                f.write("".join(r["RootCert"] for r in roots["Roots"]))
            cfg2 = os.path.join(d, "dc2.hcl")
            with open(cfg2, "w") as f:
                f.write(
                    'datacenter = "dc2"\nprimary_datacenter = "dc1"\n'
                    f'primary_gateways = ["127.0.0.1:{p1}"]\nprimary_gateways_interval = "1s"\n'
                    "connect { enable_mesh_gateway_wan_federation = true }\n"
                    f"ca_file = {json.dumps(ca)}\n"
                )
            dc2 = Server("server", "-data-dir", os.path.join(d, "dc2"), "-config-file", cfg2,
                         "-server-port", str(p2))
            try:
                _put(dc2, "/v1/agent/service/register", {
                    "Kind": "mesh-gateway", "Name": "mgw", "Address": "127.0.0.1", "Port": p2,
                    "Meta": {"consul-wan-federation": "1"},
                })
                yield dc1, dc2
            finally:
                dc2.stop()
        finally:
            dc1.stop()


def test_reads_with_dc_reach_the_other_datacenter(two_dcs):
    dc1, dc2 = two_dcs
    c1 = consul.Consul(host=dc1.host, port=dc1.port)
    c2 = consul.Consul(host=dc2.host, port=dc2.port)
    assert c1.agent.service.register("web", port=8080)
    assert c2.agent.service.register("api", service_id="api-1", port=9000, tags=["v2"])
    _wait("dc1 to read dc2's catalog", lambda: "api" in c1.catalog.services(dc="dc2")[1])
    _, services = c2.catalog.services(dc="dc1")
    assert "web" in services and "api" not in services
    assert c1.catalog.datacenters() == ["dc1", "dc2"]
    assert c2.catalog.datacenters() == ["dc2", "dc1"]
    _, nodes = c1.health.service("api", dc="dc2")
    assert [n["Service"]["ID"] for n in nodes] == ["api-1"]
    assert nodes[0]["Node"]["Datacenter"] == "dc2"
    # A blocking query in dc2, from dc1: woken by a write in dc2.
    index, _ = c1.catalog.service("api", dc="dc2")
    got = {}

    def block():
        t = time.time()
        got["answer"] = c1.catalog.service("api", dc="dc2", index=index, wait="20s")
        got["took"] = time.time() - t

    t = threading.Thread(target=block)
    t.start()
    time.sleep(0.5)
    assert c2.agent.service.register("api", service_id="api-2", port=9001)
    t.join(30)
    new_index, nodes = got["answer"]
    assert int(new_index) > int(index)
    assert sorted(n["ServiceID"] for n in nodes) == ["api-1", "api-2"]
    assert got["took"] < 15
    # Config entries and intentions of dc2, read from dc1.
    # (written in dc2, it goes to the primary and is replicated back to dc2)
    assert c2.config.set("service-defaults", "api", {"Protocol": "http"})
    _wait("dc2's replicated entry, read from dc1",
          lambda: c1.config.get("service-defaults", "api", dc="dc2")["Protocol"] == "http")
    # A datacenter with no path: Consul's 500 and text.
    with pytest.raises(consul.exceptions.ConsulException) as e:
        c1.catalog.services(dc="dc9")
    assert "500 No path to datacenter" in str(e.value)
