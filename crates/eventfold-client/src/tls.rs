//! How `HttpStore` trusts an `https://` server: the platform's roots, the CA
//! certificates given to it, and (pinning) a given certificate that the server
//! presents itself.
//!
//! The common self-signed certificate (`openssl req -x509 ...`) is marked as a CA,
//! and a strict verifier refuses a CA certificate used by a server
//! (`CaUsedAsEndEntity`), although `curl --cacert` takes it. So a certificate given
//! with `with_root_certificate` is also *pinned*: when the server presents exactly
//! that certificate (byte for byte), it is trusted whatever else a chain check says,
//! as SSH trusts a known host key. The TLS handshake's signatures are still checked
//! against it, so only the holder of its private key gets through.

use std::sync::Arc;

use eventfold_core::{Error, Result};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// The certificates of a PEM bundle (`Backend` error naming the problem when it holds
/// none or is not PEM).
pub(crate) fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Backend(format!("not a PEM certificate: {e}")))?;
    if certificates.is_empty() {
        return Err(Error::Backend(
            "the PEM holds no certificate (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certificates)
}

/// The TLS settings of a client that trusts the platform's roots and `given` (as
/// extra roots and as pinned certificates).
pub(crate) fn client_config(given: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls_platform_verifier::Verifier::new_with_extra_roots(
        given.iter().cloned(),
        provider.clone(),
    )
    .map_err(|e| Error::Backend(format!("cannot load the certificates to trust: {e}")))?;
    let verifier = PinnedOrRoots {
        roots,
        pinned: given.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Backend(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Trusts what the platform's verifier (with the extra roots) trusts, and the pinned
/// certificates when the server presents one of them.
#[derive(Debug)]
struct PinnedOrRoots {
    roots: rustls_platform_verifier::Verifier,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinnedOrRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.roots.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(error) => Err(error),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.roots.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.roots.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.roots.supported_verify_schemes()
    }
}
