//! Whereabouts on a real cluster: its IPPools as the API server stores them (an
//! address is the pool's first address plus the offset its allocation is keyed
//! by) and pods deleted with no grace period.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod as KPod;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

use super::KubeCluster;
use crate::cluster::ClusterError;
use crate::cluster::ability::{Fut, IpAllocation, Whereabouts};

/// whereabouts' IPPool kind.
fn ippool() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("whereabouts.cni.cncf.io", "v1alpha1", "IPPool"),
        "ippools",
    )
}

/// The allocations of one IPPool's `spec`: `range` and `allocations` keyed by
/// the offset from the range's first address. Entries that do not parse are left
/// out (whereabouts ignores them too).
pub fn pool_allocations(spec: &Value) -> Vec<IpAllocation> {
    let range = spec["range"].as_str().unwrap_or_default();
    let Some(first) = range
        .split('/')
        .next()
        .and_then(|a| a.parse::<IpAddr>().ok())
    else {
        return Vec::new();
    };
    let Some(allocations) = spec["allocations"].as_object() else {
        return Vec::new();
    };
    allocations
        .iter()
        .filter_map(|(offset, a)| {
            let offset: u128 = offset.parse().ok()?;
            let ip = match first {
                IpAddr::V4(v4) => IpAddr::V4(
                    u32::try_from(u128::from(u32::from(v4)) + offset)
                        .ok()?
                        .into(),
                ),
                IpAddr::V6(v6) => IpAddr::V6(u128::from(v6).checked_add(offset)?.into()),
            };
            Some(IpAllocation {
                pool: range.to_string(),
                ip,
                pod: a["podref"].as_str().unwrap_or_default().to_string(),
                ifname: a["ifname"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

impl Whereabouts for KubeCluster {
    fn allocations(&self) -> Fut<'_, Vec<IpAllocation>> {
        Box::pin(async move {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ippool());
            let pools = api
                .list(&ListParams::default())
                .await
                .map_err(|e| ClusterError::api("list whereabouts' IPPools", e))?;
            let mut all: Vec<IpAllocation> = pools
                .items
                .iter()
                .flat_map(|p| pool_allocations(&p.data["spec"]))
                .collect();
            all.sort();
            Ok(all)
        })
    }

    fn force_delete_pod<'a>(&'a self, namespace: &'a str, name: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            let ns = self.scenario_namespace(namespace);
            let api: Api<KPod> = Api::namespaced(self.client.clone(), &ns);
            match api
                .delete(name, &DeleteParams::default().grace_period(0))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if super::is_not_found(&e) => Ok(()),
                Err(e) => Err(ClusterError::api(
                    format!("force-delete pod {ns}/{name}"),
                    e,
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_is_the_first_address_plus_its_offset() {
        let spec = serde_json::json!({
            "range": "10.252.0.0/24",
            "allocations": {
                "5": {"id": "c1", "podref": "ns/a", "ifname": "net1"},
                "300": {"id": "c2", "podref": "ns/b"},
                "x": {"id": "c3", "podref": "ns/c"},
            }
        });
        let got: Vec<(String, String)> = pool_allocations(&spec)
            .into_iter()
            .map(|a| (a.ip.to_string(), a.pod))
            .collect();
        assert_eq!(
            got,
            [
                ("10.252.1.44".to_string(), "ns/b".to_string()),
                ("10.252.0.5".to_string(), "ns/a".to_string()),
            ]
        );
        let v6 = serde_json::json!({"range": "fd00:252::/64", "allocations": {"17": {"podref": "ns/a"}}});
        assert_eq!(pool_allocations(&v6)[0].ip.to_string(), "fd00:252::11");
    }
}
