//! Cluster trust: one CA for the whole cluster; every node issues itself a
//! leaf at start and accepts only peers whose leaf chains to the same CA
//! (mutual TLS), with ALPN `slip-link/1`. One crypto provider: aws-lc-rs.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use slip_proto::ids::NodeId;

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

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cluster CA: {0}")]
    Ca(String),
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The cluster's certificate authority, as PEM.
#[derive(Clone)]
pub struct ClusterCa {
    pub cert_pem: String,
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

    /// Issues this node's leaf certificate.
    pub fn issue(&self, node: &NodeId) -> Result<Identity, TlsError> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| TlsError::Ca(format!("key: {e}")))?;
        let issuer =
            Issuer::from_ca_cert_pem(&self.cert_pem, ca_key).map_err(|e| TlsError::Ca(format!("certificate: {e}")))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, node.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let leaf = params.signed_by(&key, &issuer)?;
        let ca_der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| TlsError::Ca(format!("certificate PEM: {e}")))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca_der).map_err(|e| TlsError::Ca(format!("certificate: {e}")))?;
        Ok(Identity {
            chain: vec![leaf.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            roots: Arc::new(roots),
        })
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
        let identity = loaded.issue(&NodeId::parse("n1").unwrap()).unwrap();
        identity.server_config().unwrap();
        identity.client_config().unwrap();
    }

    #[test]
    fn garbage_ca_is_a_clear_error() {
        let err = ClusterCa { cert_pem: "-----BEGIN nonsense".into(), key_pem: "x".into() }
            .issue(&NodeId::parse("n1").unwrap())
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("cluster CA"), "{err}");
        assert!(ClusterCa::load("/no/such/file", "/no/such/key").is_err());
    }
}
