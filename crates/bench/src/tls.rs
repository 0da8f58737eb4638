//! The certificates of the bench: a self-signed one for `localhost` / `127.0.0.1` (the reference,
//! and the realtime targets when Thingline does not generate one), and PEM files read as rustls
//! wants them (the floor server's chain, the realtime clients' trusted roots).

use std::path::Path;

use anyhow::{Context, Result};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A fresh self-signed certificate and key for `localhost` and `127.0.0.1`.
pub fn self_signed() -> Result<rcgen::CertifiedKey<rcgen::KeyPair>> {
    rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .context("generating a self-signed certificate")
}

/// Every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))
}
