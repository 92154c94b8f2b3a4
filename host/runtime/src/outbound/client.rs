//! The outbound client: built once per runtime, shared by every call.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::address::{Resolver, system_resolver};

/// At most this many bytes are read from an operator's CA bundle.
pub const MAX_CA_BUNDLE_BYTES: u64 = 4 * 1024 * 1024;

/// What every call's outbound requests share: the TLS configuration (webpki roots, the system's
/// roots, and an operator's CA bundle) and the resolver. Cheap to clone.
#[derive(Clone)]
pub struct OutboundClient {
    pub(super) tls: Arc<rustls::ClientConfig>,
    pub(super) resolver: Resolver,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient").finish_non_exhaustive()
    }
}

impl OutboundClient {
    /// A client trusting Mozilla's roots (webpki-roots), the system's roots (when they can be
    /// read; unreadable ones are skipped and logged at debug), and the certificates of
    /// `ca_bundle`, a PEM file, when given. The bundle must hold at least one certificate.
    pub fn new(ca_bundle: Option<&Path>) -> Result<OutboundClient, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "a system CA certificate could not be read");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system CA certificates for outbound HTTPS");
        if let Some(path) = ca_bundle {
            for cert in read_ca_bundle(path)? {
                roots.add(cert).map_err(|e| {
                    format!(
                        "the CA bundle {}: a certificate is not usable: {e}",
                        path.display()
                    )
                })?;
            }
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("configuring outbound TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        // The connection is HTTP/1.1 (hyper's http1 client).
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(OutboundClient {
            tls: Arc::new(tls),
            resolver: system_resolver(),
        })
    }

    /// The same client with another resolver (tests resolve names to local servers with it).
    pub fn with_resolver(self, resolver: Resolver) -> OutboundClient {
        OutboundClient { resolver, ..self }
    }
}

fn read_ca_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("the CA bundle {shown}: {e}"))?;
    let mut pem = Vec::new();
    file.take(MAX_CA_BUNDLE_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("the CA bundle {shown}: {e}"))?;
    if pem.len() as u64 > MAX_CA_BUNDLE_BYTES {
        return Err(format!(
            "the CA bundle {shown} is larger than {MAX_CA_BUNDLE_BYTES} bytes"
        ));
    }
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the CA bundle {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("the CA bundle {shown} holds no PEM certificate"));
    }
    Ok(certs)
}
