//! Headless Chromium driven through chromedriver (WebDriver, with fantoccini) for the `panel`
//! benchmark: chromedriver started on a free port (`--port=0`, read back from its start line),
//! one browser session per profile directory, everything killed at the end (also when the bench
//! bails out: [`Driver`]'s `Drop`).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// A chromedriver process (leading a process group of its own) and the browser profiles of the
/// sessions it started.
pub struct Driver {
    child: Child,
    /// `http://127.0.0.1:PORT`
    url: String,
    chromium: PathBuf,
    /// Where the sessions' profile directories are made.
    profiles_root: PathBuf,
    profiles: Vec<PathBuf>,
    /// `--ignore-certificate-errors-spki-list` for the server's certificate, when known.
    trusted_spki: Option<String>,
}

impl Driver {
    /// Starts `chromedriver --port=0` and waits until `/status` says it is ready.
    pub async fn start(chromedriver: &Path, chromium: &Path, profiles_root: &Path) -> Result<Driver> {
        if !chromium.is_file() {
            bail!("no Chromium at {} (install the Debian package chromium, or pass --chromium)", chromium.display());
        }
        let mut child = Command::new(chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!("starting {} (install chromium-driver, or pass --chromedriver)", chromedriver.display())
            })?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("chromedriver's stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::fs::create_dir_all(profiles_root).with_context(|| format!("creating {}", profiles_root.display()))?;
        let mut driver = Driver {
            child,
            url: String::new(),
            chromium: chromium.to_path_buf(),
            profiles_root: profiles_root.to_path_buf(),
            profiles: Vec::new(),
            trusted_spki: None,
        };
        let until = Instant::now() + Duration::from_secs(20);
        let port = loop {
            let line = rx
                .recv_timeout(until.saturating_duration_since(Instant::now()))
                .map_err(|_| anyhow!("chromedriver did not say on which port it listens within 20 s"))?;
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                break digits.parse::<u16>().with_context(|| format!("chromedriver's port in {line:?}"))?;
            }
        };
        driver.url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder().no_proxy().build().context("building a client")?;
        loop {
            let ready = match client.get(format!("{}/status", driver.url)).timeout(Duration::from_secs(2)).send().await
            {
                Ok(r) => r.json::<Value>().await.ok().is_some_and(|v| v["value"]["ready"] == json!(true)),
                Err(_) => false,
            };
            if ready {
                return Ok(driver);
            }
            if Instant::now() >= until {
                bail!("chromedriver at {} not ready within 20 s", driver.url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes the sessions started from now on trust the server's (self-signed) certificate
    /// `cert_pem` by its key: Chromium then treats its connections as secure, and caches what
    /// it loads (it caches nothing from a site whose certificate error was only ignored, so a
    /// "warm" load would fetch every asset again).
    pub fn trust(&mut self, cert_pem: &Path) -> Result<()> {
        let certs = crate::tls::read_certs(cert_pem)?;
        let cert = certs.first().ok_or_else(|| anyhow!("no certificate in {}", cert_pem.display()))?;
        self.trusted_spki = Some(spki_sha256_base64(cert.as_ref())?);
        Ok(())
    }

    /// A new session: headless Chromium with a fresh profile (an empty cache).
    pub async fn session(&mut self, script_timeout: Duration) -> Result<Client> {
        let profile = self.profiles_root.join(format!("profile-{}", self.profiles.len()));
        std::fs::create_dir_all(&profile).with_context(|| format!("creating {}", profile.display()))?;
        self.profiles.push(profile.clone());
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--ignore-certificate-errors".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if let Some(spki) = &self.trusted_spki {
            args.push(format!("--ignore-certificate-errors-spki-list={spki}"));
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert("goog:chromeOptions".into(), json!({"binary": self.chromium, "args": args}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(connector).capabilities(caps).connect(&self.url),
        )
        .await
        .map_err(|_| anyhow!("Chromium did not start within 60 s"))?
        .context("starting Chromium through chromedriver")?;
        client
            .update_timeouts(TimeoutConfiguration::new(Some(script_timeout), Some(script_timeout), None))
            .await
            .context("setting the session's timeouts")?;
        Ok(client)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        for profile in &self.profiles {
            let marker = format!("--user-data-dir={}", profile.display());
            for pid in pids_with_arg(&marker) {
                // SAFETY: kill(2) on a browser process this driver started (its command line
                // names the profile directory made for it).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pgid) = i32::try_from(self.child.id()) {
                // SAFETY: the process group chromedriver leads (spawned with process_group(0)).
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The pids whose command line holds `arg`.
fn pids_with_arg(arg: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

/// The base64 of the SHA-256 of a DER certificate's SubjectPublicKeyInfo (Chromium's
/// `--ignore-certificate-errors-spki-list` format).
fn spki_sha256_base64(der: &[u8]) -> Result<String> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?, serialNumber,
    // signature, issuer, validity, subject, subjectPublicKeyInfo, … }, … }
    let (_, cert, _) = der_item(der)?;
    let (_, mut tbs, _) = der_item(cert)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der_item(tbs)?.2;
    }
    for _ in 0..5 {
        tbs = der_item(tbs)?.2;
    }
    let spki_len = tbs.len() - der_item(tbs)?.2.len();
    let spki = &tbs[..spki_len];
    let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .ok_or_else(|| anyhow!("no TLS 1.3 suite to hash with"))?;
    let digest = suite.common.hash_provider.hash(spki);
    Ok(base64(digest.as_ref()))
}

/// One DER item at the start of `b`: (tag, content, the bytes after it).
fn der_item(b: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    let bad = || anyhow!("the certificate is not DER");
    let tag = *b.first().ok_or_else(bad)?;
    let first = *b.get(1).ok_or_else(bad)?;
    let (len, head) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            bail!("the certificate is not DER");
        }
        let len = b.get(2..2 + n).ok_or_else(bad)?.iter().fold(0usize, |a, x| a << 8 | *x as usize);
        (len, 2 + n)
    };
    let content = b.get(head..head + len).ok_or_else(bad)?;
    Ok((tag, content, &b[head + len..]))
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |a, (i, x)| a | (*x as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn spki_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params").self_signed(&key).expect("cert");
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13().expect("suite");
        let want = base64(suite.common.hash_provider.hash(&spki).as_ref());
        assert_eq!(spki_sha256_base64(cert.der()).expect("parsed"), want);
    }
}
