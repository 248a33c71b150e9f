//! TLS for the connections: rustls with the `ring` provider, the server certificate checked as
//! `sslmode` says (see [`TlsMode`]). `prefer` and `require` encrypt without verifying the
//! certificate, as libpq does; `verify-ca` checks the chain against the roots (the `sslrootcert`
//! PEM file, else the system's roots) and `verify-full` also the host name.

use std::{fs, path::Path, sync::Arc};

use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::config::TlsMode;
use crate::StoreError;

/// The connector for `mode` (for `disable` too: tokio-postgres then never calls it).
pub(crate) fn connector(
    mode: TlsMode,
    root_cert: Option<&Path>,
) -> Result<MakeRustlsConnect, StoreError> {
    // The `ring` provider (not aws-lc-rs, which needs cmake and a longer build): rustls 0.23.48
    // deprecates it for lacking post-quantum key exchange; classical ECDHE is what PostgreSQL
    // servers offer today.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|_| StoreError::InvalidDatabaseUrl("no TLS protocol version available"))?;
    let config = match mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(algorithms)))
            .with_no_client_auth(),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let roots = Arc::new(roots(root_cert)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|_| StoreError::InvalidDatabaseUrl("no usable root certificate"))?;
            match mode {
                TlsMode::VerifyCa => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
                    .with_no_client_auth(),
                _ => builder.with_webpki_verifier(webpki).with_no_client_auth(),
            }
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The roots: the certificates of the `sslrootcert` PEM file, or the system's.
fn roots(root_cert: Option<&Path>) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let pem = fs::read(path)
                .map_err(|_| StoreError::InvalidDatabaseUrl("sslrootcert cannot be read"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|_| {
                    StoreError::InvalidDatabaseUrl("sslrootcert is not a PEM certificate file")
                })?;
                store.add(cert).map_err(|_| {
                    StoreError::InvalidDatabaseUrl("sslrootcert holds an unusable certificate")
                })?;
            }
        }
        None => {
            // Unreadable entries of the system store are skipped, as every TLS client does.
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
        }
    }
    if store.is_empty() {
        return Err(StoreError::InvalidDatabaseUrl(
            "no root certificate to verify the server with (give sslrootcert)",
        ));
    }
    Ok(store)
}

/// `prefer` / `require`: any certificate; the handshake signatures are still checked (the
/// connection is encrypted to whoever holds the certificate's key).
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the webpki verifier, except that a certificate whose chain verified may name
/// another host. (webpki checks the chain before the name, so a name error means the chain is
/// good.)
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::{TlsMode, connector};

    #[test]
    fn every_mode_builds_and_a_missing_root_file_is_refused() {
        for mode in [TlsMode::Disable, TlsMode::Prefer, TlsMode::Require] {
            assert!(connector(mode, None).is_ok());
        }
        let missing = std::path::Path::new("/nonexistent/cardvault-root.pem");
        let e = connector(TlsMode::VerifyFull, Some(missing))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("sslrootcert"), "{e}");
    }
}
