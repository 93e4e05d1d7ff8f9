//! Layers: PublishLayerVersion, GetLayerVersion, DeleteLayerVersion, ListLayerVersions,
//! ListLayers, and the `Layers` member of a function's configuration. Must not depend on HTTP.

use super::{
    Caller, Functions, iso_now, paging,
    requests::{PageQuery, PublishLayerVersionRequest},
    responses::{
        LayerContent, LayerItem, LayerVersionResponse, ListLayerVersionsResponse,
        ListLayersResponse,
    },
    validate::{description, zip_of},
};
use crate::{
    arn, code,
    decode::{Member, StrList},
    state::{LayerUse, LayerVersion},
    wire::ApiError,
};

// === impl Functions ===

impl Functions<'_> {
    fn layer_arn(&self, name: &str) -> String {
        let cfg = self.config();
        format!("arn:aws:lambda:{}:{}:layer:{name}", cfg.region, cfg.account)
    }

    /// The layer versions a function's `Layers` member names (at most 5, each existing here).
    pub(super) fn layer_uses(
        &self,
        list: &Member<Vec<Member<String>>>,
    ) -> Result<Vec<LayerUse>, ApiError> {
        let list = match list {
            Member::Missing => return Ok(Vec::new()),
            Member::Invalid => {
                return Err(ApiError::validation("layers", "", "Member must be a list"));
            }
            Member::Valid(list) => list,
        };
        if list.len() > 5 {
            return Err(ApiError::invalid_parameter(
                "Cannot reference more than 5 layers.",
            ));
        }
        let cfg = self.config();
        let mut out = Vec::new();
        for l in list {
            let s = l.as_deref().unwrap_or_default();
            let lr = arn::parse_layer_version_arn(s).map_err(|_| {
                ApiError::validation(
                    "layers",
                    s,
                    "Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+",
                )
            })?;
            let lv = (lr.region == cfg.region && lr.account == cfg.account)
                .then(|| self.p.inner.state.layer_version(&lr.name, lr.version))
                .flatten()
                .ok_or_else(|| {
                    ApiError::invalid_parameter(format!("Layer version {s} does not exist."))
                })?;
            out.push(LayerUse {
                arn: s.to_owned(),
                code_size: lv.code_size,
                code_key: lv.code_key,
            });
        }
        Ok(out)
    }

    fn layer_version_response(&self, lv: &LayerVersion) -> LayerVersionResponse {
        LayerVersionResponse {
            compatible_architectures: lv.compatible_architectures.clone(),
            compatible_runtimes: lv.compatible_runtimes.clone(),
            content: LayerContent {
                code_sha256: lv.code_sha256.clone(),
                code_size: lv.code_size,
                location: format!("{}/code/{}", self.p.inner.endpoint, lv.code_key),
            },
            created_date: lv.created.clone(),
            description: lv.description.clone(),
            layer_arn: self.layer_arn(&lv.name),
            layer_version_arn: format!("{}:{}", self.layer_arn(&lv.name), lv.version),
            license_info: lv.license_info.clone(),
            version: lv.version,
        }
    }

    /// PublishLayerVersion.
    pub(crate) fn publish_layer(
        &self,
        caller: &Caller<'_>,
        name: &str,
        req: PublishLayerVersionRequest,
    ) -> Result<LayerVersionResponse, ApiError> {
        let zip = zip_of(&req.content)?;
        let installed = code::install_zip(self.p.inner.state.data_dir(), &zip)?;
        let strings = |m: &Member<StrList>| m.strings().unwrap_or_default().to_vec();
        let description = description(&req.description)?;
        let lv = self
            .p
            .inner
            .state
            .publish_layer(name, |version| LayerVersion {
                name: name.to_owned(),
                version,
                description,
                created: iso_now(),
                code_sha256: installed.sha256_b64,
                code_size: installed.size,
                code_key: installed.key,
                compatible_runtimes: strings(&req.compatible_runtimes),
                compatible_architectures: strings(&req.compatible_architectures),
                license_info: req.license_info.into_option(),
            })?;
        let out = self.layer_version_response(&lv);
        let params = serde_json::json!({"layerName": name});
        self.record_call(caller, "PublishLayerVersion20181031", params, &out);
        Ok(out)
    }

    /// GetLayerVersion.
    pub(crate) fn get_layer_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<LayerVersionResponse, ApiError> {
        let lv = self
            .p
            .inner
            .state
            .layer_version(name, version)
            .ok_or_else(|| ApiError::not_found("The resource you requested does not exist."))?;
        Ok(self.layer_version_response(&lv))
    }

    /// DeleteLayerVersion (of a version that may not exist).
    pub(crate) fn delete_layer_version(&self, name: &str, version: u64) -> Result<(), ApiError> {
        self.p.inner.state.delete_layer_version(name, version)
    }

    /// ListLayerVersions, the newest first.
    pub(crate) fn list_layer_versions(
        &self,
        name: &str,
        query: &PageQuery,
    ) -> Result<ListLayerVersionsResponse, ApiError> {
        let page = query.check()?;
        let mut versions = self.p.inner.state.layer_versions(name);
        // AWS lists the newest version first.
        versions.reverse();
        let items: Vec<(String, LayerVersionResponse)> = versions
            .iter()
            .map(|lv| {
                (
                    format!("{:020}", u64::MAX - lv.version),
                    self.layer_version_response(lv),
                )
            })
            .collect();
        let (layer_versions, next_marker) = paging::page_after(items, &page);
        Ok(ListLayerVersionsResponse {
            layer_versions,
            next_marker,
        })
    }

    /// ListLayers, each with its latest version.
    pub(crate) fn list_layers(&self, query: &PageQuery) -> Result<ListLayersResponse, ApiError> {
        let page = query.check()?;
        let items: Vec<(String, LayerItem)> = self
            .p
            .inner
            .state
            .layer_names()
            .into_iter()
            .filter_map(|n| {
                let latest = self.p.inner.state.layer_versions(&n).pop()?;
                Some((
                    n.clone(),
                    LayerItem {
                        latest_matching_version: self.layer_version_response(&latest),
                        layer_arn: self.layer_arn(&n),
                        layer_name: n,
                    },
                ))
            })
            .collect();
        let (layers, next_marker) = paging::page_after(items, &page);
        Ok(ListLayersResponse {
            layers,
            next_marker,
        })
    }
}
