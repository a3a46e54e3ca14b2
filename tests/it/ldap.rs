//! LDAP domain sources and the LDAP user directory against a real OpenLDAP
//! (Debian's `slapd`) started here into a temp dir on loopback ports, with a
//! CA and server certificate made here for StartTLS and ldaps: good data,
//! garbage values, domains added and removed (picked up on SIGHUP), a `*`
//! in a local part (a character, never a wildcard), a stopped (SIGSTOP)
//! and a dead server, TLS without the private CA.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::pebble::free_tcp_port;
use crate::support::{ServeProcess, eventually};

const SUFFIX: &str = "dc=hoster,dc=example";
const ROOT_DN: &str = "cn=admin,dc=hoster,dc=example";
const ROOT_PW: &str = "root-secret";
/// The account mailconfd binds as (read-only by the default ACL).
const READER_DN: &str = "cn=mailconfd,dc=hoster,dc=example";
const READER_PW: &str = "r3ader:pw";

/// A slapd in a temp dir: plain LDAP (and StartTLS) on `port`, ldaps on
/// `tls_port`, certificate for 127.0.0.1 from the CA in `ca_file`.
struct Slapd {
    child: Child,
    program: PathBuf,
    conf: PathBuf,
    dir: PathBuf,
    port: u16,
    tls_port: u16,
    ca_file: PathBuf,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The program from PATH or /usr/sbin (slapd lives there, often not in a
/// non-root PATH); skipped with the reason, or failed when CI is set.
fn find_program(program: &str, package: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is missing: apt-get install {package}"
        );
        eprintln!("SKIPPED: {program} is not installed (apt-get install {package})");
    }
    found
}

fn base_ldif() -> String {
    format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Hoster\ndc: hoster\n\n\
         dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: mailconfd\nuserPassword: {READER_PW}\n\n\
         dn: ou=domains,{SUFFIX}\nobjectClass: organizationalUnit\nou: domains\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n"
    )
}

/// An entry for a hosted domain (cosine's `domainRelatedObject`).
fn domain_ldif(domain: &str) -> String {
    format!(
        "dn: ou={domain},ou=domains,{SUFFIX}\nobjectClass: organizationalUnit\nobjectClass: domainRelatedObject\nou: {domain}\nassociatedDomain: {domain}\n\n"
    )
}

/// A mailbox: inetOrgPerson plus misc.schema's `mailHost`.
fn user_ldif(uid: &str, cn: &str, mail: &str, host: Option<&str>) -> String {
    let host = host.map_or(String::new(), |h| format!("mailHost: {h}\n"));
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient\nuid: {uid}\ncn: {cn}\nsn: {cn}\nmail: {mail}\n{host}\n"
    )
}

impl Slapd {
    /// Loads `ldif` (after the base entries) with slapadd and starts slapd;
    /// `None` when slapd or ldap-utils are not installed here.
    fn start(dir: &Path, ldif: &str) -> Option<Slapd> {
        let slapd = find_program("slapd", "slapd")?;
        let slapadd = find_program("slapadd", "slapd")?;
        find_program("ldapmodify", "ldap-utils")?;
        let dir = dir.join("slapd");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let ca_file = write_certs(&dir);
        let conf = dir.join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 include /etc/ldap/schema/misc.schema\n\
                 pidfile {d}/slapd.pid\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 TLSCACertificateFile {d}/ca.pem\n\
                 TLSCertificateFile {d}/server.pem\n\
                 TLSCertificateKeyFile {d}/server.key\n\
                 database mdb\n\
                 suffix \"{SUFFIX}\"\n\
                 rootdn \"{ROOT_DN}\"\n\
                 rootpw {ROOT_PW}\n\
                 directory {d}/db\n\
                 maxsize 1073741824\n\
                 limits dn.exact=\"{READER_DN}\" size=unlimited\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let data = dir.join("data.ldif");
        std::fs::write(&data, base_ldif() + ldif).unwrap();
        let out = Command::new(slapadd)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "slapadd: {out:?}");
        let port = free_tcp_port();
        let tls_port = std::iter::repeat_with(free_tcp_port)
            .find(|p| *p != port)
            .unwrap();
        let child = spawn_slapd(&slapd, &conf, port, tls_port);
        Some(Slapd {
            child,
            program: slapd,
            conf,
            dir,
            port,
            tls_port,
            ca_file,
        })
    }

    /// Killed and started again on the same ports, same data: every
    /// connection a client holds is gone.
    fn restart(&mut self) {
        self.kill();
        self.child = spawn_slapd(&self.program, &self.conf, self.port, self.tls_port);
    }

    /// Applies an LDIF change (ldapmodify) as the rootdn.
    fn modify(&self, ldif: &str) {
        let file = self.dir.join("change.ldif");
        std::fs::write(&file, ldif).unwrap();
        let out = Command::new("ldapmodify")
            .args(["-x", "-H"])
            .arg(format!("ldap://127.0.0.1:{}/", self.port))
            .args(["-D", ROOT_DN, "-w", ROOT_PW, "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "ldapmodify: {out:?}");
    }

    /// Entries matching `filter` per ldapsearch (the tests' control).
    fn count(&self, filter: &str) -> usize {
        let out = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-H"])
            .arg(format!("ldap://127.0.0.1:{}/", self.port))
            .args(["-b", SUFFIX, filter, "1.1"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("dn:"))
            .count()
    }

    /// Sends `signal`; for SIGSTOP, returns once every slapd thread has
    /// stopped (kill returns before that, and a thread already running can
    /// still answer a request sent right after).
    fn signal(&self, signal: Signal) {
        let pid = self.child.id();
        kill(Pid::from_raw(pid as i32), signal).unwrap();
        if signal == Signal::SIGSTOP {
            crate::support::eventually("every slapd thread stopped", || all_threads_stopped(pid));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether every thread of `pid` is stopped ("T" in /proc/PID/task/*/stat).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            // "pid (comm) S ...": the state follows the last ')'.
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    })
}

/// Starts slapd and waits until it accepts connections.
fn spawn_slapd(program: &Path, conf: &Path, port: u16, tls_port: u16) -> Child {
    // -d 0: in the foreground (its pid is ours to signal), no debug output.
    let child = Command::new(program)
        .args(["-d", "0", "-h"])
        .arg(format!(
            "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
        ))
        .arg("-f")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("slapd", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    child
}

/// A CA and a server certificate for 127.0.0.1 (rcgen): `slapd/ca.pem`,
/// `server.pem`, `server.key`; returns the CA file.
fn write_certs(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "hoster test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert.pem(), &ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    dir.join("ca.pem")
}

/// The daemon on a loopback port, plain HTTP.
/// The real binary on a config of its own (reloaded, checked by the tests).
struct Daemon {
    process: ServeProcess,
    config: PathBuf,
}

impl std::ops::Deref for Daemon {
    type Target = ServeProcess;
    fn deref(&self) -> &ServeProcess {
        &self.process
    }
}

const SERVERS: &str = r#"
  [[provider.server]]
  type = "imap"
  host = "imap.hoster.example"
  username = "%EMAILADDRESS%"
  [[provider.server]]
  type = "smtp"
  host = "smtp.hoster.example"
  username = "%EMAILADDRESS%"
"#;

/// `provider` is the rest of a `[[provider]]` (id hoster.example) after
/// its name: domains and sources.
fn write_config(dir: &Path, port: u16, provider: &str) -> PathBuf {
    write_config_with(dir, port, provider, "")
}

/// As [`write_config`], with top-level tables (`tail`) after the provider.
fn write_config_with(dir: &Path, port: u16, provider: &str, tail: &str) -> PathBuf {
    let path = dir.join("mailconfd.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhttp_listen = [\"127.0.0.1:{port}\"]\nstate_dir = \"{}\"\n[tls]\nmode = \"off\"\n\
             [[provider]]\nid = \"hoster.example\"\nname = \"Hoster\"\n{provider}{SERVERS}{tail}",
            dir.join("state").display()
        ),
    )
    .unwrap();
    path
}

impl Daemon {
    fn start(dir: &Path, provider: &str) -> Daemon {
        Daemon::start_with(dir, provider, "")
    }

    fn start_with(dir: &Path, provider: &str, tail: &str) -> Daemon {
        let port = free_tcp_port();
        let config = write_config_with(dir, port, provider, tail);
        Daemon {
            process: ServeProcess::start(&config, port),
            config,
        }
    }

    fn status(&self, domain: &str) -> u16 {
        self.send(&format!(
            "GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.{domain}\r\nConnection: close\r\n\r\n"
        ))
        .0
    }

    fn reload(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGHUP).unwrap();
    }

    /// `mailconfd check --online`: (success, stdout).
    fn check_online(&self) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["check", "--online", "-c"])
            .arg(&self.config)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

/// `[provider.domains_from]` for the domain entries of [`Slapd`].
fn domains_from(url: &str, extra: &str) -> String {
    format!(
        "  [provider.domains_from]\n  ldap = \"{url}\"\n  base = \"ou=domains,{SUFFIX}\"\n  filter = \"(objectClass=domainRelatedObject)\"\n  attribute = \"associatedDomain\"\n  refresh_secs = 3600\n{extra}"
    )
}

#[test]
fn ldap_domains_over_starttls_follow_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = format!(
        "dn: ou=junk,ou=domains,{SUFFIX}\nobjectClass: organizationalUnit\nobjectClass: domainRelatedObject\nou: junk\nassociatedDomain: not a domain!\nassociatedDomain: b.example\n\n"
    );
    let Some(mut slapd) = Slapd::start(
        dir.path(),
        &(domain_ldif("a.example") + &domain_ldif("B.Example") + &garbage),
    ) else {
        return;
    };
    let password = dir.path().join("ldap-password");
    std::fs::write(&password, format!("{READER_PW}\n")).unwrap();
    let source = domains_from(
        &format!("ldap://127.0.0.1:{}", slapd.port),
        &format!(
            "  starttls = true\n  ca_file = \"{}\"\n  bind_dn = \"{READER_DN}\"\n  password_file = \"{}\"\n",
            slapd.ca_file.display(),
            password.display()
        ),
    );
    let d = Daemon::start(dir.path(), &source);
    assert_eq!(d.status("a.example"), 200);
    assert_eq!(d.status("b.example"), 200);
    assert_eq!(d.status("c.example"), 404);
    // The garbage value is reported; the rest of the list is kept.
    let (ok, out) = d.check_online();
    assert!(ok, "{out}");
    assert!(out.contains(": 2 domain(s) in "), "{out}");
    assert!(out.contains("skipped: \"not a domain!\""), "{out}");

    // Added and removed in the directory: served and refused after SIGHUP.
    slapd.modify(&format!(
        "dn: ou=a.example,ou=domains,{SUFFIX}\nchangetype: delete\n\n{}",
        domain_ldif("c.example").replacen("\nobjectClass", "\nchangetype: add\nobjectClass", 1)
    ));
    d.reload();
    eventually("c.example served", || d.status("c.example") == 200);
    eventually("a.example refused", || d.status("a.example") == 404);

    // A stopped server (SIGSTOP) while a refresh runs: answers do not wait
    // for the hanging fetch.
    slapd.signal(Signal::SIGSTOP);
    d.reload();
    let started = Instant::now();
    assert_eq!(d.status("c.example"), 200);
    assert_eq!(d.status("a.example"), 404);
    eprintln!(
        "two answers during a hanging LDAP refresh took {:?}",
        started.elapsed()
    );
    slapd.signal(Signal::SIGCONT);

    // The server goes away: the last good list keeps serving.
    slapd.kill();
    d.reload();
    let (ok, out) = d.check_online();
    assert!(!ok, "check --online must report the dead source: {out}");
    assert_eq!(d.status("c.example"), 200);
    assert_eq!(d.status("b.example"), 200);
}

#[test]
fn ldaps_domains_trust_the_ca_file_and_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(slapd) = Slapd::start(dir.path(), &domain_ldif("s.example")) else {
        return;
    };
    let url = format!("ldaps://127.0.0.1:{}", slapd.tls_port);
    // Anonymous bind, the private CA trusted.
    let d = Daemon::start(
        dir.path(),
        &domains_from(
            &url,
            &format!("  ca_file = \"{}\"\n", slapd.ca_file.display()),
        ),
    );
    assert_eq!(d.status("s.example"), 200);
    let (ok, out) = d.check_online();
    assert!(ok && out.contains(": 1 domain(s) in "), "{out}");
    drop(d);

    // Without the CA the certificate is not trusted: nothing is fetched.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let d = Daemon::start(dir.path(), &domains_from(&url, ""));
    let (ok, out) = d.check_online();
    assert!(!ok, "{out}");
    assert_eq!(d.status("s.example"), 404);
    // Nor over StartTLS.
    drop(d);
    let d = Daemon::start(
        dir.path(),
        &domains_from(
            &format!("ldap://127.0.0.1:{}", slapd.port),
            "  starttls = true\n",
        ),
    );
    assert!(!d.check_online().0);
}

/// `[provider.users_from]` over StartTLS with a bind, mailHost as the IMAP host.
fn users_from(slapd: &Slapd, password: &Path, extra: &str) -> String {
    format!(
        "domains = [\"example.com\"]\n  [provider.users_from]\n  ldap = \"ldap://127.0.0.1:{}\"\n  starttls = true\n  ca_file = \"{}\"\n  bind_dn = \"{READER_DN}\"\n  password_file = \"{}\"\n  base = \"ou=people,{SUFFIX}\"\n  filter = \"(&(objectClass=inetOrgPerson)(mail=%s))\"\n  attributes = {{ imap_host = \"mailHost\" }}\n{extra}",
        slapd.port,
        slapd.ca_file.display(),
        password.display()
    )
}

/// The provider's default answer for `address`: a config without the
/// directory, rendered by the binary.
fn default_answer(dir: &Path, address: &str) -> String {
    let plain = dir.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let config = write_config(&plain, 1, "domains = [\"example.com\"]\n");
    let out = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["render", "-c"])
        .arg(&config)
        .args(["--email", address, "thunderbird"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ldap_users_get_their_values_and_a_star_is_no_wildcard() {
    let dir = tempfile::tempdir().unwrap();
    let users = user_ldif(
        "alice",
        "Alice <Liddell>",
        "alice@example.com",
        Some("imap7.hoster.example"),
    ) + &user_ldif(
        "bob",
        "Bob",
        "bob@example.com",
        Some("imap2.hoster.example"),
    ) + &user_ldif("carol", "Carol", "carol@example.com", None)
        + &user_ldif("dan", "Dan", "dan@example.com", Some("not a host!"));
    let Some(mut slapd) = Slapd::start(dir.path(), &users) else {
        return;
    };
    let password = dir.path().join("ldap-password");
    std::fs::write(&password, READER_PW).unwrap();
    let d = Daemon::start(
        dir.path(),
        &users_from(&slapd, &password, "  timeout_ms = 300\n"),
    );
    let (status, body) = d.thunderbird("alice@example.com");
    assert_eq!(status, 200);
    assert!(
        body.contains("<hostname>imap7.hoster.example</hostname>"),
        "{body}"
    );
    assert!(body.contains("<username>alice</username>"), "{body}");
    assert!(
        body.contains("<hostname>smtp.hoster.example</hostname>"),
        "{body}"
    );
    let (_, pox) = d.pox("alice@example.com");
    assert!(
        pox.contains("<DisplayName>Alice &lt;Liddell&gt;</DisplayName>"),
        "{pox}"
    );
    assert!(pox.contains("<LoginName>alice</LoginName>"), "{pox}");

    // automx2's bug: `*@example.com` formatted into (mail=%s) matches every
    // mailbox. The control shows the raw filter would match here too.
    assert_eq!(slapd.count("(mail=*@example.com)"), 4);
    for hostile in ["*@example.com", "al*@example.com", "*ice@example.com"] {
        let (status, body) = d.thunderbird(hostile);
        assert_eq!(status, 200, "{hostile}");
        assert_eq!(
            body,
            default_answer(dir.path(), hostile),
            "{hostile} matched an entry"
        );
    }
    // Garbage in the directory: the unusable value falls back to the
    // default, the usable ones are kept.
    let (status, body) = d.thunderbird("dan@example.com");
    assert_eq!(status, 200);
    assert!(
        body.contains("<hostname>imap.hoster.example</hostname>"),
        "{body}"
    );
    assert!(body.contains("<username>dan</username>"), "{body}");
    let (_, unknown) = d.thunderbird("dave@example.com");
    assert_eq!(unknown, default_answer(dir.path(), "dave@example.com"));

    // A stopped server (SIGSTOP): the deadline holds, defaults are served,
    // and a failure is not cached: after SIGCONT bob gets his values.
    slapd.signal(Signal::SIGSTOP);
    let started = Instant::now();
    let (status, body) = d.thunderbird("bob@example.com");
    let stalled = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body, default_answer(dir.path(), "bob@example.com"));
    eprintln!("lookup against a stopped slapd answered in {stalled:?}");
    slapd.signal(Signal::SIGCONT);
    eventually("bob's values after SIGCONT", || {
        d.thunderbird("bob@example.com")
            .1
            .contains("<hostname>imap2.hoster.example</hostname>")
    });

    // The server dies: a cached user keeps the values, others get the
    // defaults, never a 5xx.
    slapd.kill();
    let (status, body) = d.thunderbird("alice@example.com");
    assert_eq!(status, 200);
    assert!(body.contains("imap7.hoster.example"), "{body}");
    let started = Instant::now();
    let (status, body) = d.thunderbird("carol@example.com");
    eprintln!(
        "lookup against a dead slapd answered in {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200);
    assert_eq!(body, default_answer(dir.path(), "carol@example.com"));
}

/// The shared connection dies under the daemon (a server restart, or an
/// idle timeout): the next lookup reconnects at once and still answers.
#[test]
fn ldap_users_survive_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let users = user_ldif(
        "alice",
        "Alice",
        "alice@example.com",
        Some("imap7.hoster.example"),
    ) + &user_ldif(
        "bob",
        "Bob",
        "bob@example.com",
        Some("imap2.hoster.example"),
    );
    let Some(mut slapd) = Slapd::start(dir.path(), &users) else {
        return;
    };
    let password = dir.path().join("ldap-password");
    std::fs::write(&password, READER_PW).unwrap();
    let d = Daemon::start(dir.path(), &users_from(&slapd, &password, ""));
    assert!(
        d.thunderbird("alice@example.com")
            .1
            .contains("imap7.hoster.example")
    );
    slapd.restart();
    let (status, body) = d.thunderbird("bob@example.com");
    assert_eq!(status, 200);
    assert!(
        body.contains("<hostname>imap2.hoster.example</hostname>"),
        "the first lookup after the restart must reconnect, not serve defaults: {body}"
    );
}

#[test]
fn ldap_users_with_a_wrong_password_get_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let Some(slapd) = Slapd::start(
        dir.path(),
        &user_ldif("alice", "Alice", "alice@example.com", None),
    ) else {
        return;
    };
    let password = dir.path().join("ldap-password");
    std::fs::write(&password, "wrong").unwrap();
    let d = Daemon::start(dir.path(), &users_from(&slapd, &password, ""));
    let (status, body) = d.thunderbird("alice@example.com");
    assert_eq!(status, 200);
    assert_eq!(body, default_answer(dir.path(), "alice@example.com"));
}

/// Figures for the notes, not a check (no timing is asserted):
/// `cargo test --test it ldap_bench -- --ignored --nocapture`.
/// A domain fetch of 10,000 entries (bound, and anonymous under slapd's
/// default size limit), per-user answers through the daemon uncached and
/// cached, and one LDAP lookup on a fresh connection (TCP + StartTLS +
/// bind + search) against one on the reused connection.
#[test]
#[ignore = "benchmark: prints figures"]
fn ldap_bench() {
    const DOMAINS: usize = 10_000;
    const USERS: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let mut ldif = String::new();
    for i in 1..=DOMAINS {
        ldif += &domain_ldif(&format!("customer{i}.example"));
    }
    for i in 1..=USERS {
        ldif += &user_ldif(
            &format!("u{i}"),
            &format!("User {i}"),
            &format!("user{i}@example.com"),
            Some("imap3.hoster.example"),
        );
    }
    let started = Instant::now();
    let Some(slapd) = Slapd::start(dir.path(), &ldif) else {
        return;
    };
    eprintln!(
        "slapadd + start with {DOMAINS} domains and {USERS} users: {:?}",
        started.elapsed()
    );
    let password = dir.path().join("ldap-password");
    std::fs::write(&password, READER_PW).unwrap();
    let bound = format!(
        "  starttls = true\n  ca_file = \"{}\"\n  bind_dn = \"{READER_DN}\"\n  password_file = \"{}\"\n",
        slapd.ca_file.display(),
        password.display()
    );
    let url = format!("ldap://127.0.0.1:{}", slapd.port);
    for (label, extra) in [("bound, StartTLS", bound.as_str()), ("anonymous", "")] {
        let d = Daemon::start(dir.path(), &domains_from(&url, extra));
        for _ in 0..3 {
            let (_, out) = d.check_online();
            let lines: Vec<&str> = out
                .lines()
                .filter(|l| l.contains("hoster.example") || l.contains("skipped"))
                .collect();
            eprintln!("domain fetch ({label}): {}", lines.join(" | "));
        }
    }

    let cached = users_from(&slapd, &password, "");
    let uncached = users_from(&slapd, &password, "  cache_entries = 0\n");
    for (label, config) in [("uncached", &uncached), ("cached", &cached)] {
        // One client asking thousands of times: above the default rate limits.
        let d = Daemon::start_with(
            dir.path(),
            config,
            "[limits]\nconnections_per_second = 10000\nconnection_burst = 10000\nrequests_per_second = 10000\nrequest_burst = 10000\n",
        );
        // Warm: the shared connection is open, and (cached) every user is in.
        for i in 1..=USERS {
            d.thunderbird(&format!("user{i}@example.com"));
        }
        let mut lat = Vec::new();
        for i in 1..=USERS {
            let t = Instant::now();
            let (status, body) = d.thunderbird(&format!("user{i}@example.com"));
            lat.push(t.elapsed());
            assert!(
                status == 200 && body.contains(&format!("<username>u{i}</username>")),
                "{status} {body}"
            );
        }
        lat.sort();
        eprintln!(
            "per-user answer over HTTP ({label}, new TCP connection each): p50 {:?}, p99 {:?}",
            lat[USERS / 2],
            lat[USERS * 99 / 100]
        );
        // Eight clients at once: their lookups share the one LDAP connection.
        let started = Instant::now();
        let mut lat: Vec<Duration> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|w| {
                    let d = &d;
                    s.spawn(move || {
                        (1..=USERS)
                            .filter(|i| i % 8 == w)
                            .map(|i| {
                                let t = Instant::now();
                                let (status, _) = d.thunderbird(&format!("user{i}@example.com"));
                                assert_eq!(status, 200);
                                t.elapsed()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        lat.sort();
        eprintln!(
            "per-user answer over HTTP ({label}, 8 clients at once): {:.0} answers/s, p50 {:?}, p99 {:?}",
            USERS as f64 / started.elapsed().as_secs_f64(),
            lat[USERS / 2],
            lat[USERS * 99 / 100]
        );
    }

    // The LDAP lookup alone: fresh connection each time against reused.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use ldap3::{LdapConnAsync, LdapConnSettings, Scope};
        let pem = std::fs::read(&slapd.ca_file).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let tls = std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        );
        // mailconfd opens the socket itself with TCP_NODELAY; ldap3 alone does not.
        let port = slapd.port;
        let open = |nodelay: bool| {
            let (tls, url) = (tls.clone(), url.clone());
            async move { open_ldap(tls, url, port, nodelay).await }
        };
        async fn open_ldap(
            tls: std::sync::Arc<rustls::ClientConfig>,
            url: String,
            port: u16,
            nodelay: bool,
        ) -> ldap3::Ldap {
            let mut settings = LdapConnSettings::new()
                .set_starttls(true)
                .set_config(tls.clone());
            if nodelay {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                tcp.set_nodelay(true).unwrap();
                settings = settings.set_std_stream(ldap3::StdStream::Tcp(tcp.into_std().unwrap()));
            }
            let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url).await.unwrap();
            ldap3::drive!(conn);
            ldap.simple_bind(READER_DN, READER_PW)
                .await
                .unwrap()
                .success()
                .unwrap();
            ldap
        }
        let search = |mut ldap: ldap3::Ldap, i: usize| async move {
            let (entries, _) = ldap
                .search(
                    &format!("ou=people,{SUFFIX}"),
                    Scope::Subtree,
                    &format!("(&(objectClass=inetOrgPerson)(mail=user{i}@example.com))"),
                    vec!["uid", "cn", "mailHost"],
                )
                .await
                .unwrap()
                .success()
                .unwrap();
            assert_eq!(entries.len(), 1);
            ldap
        };
        for nodelay in [false, true] {
            let t = Instant::now();
            for i in 1..=USERS {
                let mut ldap = search(open(nodelay).await, i).await;
                let _ = ldap.unbind().await;
            }
            eprintln!(
                "one LDAP lookup on a fresh connection (TCP + StartTLS + bind + search), TCP_NODELAY {nodelay}: {:?}",
                t.elapsed() / USERS as u32
            );
        }
        let mut ldap = open(true).await;
        let t = Instant::now();
        for i in 1..=USERS {
            ldap = search(ldap, i).await;
        }
        let reused = t.elapsed() / USERS as u32;
        eprintln!("one LDAP lookup on the reused connection: {reused:?}");
    });
}
