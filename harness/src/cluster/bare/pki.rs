//! The bare cluster's PKI, made in Rust: one CA signing the API server's serving
//! certificate, the client certificates of the admin, the control-plane components
//! and the API server towards kubelets, and per node the kubelet's client and serving
//! certificates; plus the service-account signing key pair. Everything is written as
//! PEM files under the run's `pki/` directory.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("failed to make the {what} certificate: {source}")]
    Cert { what: String, source: rcgen::Error },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

/// Who a client certificate names: Kubernetes takes the user from the CN and the
/// groups from the O entries.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub(crate) user: String,
    pub(crate) groups: Vec<String>,
}

/// What the serving certificates must cover.
#[derive(Debug, Clone)]
pub struct PkiPlan {
    /// Addresses clients use to reach the API server (the control plane's fabric
    /// address, its host-side address, loopback, the `kubernetes` Service's IP).
    pub(crate) apiserver_ips: Vec<Ipv4Addr>,
    /// Per node: name and InternalIP (the kubelet serving certificate's SANs).
    pub(crate) nodes: Vec<(String, Ipv4Addr)>,
}

/// The DNS names of the `kubernetes` Service.
pub const APISERVER_DNS: [&str; 5] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
];

/// Every certificate of one cluster.
pub struct Pki {
    pub(crate) ca: CertPair,
    pub(crate) apiserver: CertPair,
    pub(crate) apiserver_kubelet_client: CertPair,
    pub(crate) admin: CertPair,
    pub(crate) controller_manager: CertPair,
    pub(crate) scheduler: CertPair,
    /// Thin multus on the nodes (reads pods and NADs, annotates pods). A member of
    /// system:masters: the bare cluster has no multus RBAC of its own.
    pub(crate) multus: CertPair,
    /// Per node, in the plan's order: (name, client, serving).
    pub(crate) kubelets: Vec<(String, CertPair, CertPair)>,
    /// Service-account token signing key (PKCS#8 PEM) and its public key (PEM).
    pub(crate) service_account_key_pem: String,
    pub(crate) service_account_pub_pem: String,
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Cert {
        what: what.to_string(),
        source,
    }
}

fn base_params(common_name: &str, orgs: &[String]) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    // A run's cluster lives minutes; the window only has to contain "now" on every
    // component's clock.
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    params.use_authority_key_identifier_extension = true;
    params
}

struct Ca {
    pair: CertPair,
    issuer: Issuer<'static, KeyPair>,
}

fn make_ca() -> Result<Ca, PkiError> {
    let key = KeyPair::generate().map_err(cert_err("CA"))?;
    let mut params = base_params("secnet-bare-ca", &[]);
    params.use_authority_key_identifier_extension = false;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(cert_err("CA"))?;
    let pair = CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    Ok(Ca {
        pair,
        issuer: Issuer::new(params, key),
    })
}

fn leaf(
    ca: &Ca,
    what: &str,
    mut params: CertificateParams,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<CertPair, PkiError> {
    let key = KeyPair::generate().map_err(cert_err(what))?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages;
    let cert = params.signed_by(&key, &ca.issuer).map_err(cert_err(what))?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn client(ca: &Ca, who: &ClientIdentity) -> Result<CertPair, PkiError> {
    leaf(
        ca,
        &who.user,
        base_params(&who.user, &who.groups),
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    )
}

fn serving(ca: &Ca, what: &str, dns: &[&str], ips: &[Ipv4Addr]) -> Result<CertPair, PkiError> {
    let mut params = base_params(what, &[]);
    for name in dns {
        let name = (*name).try_into().map_err(cert_err(what))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in ips {
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(*ip)));
    }
    leaf(ca, what, params, vec![ExtendedKeyUsagePurpose::ServerAuth])
}

fn id(user: &str, groups: &[&str]) -> ClientIdentity {
    ClientIdentity {
        user: user.to_string(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// The admin's identity: a member of `system:masters` (all rights, no RBAC needed).
pub fn admin_identity() -> ClientIdentity {
    id("secnet-admin", &["system:masters"])
}

/// A kubelet's identity, as the Node authorizer and NodeRestriction expect it.
pub fn kubelet_identity(node: &str) -> ClientIdentity {
    id(&format!("system:node:{node}"), &["system:nodes"])
}

impl Pki {
    pub fn generate(plan: &PkiPlan) -> Result<Pki, PkiError> {
        let ca = make_ca()?;
        let apiserver = serving(&ca, "kube-apiserver", &APISERVER_DNS, &plan.apiserver_ips)?;
        let apiserver_kubelet_client = client(
            &ca,
            &id("kube-apiserver-kubelet-client", &["system:masters"]),
        )?;
        let admin = client(&ca, &admin_identity())?;
        let controller_manager = client(&ca, &id("system:kube-controller-manager", &[]))?;
        let scheduler = client(&ca, &id("system:kube-scheduler", &[]))?;
        let multus = client(&ca, &id("secnet-multus", &["system:masters"]))?;
        let mut kubelets = Vec::new();
        for (name, ip) in &plan.nodes {
            let client_pair = client(&ca, &kubelet_identity(name))?;
            let serving_pair = serving(&ca, &format!("system:node:{name}"), &[name], &[*ip])?;
            kubelets.push((name.clone(), client_pair, serving_pair));
        }
        let sa = KeyPair::generate().map_err(cert_err("service-account key"))?;
        Ok(Pki {
            ca: ca.pair,
            apiserver,
            apiserver_kubelet_client,
            admin,
            controller_manager,
            scheduler,
            multus,
            kubelets,
            service_account_key_pem: sa.serialize_pem(),
            service_account_pub_pem: sa.public_key_pem(),
        })
    }

    /// Writes every file into `dir` (mode 0600 for keys) and returns their paths.
    pub fn write(&self, dir: &Path) -> Result<PkiFiles, PkiError> {
        let files = PkiFiles::under(dir);
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut out: Vec<(PathBuf, &str)> = vec![
            (files.ca_cert.clone(), &self.ca.cert_pem),
            (files.ca_key.clone(), &self.ca.key_pem),
            (files.sa_key.clone(), &self.service_account_key_pem),
            (files.sa_pub.clone(), &self.service_account_pub_pem),
        ];
        for (name, pair) in [
            ("apiserver", &self.apiserver),
            ("apiserver-kubelet-client", &self.apiserver_kubelet_client),
            ("admin", &self.admin),
            ("controller-manager", &self.controller_manager),
            ("scheduler", &self.scheduler),
            ("multus", &self.multus),
        ] {
            out.push((files.cert(name), &pair.cert_pem));
            out.push((files.key(name), &pair.key_pem));
        }
        for (node, client_pair, serving_pair) in &self.kubelets {
            for (name, pair) in [
                (format!("kubelet-{node}-client"), client_pair),
                (format!("kubelet-{node}-serving"), serving_pair),
            ] {
                out.push((files.cert(&name), &pair.cert_pem));
                out.push((files.key(&name), &pair.key_pem));
            }
        }
        for (path, text) in out {
            write_private(&path, text)?;
        }
        Ok(files)
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| PkiError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Where [`Pki::write`] puts each file.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    pub(crate) dir: PathBuf,
    pub(crate) ca_cert: PathBuf,
    pub(crate) ca_key: PathBuf,
    pub(crate) sa_key: PathBuf,
    pub(crate) sa_pub: PathBuf,
}

impl PkiFiles {
    pub fn under(dir: &Path) -> PkiFiles {
        PkiFiles {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        }
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PkiPlan {
        PkiPlan {
            apiserver_ips: vec![
                Ipv4Addr::new(192, 168, 159, 250),
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::new(10, 96, 0, 1),
            ],
            nodes: vec![
                ("node1".into(), Ipv4Addr::new(192, 168, 159, 137)),
                ("node2".into(), Ipv4Addr::new(192, 168, 159, 138)),
            ],
        }
    }

    /// `openssl` from Debian reads the files back: the chain verifies for the right
    /// purpose, and subjects and SANs are what Kubernetes' authenticators look at.
    fn openssl(args: &[&str]) -> Option<String> {
        let out = std::process::Command::new("openssl").args(args).output();
        match out {
            Ok(o) => Some(format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(_) if std::env::var_os("CI").is_none() => None,
            Err(e) => panic!("openssl is needed to read the certificates back: {e}"),
        }
    }

    #[test]
    fn every_certificate_verifies_against_the_ca_for_its_purpose() {
        let dir = crate::lab::ScratchDir::new("secnet-pki-test").unwrap();
        let pki = Pki::generate(&plan()).unwrap();
        let files = pki.write(dir.path()).unwrap();
        let ca = files.ca_cert.display().to_string();
        let checks = [
            ("apiserver", "sslserver"),
            ("apiserver-kubelet-client", "sslclient"),
            ("admin", "sslclient"),
            ("controller-manager", "sslclient"),
            ("scheduler", "sslclient"),
            ("kubelet-node1-client", "sslclient"),
            ("kubelet-node2-serving", "sslserver"),
        ];
        for (name, purpose) in checks {
            let cert = files.cert(name).display().to_string();
            let Some(out) = openssl(&["verify", "-CAfile", &ca, "-purpose", purpose, &cert]) else {
                eprintln!("SKIP: no openssl to read the certificates back");
                return;
            };
            assert!(out.contains(": OK"), "{name} ({purpose}): {out}");
        }
        // A client certificate is no serving certificate (and the other way round).
        let admin = files.cert("admin").display().to_string();
        let out = openssl(&["verify", "-CAfile", &ca, "-purpose", "sslserver", &admin]).unwrap();
        assert!(!out.contains(": OK"), "{out}");
        // A certificate from another CA is refused.
        let other = Pki::generate(&plan()).unwrap();
        let other_dir = crate::lab::ScratchDir::new("secnet-pki-test").unwrap();
        let other_files = other.write(other_dir.path()).unwrap();
        let stranger = other_files.cert("admin").display().to_string();
        let out = openssl(&["verify", "-CAfile", &ca, &stranger]).unwrap();
        assert!(!out.contains(": OK"), "{out}");
    }

    #[test]
    fn subjects_and_sans_are_what_kubernetes_reads() {
        let dir = crate::lab::ScratchDir::new("secnet-pki-test").unwrap();
        let files = Pki::generate(&plan()).unwrap().write(dir.path()).unwrap();
        let text = |name: &str| {
            let path = files.cert(name).display().to_string();
            openssl(&[
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "subjectAltName",
                "-in",
                &path,
            ])
        };
        let Some(api) = text("apiserver") else {
            eprintln!("SKIP: no openssl to read the certificates back");
            return;
        };
        for want in [
            "DNS:kubernetes.default.svc.cluster.local",
            "IP Address:192.168.159.250",
            "IP Address:10.96.0.1",
            "IP Address:127.0.0.1",
        ] {
            assert!(api.contains(want), "apiserver lacks {want}: {api}");
        }
        let kubelet = text("kubelet-node2-client").unwrap();
        assert!(
            kubelet.contains("O = system:nodes") && kubelet.contains("CN = system:node:node2"),
            "{kubelet}"
        );
        let serving = text("kubelet-node1-serving").unwrap();
        assert!(
            serving.contains("IP Address:192.168.159.137") && serving.contains("DNS:node1"),
            "{serving}"
        );
        let admin = text("admin").unwrap();
        assert!(admin.contains("O = system:masters"), "{admin}");
    }

    #[test]
    fn keys_are_private_and_the_service_account_pair_matches() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::lab::ScratchDir::new("secnet-pki-test").unwrap();
        let pki = Pki::generate(&plan()).unwrap();
        let files = pki.write(dir.path()).unwrap();
        let mode = std::fs::metadata(&files.sa_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = KeyPair::from_pem(&pki.service_account_key_pem).unwrap();
        assert_eq!(key.public_key_pem(), pki.service_account_pub_pem);
        assert!(
            pki.service_account_pub_pem
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
    }
}
