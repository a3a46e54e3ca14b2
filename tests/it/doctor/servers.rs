//! What the doctor tests start and ask: NSD with zones made from `mailconfd
//! dns`, a CA of the test's own, `openssl s_server`, the binary, and a
//! finding matcher for `--json` reports.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Children killed (and reaped) on drop, so a failing test leaves no listeners.
pub(crate) struct Killed(pub(crate) Vec<Child>);
impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn mailconfd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(args)
        .output()
        .unwrap()
}

/// `mailconfd dns` output for one domain, wrapped into a loadable zone (its
/// name server at `dns_ip`) with the given extra lines.
pub(crate) fn zone(
    config: &Path,
    domain: &str,
    dns_ip: &str,
    extra: &str,
    edit: impl Fn(&str) -> Option<String>,
) -> String {
    let out = mailconfd(&["dns", "-c", config.to_str().unwrap(), "--domain", domain]);
    assert!(out.status.success(), "{out:?}");
    let records: String = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(edit)
        .map(|l| l + "\n")
        .collect();
    format!(
        "$ORIGIN {domain}.\n$TTL 300\n@ IN SOA ns.{domain}. hostmaster.{domain}. 1 3600 600 86400 300\n@ IN NS ns.{domain}.\nns IN A {dns_ip}\n{records}{extra}"
    )
}

/// NSD on `ip`:53 serving `dir/<zone>.zone` for each zone, in the foreground.
pub(crate) fn start_nsd(dir: &Path, ip: &str, zones: &[&str]) -> Child {
    let zone_lines: String = zones
        .iter()
        .map(|z| format!("zone:\n  name: {z}\n  zonefile: {z}.zone\n"))
        .collect();
    std::fs::write(
        dir.join("nsd.conf"),
        format!(
            "server:\n  ip-address: {ip}@53\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{dir}\"\n  pidfile: \"{dir}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{dir}/xfrd.state\"\n  zonelistfile: \"{dir}/zone.list\"\n  logfile: \"{dir}/nsd.log\"\n  server-count: 1\nremote-control:\n  control-enable: no\n{zone_lines}",
            dir = dir.display()
        ),
    )
    .unwrap();
    Command::new("nsd")
        .args(["-d", "-c"])
        .arg(dir.join("nsd.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A CA of the test's own, for the mail servers' (and other servers') certificates.
pub(crate) struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub(crate) pem: String,
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "doctor test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        TestCa {
            issuer: rcgen::Issuer::new(ca_params, ca_key),
            pem: ca.pem(),
        }
    }

    /// A certificate for `names` written to `dir/<file>.pem` and `.key`;
    /// `valid_days` from now shortens its life (rcgen's default runs to
    /// 4096), a negative count makes it expired.
    pub(crate) fn leaf(&self, dir: &Path, file: &str, names: &[&str], valid_days: Option<i64>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some(days) = valid_days {
            let now = time::OffsetDateTime::now_utc();
            params.not_after = now + time::Duration::days(days);
            params.not_before = now.min(params.not_after) - time::Duration::days(1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    }
}

/// `openssl s_server` on `addr` with `dir/<cert>.pem`; `extra` e.g. `-HTTP`
/// (then it serves files from `cwd`).
pub(crate) fn start_s_server(
    addr: &str,
    dir: &Path,
    cert: &str,
    extra: &[&str],
    cwd: &Path,
) -> Child {
    Command::new("openssl")
        .args(["s_server", "-quiet", "-accept", addr])
        .arg("-cert")
        .arg(dir.join(format!("{cert}.pem")))
        .arg("-key")
        .arg(dir.join(format!("{cert}.key")))
        .args(extra)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A finding of `status` whose subject contains `subject`, detail contains
/// `detail` and fix contains `fix`.
pub(crate) fn has(
    findings: &[serde_json::Value],
    status: &str,
    subject: &str,
    detail: &str,
    fix: &str,
) -> bool {
    findings.iter().any(|f| {
        f["status"] == status
            && f["subject"].as_str().unwrap_or("").contains(subject)
            && f["detail"].as_str().unwrap_or("").contains(detail)
            && f["fix"].as_str().unwrap_or("").contains(fix)
    })
}
