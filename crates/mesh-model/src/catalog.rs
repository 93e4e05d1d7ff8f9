//! Catalog records: nodes, service instances, health checks (filled in by the control-plane work).
