//! TLS for `wss://` ports: loading the configured certificates, choosing one by SNI, and
//! the rustls server configuration (TLS 1.2 and 1.3 with rustls' default suites, ALPN
//! `http/1.1`).

use crate::config::Config;
use crate::StartError;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// Picks a certificate by the client's SNI: an exact hostname, then a `*.` wildcard
/// matching one label, else the first configured certificate (also for clients that
/// send no SNI, such as those connecting by IP address).
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return Some(key.clone());
        }
        let parent = name.split_once('.').map(|(_, rest)| rest);
        Some(
            parent
                .and_then(|p| self.wildcard.get(p))
                .unwrap_or(&self.default)
                .clone(),
        )
    }
}

fn tls_error(key: String, file: &std::path::Path, reason: impl std::fmt::Display) -> StartError {
    StartError::Tls {
        key,
        file: file.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Builds the TLS configuration if any port is encrypted.
///
/// # Errors
/// [`StartError::Tls`] naming the key and file of a certificate or private key that is
/// missing, unreadable, malformed, or does not match its certificate.
pub(crate) fn server_config(
    config: &Config,
) -> Result<Option<Arc<rustls::ServerConfig>>, StartError> {
    if config.ports.iter().all(|p| p.is_unencrypted) {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for (i, cert) in config.certs.iter().enumerate() {
        let chain_key = format!("certs[{i}].pubchain_path");
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&cert.pubchain_path)
                .map_err(|e| tls_error(chain_key.clone(), &cert.pubchain_path, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| tls_error(chain_key.clone(), &cert.pubchain_path, e))?;
        if chain.is_empty() {
            return Err(tls_error(
                chain_key,
                &cert.pubchain_path,
                "no PEM certificate in the file",
            ));
        }
        let key_key = format!("certs[{i}].privkey_path");
        let key = PrivateKeyDer::from_pem_file(&cert.privkey_path)
            .map_err(|e| tls_error(key_key.clone(), &cert.privkey_path, e))?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| tls_error(key_key.clone(), &cert.privkey_path, e))?;
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|e| {
            tls_error(
                key_key,
                &cert.privkey_path,
                format!(
                    "does not match the certificate in {} ({e})",
                    cert.pubchain_path.display()
                ),
            )
        })?;
        let certified = Arc::new(certified);
        default.get_or_insert_with(|| certified.clone());
        for name in &cert.hostnames {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) => wildcard.insert(parent.to_string(), certified.clone()),
                None => exact.insert(name, certified.clone()),
            };
        }
    }
    let Some(default) = default else {
        return Err(StartError::Unsupported(
            "certs: an encrypted port needs at least one certificate".into(),
        ));
    };
    let resolver = Arc::new(SniResolver {
        exact,
        wildcard,
        default,
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Unsupported(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(tls)))
}
