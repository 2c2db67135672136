//! Kubeconfig files (the `v1` `Config` kind), written with serde: one per client of
//! the API server (admin, controller-manager, scheduler, each kubelet), each with the
//! CA and its client certificate embedded, so a file is usable on its own.

use std::path::Path;

use base64::Engine;
use serde::Serialize;

use super::pki::CertPair;

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) clusters: Vec<Named<ClusterEntry>>,
    pub(crate) users: Vec<Named<UserEntry>>,
    pub(crate) contexts: Vec<Named<ContextEntry>>,
    pub(crate) current_context: String,
}

#[derive(Debug, Serialize)]
pub struct Named<T> {
    pub(crate) name: String,
    #[serde(flatten)]
    pub(crate) value: T,
}

#[derive(Debug, Serialize)]
pub struct ClusterEntry {
    pub(crate) cluster: ClusterFields,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterFields {
    pub(crate) server: String,
    pub(crate) certificate_authority_data: String,
}

#[derive(Debug, Serialize)]
pub struct UserEntry {
    pub(crate) user: UserFields,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserFields {
    pub(crate) client_certificate_data: String,
    pub(crate) client_key_data: String,
}

#[derive(Debug, Serialize)]
pub struct ContextEntry {
    pub(crate) context: ContextFields,
}

#[derive(Debug, Serialize)]
pub struct ContextFields {
    pub(crate) cluster: String,
    pub(crate) user: String,
}

fn b64(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem)
}

impl Kubeconfig {
    /// A config for `user` talking to `server` (`https://host:port`).
    pub fn new(cluster: &str, server: &str, ca_pem: &str, user: &str, cred: &CertPair) -> Self {
        Kubeconfig {
            api_version: "v1",
            kind: "Config",
            clusters: vec![Named {
                name: cluster.to_string(),
                value: ClusterEntry {
                    cluster: ClusterFields {
                        server: server.to_string(),
                        certificate_authority_data: b64(ca_pem),
                    },
                },
            }],
            users: vec![Named {
                name: user.to_string(),
                value: UserEntry {
                    user: UserFields {
                        client_certificate_data: b64(&cred.cert_pem),
                        client_key_data: b64(&cred.key_pem),
                    },
                },
            }],
            contexts: vec![Named {
                name: cluster.to_string(),
                value: ContextEntry {
                    context: ContextFields {
                        cluster: cluster.to_string(),
                        user: user.to_string(),
                    },
                },
            }],
            current_context: cluster.to_string(),
        }
    }

    /// JSON is YAML: kubectl, the Go components and kube-rs all read it.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("a kubeconfig serialises")
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)?
            .write_all(self.to_text().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_rs_reads_what_we_write() {
        let cred = CertPair {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let kc = Kubeconfig::new("sn000001", "https://10.0.0.1:6443", "CA", "admin", &cred);
        let parsed = kube::config::Kubeconfig::from_yaml(&kc.to_text()).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("sn000001"));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0E="));
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.client_certificate_data.as_deref(), Some("Q0VSVA=="));
        let ctx = parsed.contexts[0].context.as_ref().unwrap();
        assert_eq!(
            (ctx.cluster.as_str(), ctx.user.as_deref()),
            ("sn000001", Some("admin"))
        );
    }
}
