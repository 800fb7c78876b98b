//! Connecting to PostgreSQL: TLS through rustls (already kye's TLS for HTTP), as `sslmode`
//! asks, with libpq's meanings: not at all (`disable`); encrypted without verifying the
//! certificate (`prefer`, `require`); or verified against root certificates: the chain only
//! (`verify-ca`), or the chain and the host name (`verify-full`). The roots are those of the
//! PEM file `sslrootcert` names; `verify-full` alone may use the system's (without
//! `sslrootcert`, or with `sslrootcert=system`): any certificate the system trusts for some
//! name would pass a check of the chain alone, so `verify-ca` needs a file (libpq fails
//! without one too). As in libpq, a root certificate file makes `require` (and `prefer`, when
//! the server offers TLS) verify the chain as `verify-ca` does.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::url::SslMode;

/// `sslrootcert=system`: the system's root certificates (libpq's word; it wins over a file of
/// that name, as in libpq: write `./system` for the file).
pub(crate) const SYSTEM_ROOTS: &str = "system";

/// Makes TLS connections for the PostgreSQL client.
#[derive(Clone)]
pub(crate) struct Tls {
    config: Arc<ClientConfig>,
}

impl Tls {
    /// The TLS settings of `mode` (`None` for `disable`), trusting the certificates of the PEM
    /// file `root_cert` when verifying (for `verify-full` without it, or with `system`, the
    /// system's).
    pub(crate) fn new(mode: SslMode, root_cert: Option<&Path>) -> Result<Option<Tls>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let config = match (mode, root_cert) {
            (SslMode::Disable, _) => return Ok(None),
            (SslMode::Prefer | SslMode::Require, None) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth(),
            // libpq: with a root certificate file, `require` is `verify-ca`.
            (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, _) => {
                let roots = Arc::new(roots(mode, root_cert)?);
                let chain = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| format!("sslmode={}: {e}", mode.as_str()))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
                    .with_no_client_auth()
            }
            (SslMode::VerifyFull, _) => builder
                .with_root_certificates(roots(mode, root_cert)?)
                .with_no_client_auth(),
        };
        Ok(Some(Tls {
            config: Arc::new(config),
        }))
    }
}

/// The certificates verifying modes trust: those of the PEM file `root_cert`; for
/// `verify-full` without it (or with `system`), the system's. Checking the chain alone
/// against the system's roots would pass anyone's certificate for any name: refused.
fn roots(mode: SslMode, root_cert: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let system = root_cert.is_none_or(|p| p == Path::new(SYSTEM_ROOTS));
    if system && mode != SslMode::VerifyFull {
        return Err(format!(
            "sslmode={} needs sslrootcert=FILE, the PEM file of the root certificates that \
             signed the server's certificate: the host name is not checked, so the system's \
             roots would pass any certificate they trust for some name (use \
             sslmode=verify-full to verify against the system's roots)",
            mode.as_str()
        ));
    }
    let mode = mode.as_str();
    match root_cert.filter(|p| *p != Path::new(SYSTEM_ROOTS)) {
        Some(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslmode={mode}: cannot read sslrootcert {shown}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    format!(
                        "sslmode={mode}: sslrootcert {shown} is not a PEM certificate file: {e}"
                    )
                })?;
                roots.add(cert).map_err(|e| {
                    format!("sslmode={mode}: sslrootcert {shown} holds a certificate rustls cannot use: {e}")
                })?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "sslmode={mode}: sslrootcert {shown} holds no certificate (expected PEM: \
                     -----BEGIN CERTIFICATE-----)"
                ));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(format!(
                    "sslmode={mode}: no root certificates found on this system (install \
                     ca-certificates, or name a PEM file with sslrootcert=)"
                ));
            }
        }
    }
    Ok(roots)
}

/// libpq's `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
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

/// libpq's `prefer` and `require`: encryption without a verified certificate.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection to the server.
pub(crate) struct Stream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Stream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// Connects one stream to one server name.
pub(crate) struct Connect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> MakeTlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, io::Error> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Connect {
            config: self.config.clone(),
            name,
        })
    }
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { Ok(Stream(connector.connect(self.name, stream).await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    fn refused(mode: SslMode, file: &Path) -> String {
        match Tls::new(mode, Some(file)) {
            Ok(_) => panic!("{} was taken", file.display()),
            Err(e) => e,
        }
    }

    #[test]
    fn root_certificate_files_are_read_or_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let ca = fixture("ca.pem");
        assert_eq!(roots(SslMode::VerifyCa, Some(&ca)).unwrap().len(), 1);
        // One or more certificates in one file.
        let bundle = dir.path().join("bundle.pem");
        let text = std::fs::read_to_string(fixture("other-ca.pem")).unwrap()
            + &std::fs::read_to_string(&ca).unwrap();
        std::fs::write(&bundle, text).unwrap();
        assert_eq!(roots(SslMode::VerifyFull, Some(&bundle)).unwrap().len(), 2);
        let missing = dir.path().join("missing.pem");
        let e = refused(SslMode::VerifyFull, &missing);
        assert!(
            e.contains("cannot read sslrootcert") && e.contains("missing.pem"),
            "{e}"
        );
        // Not PEM at all, or PEM without a certificate (a key).
        let text_file = dir.path().join("notes.txt");
        std::fs::write(&text_file, "a root certificate, honest\n").unwrap();
        for file in [text_file.as_path(), fixture("localhost.key").as_path()] {
            let e = refused(SslMode::VerifyCa, file);
            assert!(e.contains("holds no certificate"), "{e}");
            assert!(e.contains(&file.display().to_string()), "{e}");
        }
        // A certificate block that is not base64, or not a certificate.
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = refused(SslMode::VerifyCa, &broken);
        assert!(e.contains("is not a PEM certificate file"), "{e}");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = refused(SslMode::VerifyFull, &broken);
        assert!(e.contains("rustls cannot use"), "{e}");
        // libpq: a root certificate file makes `require` (and `prefer`) verify, so it is read;
        // `disable` never looks at it.
        for mode in [SslMode::Require, SslMode::Prefer] {
            let e = refused(mode, &missing);
            assert!(e.contains(&format!("sslmode={}", mode.as_str())), "{e}");
        }
        assert!(Tls::new(SslMode::Require, None).unwrap().is_some());
        assert!(Tls::new(SslMode::Disable, Some(&missing))
            .unwrap()
            .is_none());
    }

    /// The system's roots vouch for anyone who controls some name: they verify only with the
    /// host name checked (`verify-full`). `verify-ca` without a root certificate file took any
    /// certificate they trust, for any name.
    #[test]
    fn the_systems_roots_verify_only_with_the_host_name() {
        let system = Some(Path::new(SYSTEM_ROOTS));
        for (mode, root) in [
            (SslMode::VerifyCa, None),
            (SslMode::VerifyCa, system),
            (SslMode::Require, system),
            (SslMode::Prefer, system),
        ] {
            let shown = mode.as_str();
            let e = Tls::new(mode, root)
                .err()
                .unwrap_or_else(|| panic!("sslmode={shown} with {root:?} was taken"));
            assert!(
                e.contains(&format!("sslmode={shown} needs sslrootcert=FILE")),
                "{e}"
            );
        }
        if !rustls_native_certs::load_native_certs().certs.is_empty() {
            assert!(Tls::new(SslMode::VerifyFull, None).unwrap().is_some());
            assert!(Tls::new(SslMode::VerifyFull, Some(Path::new(SYSTEM_ROOTS)))
                .unwrap()
                .is_some());
        }
    }
}
