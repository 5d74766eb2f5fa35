//! Cluster trust: one CA for the whole cluster, and mutual TLS with ALPN
//! `slip-link/1`: a node accepts only peers whose leaf chains to the CA. One
//! crypto provider: aws-lc-rs.
//!
//! A leaf names the role its holder may play (a URI SAN `slip-role:edge` or
//! `slip-role:control`) and, when issued for one node, its id
//! (`slip-node:<id>`). A peer whose `Hello` claims another role, or another id
//! where its certificate names one, is refused ([`CertClaims::admits`]), so an
//! edge, the internet-facing part, can neither join the ring as a control node
//! nor pass for a named node. Edges run with a leaf issued for them (`slip
//! gen-cert`) and never hold the CA key; control nodes may hold it and issue
//! their own leaf at start.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use slip_proto::ids::NodeId;
use slip_proto::link_pb::Role;

/// ALPN protocol of node-to-node links.
pub const ALPN: &[u8] = b"slip-link/1";
/// The name every leaf carries and every dialer checks: trust comes from the
/// CA, not from addresses, which change as machines come and go.
pub const SERVER_NAME: &str = "slip-node";
/// Keep-alive on an idle link, so a dead peer is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_millis(500);
/// Silence after which a link is taken for dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Streams a peer may open towards us at once (control + data lanes, with room).
const MAX_PEER_STREAMS: u32 = 64;
/// URI SAN prefix naming the role a leaf may play.
pub const ROLE_URI: &str = "slip-role:";
/// URI SAN prefix naming the one node a leaf was issued for.
pub const NODE_URI: &str = "slip-node:";
/// How long a leaf issued by `slip gen-cert` is valid, in days.
pub const LEAF_DAYS: i64 = 825;

/// Why certificates could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The cluster CA could not be read.
    #[error("cluster CA: {0}")]
    Ca(String),
    /// A certificate could not be made.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A node's certificate could not be read, or does not name what it must.
    #[error("node certificate: {0}")]
    Leaf(String),
}

/// What a leaf certificate lets its holder be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertClaims {
    /// The role the leaf was issued for.
    pub role: Role,
    /// The node id the leaf was issued for; `None`: any id of its role.
    pub node: Option<String>,
}

impl CertClaims {
    /// Whether a peer holding this leaf may say it is `node_id` in `role`;
    /// the reason if not.
    pub fn admits(&self, role: i32, node_id: &str) -> Result<(), String> {
        if role != self.role as i32 {
            let claimed = Role::try_from(role).map_or_else(|_| format!("role {role}"), |r| role_name(r).to_owned());
            return Err(format!("its certificate is for the {} role, its Hello says {claimed}", role_name(self.role)));
        }
        match &self.node {
            Some(node) if node != node_id => {
                Err(format!("its certificate is for node {node:?}, its Hello says {node_id:?}"))
            }
            _ => Ok(()),
        }
    }
}

/// The role and node a leaf (DER) names in its URI SANs. Exactly one role;
/// at most one node.
pub fn claims(der: &[u8]) -> Result<CertClaims, TlsError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Leaf(e.to_string()))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::Leaf(e.to_string()))?
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    let (mut roles, mut nodes) = (Vec::new(), Vec::new());
    for name in names {
        if let GeneralName::URI(uri) = name {
            if let Some(role) = uri.strip_prefix(ROLE_URI) {
                roles.push(role.to_owned());
            } else if let Some(node) = uri.strip_prefix(NODE_URI) {
                nodes.push(node.to_owned());
            }
        }
    }
    let role = match roles.as_slice() {
        [one] => role_named(one).ok_or_else(|| TlsError::Leaf(format!("unknown role {one:?}")))?,
        [] => return Err(TlsError::Leaf("it names no role (issue it with `slip gen-cert`)".into())),
        _ => return Err(TlsError::Leaf("it names more than one role".into())),
    };
    if nodes.len() > 1 {
        return Err(TlsError::Leaf("it names more than one node".into()));
    }
    Ok(CertClaims { role, node: nodes.pop() })
}

/// `edge` or `control`.
pub fn role_named(name: &str) -> Option<Role> {
    match name {
        "edge" => Some(Role::Edge),
        "control" => Some(Role::Control),
        _ => None,
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Control => "control",
        _ => "edge",
    }
}

/// A leaf certificate and its key, as PEM.
#[derive(Clone)]
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

/// The cluster's certificate authority, as PEM.
#[derive(Clone)]
pub struct ClusterCa {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

impl ClusterCa {
    /// A new CA (ECDSA P-256).
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "SLIP Sockets cluster CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key)?;
        Ok(Self { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// From configuration values that are either PEM text or a file path.
    pub fn load(cert: &str, key: &str) -> Result<Self, TlsError> {
        Ok(Self { cert_pem: pem_or_file(cert)?, key_pem: pem_or_file(key)? })
    }

    /// Issues a leaf for `role`, for one node if `node` is given.
    pub fn issue(&self, role: Role, node: Option<&NodeId>) -> Result<Leaf, TlsError> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| TlsError::Ca(format!("key: {e}")))?;
        let issuer =
            Issuer::from_ca_cert_pem(&self.cert_pem, ca_key).map_err(|e| TlsError::Ca(format!("certificate: {e}")))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        let uri = |s: String| rcgen::string::Ia5String::try_from(s).map(rcgen::SanType::URI);
        params.subject_alt_names.push(uri(format!("{ROLE_URI}{}", role_name(role)))?);
        let common_name = match node {
            Some(node) => {
                params.subject_alt_names.push(uri(format!("{NODE_URI}{node}"))?);
                format!("{} {node}", role_name(role))
            }
            None => format!("any {}", role_name(role)),
        };
        params.distinguished_name.push(DnType::CommonName, common_name);
        // A day back, for clocks a little behind; rotate before it ends (docs/security.md).
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(LEAF_DAYS);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let leaf = params.signed_by(&key, &issuer)?;
        Ok(Leaf { cert_pem: leaf.pem(), key_pem: key.serialize_pem() })
    }

    /// A leaf for `role` and this node, issued now, ready to link with.
    pub fn identity(&self, role: Role, node: &NodeId) -> Result<Identity, TlsError> {
        let leaf = self.issue(role, Some(node))?;
        Identity::new(&self.cert_pem, &leaf)
    }
}

fn pem_or_file(value: &str) -> Result<String, TlsError> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.to_owned());
    }
    std::fs::read_to_string(value).map_err(|e| TlsError::Ca(format!("reading {value}: {e}")))
}

/// A node's leaf certificate and key, and the CA it trusts.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
    claims: CertClaims,
}

impl Identity {
    /// From the CA's certificate and a leaf it issued (PEM text or paths).
    pub fn load(ca_cert: &str, leaf_cert: &str, leaf_key: &str) -> Result<Self, TlsError> {
        let leaf = Leaf { cert_pem: pem_or_file(leaf_cert)?, key_pem: pem_or_file(leaf_key)? };
        Self::new(&pem_or_file(ca_cert)?, &leaf)
    }

    fn new(ca_cert_pem: &str, leaf: &Leaf) -> Result<Self, TlsError> {
        let ca_der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
            .map_err(|e| TlsError::Ca(format!("certificate PEM: {e}")))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca_der).map_err(|e| TlsError::Ca(format!("certificate: {e}")))?;
        let cert = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
            .map_err(|e| TlsError::Leaf(format!("certificate PEM: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
            .map_err(|e| TlsError::Leaf(format!("key PEM: {e}")))?;
        let claims = claims(&cert)?;
        Ok(Self { chain: vec![cert], key, roots: Arc::new(roots), claims })
    }

    /// What this node's own leaf lets it be.
    pub fn claims(&self) -> &CertClaims {
        &self.claims
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    transport.max_concurrent_uni_streams(MAX_PEER_STREAMS.into());
    transport.max_concurrent_bidi_streams(0u32.into());
    Arc::new(transport)
}

fn config_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

impl Identity {
    /// Accepts only clients whose certificate chains to the cluster CA.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(config_error)?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config_error)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(config_error)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport());
        Ok(config)
    }

    /// Trusts only servers whose certificate chains to the cluster CA, and
    /// presents our own.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config_error)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(config_error)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport());
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_leaves_and_builds_both_configs() {
        let ca = ClusterCa::generate().unwrap();
        let loaded = ClusterCa::load(&ca.cert_pem, &ca.key_pem).unwrap();
        let identity = loaded.identity(Role::Control, &NodeId::parse("n1").unwrap()).unwrap();
        assert_eq!(identity.claims(), &CertClaims { role: Role::Control, node: Some("n1".into()) });
        identity.server_config().unwrap();
        identity.client_config().unwrap();
    }

    #[test]
    fn a_leaf_admits_only_its_role_and_its_node() {
        let ca = ClusterCa::generate().unwrap();
        let any_edge = ca.issue(Role::Edge, None).unwrap();
        let identity = Identity::load(&ca.cert_pem, &any_edge.cert_pem, &any_edge.key_pem).unwrap();
        let claims = identity.claims();
        assert_eq!(claims, &CertClaims { role: Role::Edge, node: None });
        assert!(claims.admits(Role::Edge as i32, "e1").is_ok());
        assert!(claims.admits(Role::Edge as i32, "e2").is_ok());
        let refused = claims.admits(Role::Control as i32, "c1").unwrap_err();
        assert!(refused.contains("certificate is for the edge role"), "{refused}");
        assert!(claims.admits(99, "c1").is_err());

        let one = CertClaims { role: Role::Control, node: Some("c1".into()) };
        assert!(one.admits(Role::Control as i32, "c1").is_ok());
        assert!(one.admits(Role::Control as i32, "c2").is_err());
    }

    #[test]
    fn a_leaf_without_a_role_or_garbage_is_refused() {
        assert!(matches!(claims(b"not a certificate"), Err(TlsError::Leaf(_))));
        // A leaf as the CA itself would be: no role.
        let ca = ClusterCa::generate().unwrap();
        let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        let err = claims(&der).unwrap_err();
        assert!(err.to_string().contains("names no role"), "{err}");
    }

    #[test]
    fn garbage_ca_is_a_clear_error() {
        let err = ClusterCa { cert_pem: "-----BEGIN nonsense".into(), key_pem: "x".into() }
            .identity(Role::Edge, &NodeId::parse("n1").unwrap())
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("cluster CA"), "{err}");
        assert!(ClusterCa::load("/no/such/file", "/no/such/key").is_err());
    }
}
