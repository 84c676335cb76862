//! TLS: the gateway serves FIX over TLS with a PEM certificate and key (as the manager writes
//! them); OpenSSL's s_client, pinning that certificate, logs on with a hand-written Logon.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::Gateway;

/// A Logon written by hand; the checksum is summed here, not by the gateway's codec.
fn logon(sending_time: &str) -> Vec<u8> {
    let body = format!(
        "35=A\x0134=1\x0149=BRK1\x0152={sending_time}\x0156=GRIDMATCH\x0198=0\x01108=30\x01554=s3cret\x01"
    );
    let head = format!("8=FIX.4.4\x019={}\x01", body.len());
    let sum: u32 = head.bytes().chain(body.bytes()).map(u32::from).sum();
    format!("{head}{body}10={:03}\x01", sum % 256).into_bytes()
}

#[test]
fn logon_over_tls_with_the_certificate_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    let gw = Gateway::start_with(
        dir.path(),
        "BRK1,s3cret\n",
        0,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(gw.addr.to_string())
        .arg("-CAfile")
        .arg(&cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut stdin = client.stdin.take().unwrap();
    stdin
        .write_all(&logon(&fix_gateway::utc::format(ms)))
        .unwrap();
    stdin.flush().unwrap();
    let mut stdout = client.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).replace('\x01', "|");
            if text.contains("|10=") {
                let _ = tx.send(text);
                break;
            }
        }
    });
    let reply = rx
        .recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| panic!("no Logon over TLS; gateway log:\n{}", gw.log()));
    let _ = client.kill();
    let _ = client.wait();
    assert!(reply.starts_with("8=FIX.4.4|"), "{reply}");
    assert!(reply.contains("|35=A|"), "{reply}");
    assert!(reply.contains("|49=GRIDMATCH|56=BRK1|34=1|"), "{reply}");
}
