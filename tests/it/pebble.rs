//! A throw-away ACME CA for one test: Debian's `pebble` plus
//! `pebble-challtestsrv` as its mock DNS (every name -> 127.0.0.1), on free
//! loopback ports, as in shared/recipes/pebble.md. Pebble's own HTTPS
//! certificate is made with rcgen at start; its root and intermediate (new at
//! every start) are fetched from the management port. Both processes are
//! killed on drop, so a failing test leaves no listeners behind.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// From spawn to a directory that answers, ports included.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What a test can change about the CA; `Default` is the plain CA every
/// scenario used before (5-year certificates, no EAB, no rejected nonces).
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// `certificateValidityPeriod`: lifetime of issued certificates, seconds.
    pub validity_secs: Option<u64>,
    /// `externalAccountMACKeys` (kid, base64url HMAC key); non-empty turns on
    /// `externalAccountBindingRequired`.
    pub eab_keys: Vec<(String, String)>,
    /// `PEBBLE_WFE_NONCEREJECT`: percent of valid nonces rejected as badNonce (default 0).
    pub nonce_reject_percent: u8,
    /// `PEBBLE_AUTHZREUSE`: percent chance a still-valid authorization is reused
    /// (Pebble's default, 50, when None).
    pub authz_reuse_percent: Option<u8>,
    /// `PEBBLE_VA_SLEEPTIME`: Pebble's validator sleeps a random 0..N
    /// seconds before each validation (keeps an order open, e.g. to kill the
    /// node that placed it). None = `PEBBLE_VA_NOSLEEP=1`, as before.
    pub va_sleep_secs: Option<u32>,
}

/// Pebble's arguments and environment.
type PebbleCommand = (Vec<std::ffi::OsString>, Vec<(String, String)>);

pub struct Pebble {
    /// Logs, configs, roots.
    pub dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT/dir`
    pub directory_url: String,
    /// Trust anchor for Pebble's own HTTPS (the ACME API), for `acme.ca_file`.
    pub api_ca: PathBuf,
    /// The root that issued certificates chain to (trust this in clients).
    pub root: PathBuf,
    /// The intermediate Pebble signs leaves with.
    pub intermediate: PathBuf,
    options: PebbleOptions,
    /// Pebble's command line, for `restart_ca`, and its management URL.
    command: Option<PebbleCommand>,
    management: String,
    /// pebble-challtestsrv's management API (`http://127.0.0.1:PORT`).
    chall_management: String,
    pebble: Option<Child>,
    challtestsrv: Option<Child>,
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both UDP and TCP (the mock DNS listens on both).
fn free_dns_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Pebble {
    /// Starts a fresh CA whose validator connects to `http_port` (HTTP-01)
    /// and `tls_port` (TLS-ALPN-01) on 127.0.0.1: the daemon's listeners.
    /// `PebbleOptions::default()` is the plain CA.
    pub fn start_with(http_port: u16, tls_port: u16, options: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let api_ca = write_api_certificate(dir.path());
        let mut pebble = Pebble {
            directory_url: String::new(),
            api_ca,
            root: dir.path().join("pebble-root.pem"),
            intermediate: dir.path().join("pebble-intermediate.pem"),
            options,
            command: None,
            management: String::new(),
            chall_management: String::new(),
            pebble: None,
            challtestsrv: None,
            dir,
        };
        // The ports are picked free and then bound by Go: another process may
        // take one in between, so a start that fails is retried on new ports.
        let mut last = String::new();
        for _ in 0..3 {
            match pebble.try_start(http_port, tls_port) {
                Ok(()) => return pebble,
                Err(e) => {
                    eprintln!("pebble start failed: {e}");
                    last = e;
                    pebble.stop_all();
                }
            }
        }
        panic!("pebble did not start: {last}");
    }

    fn try_start(&mut self, http_port: u16, tls_port: u16) -> Result<(), String> {
        let w = self.dir.path().to_owned();
        let listen = free_tcp_port();
        let management = free_tcp_port();
        let chall_management = free_tcp_port();
        let dns = free_dns_port();
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": w.join("wfe.pem"),
                "privateKey": w.join("wfe.key"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": !self.options.eab_keys.is_empty()
            }
        });
        if let Some(secs) = self.options.validity_secs {
            config["pebble"]["certificateValidityPeriod"] = secs.into();
        }
        if !self.options.eab_keys.is_empty() {
            let keys: serde_json::Map<String, serde_json::Value> = self
                .options
                .eab_keys
                .iter()
                .map(|(kid, key)| (kid.clone(), key.clone().into()))
                .collect();
            config["pebble"]["externalAccountMACKeys"] = keys.into();
        }
        std::fs::write(w.join("pebble-config.json"), config.to_string()).unwrap();
        let log = |name: &str| Stdio::from(std::fs::File::create(w.join(name)).unwrap());
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{chall_management}")])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .map_err(|e| format!("spawning pebble-challtestsrv: {e}"))?;
        self.challtestsrv = Some(challtestsrv);
        self.chall_management = format!("http://127.0.0.1:{chall_management}");
        let args: Vec<std::ffi::OsString> = vec![
            "-config".into(),
            w.join("pebble-config.json").into(),
            "-dnsserver".into(),
            format!("127.0.0.1:{dns}").into(),
            // With "=": a bare `-strict false` ends Go's flag parsing.
            "-strict=false".into(),
        ];
        let mut env = vec![(
            "PEBBLE_WFE_NONCEREJECT".to_owned(),
            self.options.nonce_reject_percent.to_string(),
        )];
        match self.options.va_sleep_secs {
            None => env.push(("PEBBLE_VA_NOSLEEP".to_owned(), "1".to_owned())),
            Some(secs) => env.push(("PEBBLE_VA_SLEEPTIME".to_owned(), secs.to_string())),
        }
        if let Some(percent) = self.options.authz_reuse_percent {
            env.push(("PEBBLE_AUTHZREUSE".to_owned(), percent.to_string()));
        }
        self.command = Some((args, env));
        self.management = format!("https://127.0.0.1:{management}");
        self.spawn_ca(false)?;
        self.directory_url = format!("https://127.0.0.1:{listen}/dir");

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = [
                ("pebble", self.pebble.as_mut()),
                ("pebble-challtestsrv", self.challtestsrv.as_mut()),
            ]
            .into_iter()
            .find_map(|(name, child)| Some((name, child?.try_wait().unwrap()?)));
            if let Some((name, status)) = exited {
                return Err(format!("{name} exited with {status}: {}", self.log()));
            }
            if self.api_get(&self.directory_url, None).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "directory not answering within {START_TIMEOUT:?}: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.fetch_roots()
    }

    /// Spawns `pebble` with the recorded command line; `append` keeps the
    /// earlier log (a restart).
    fn spawn_ca(&mut self, append: bool) -> Result<(), String> {
        let (args, env) = self
            .command
            .clone()
            .expect("try_start recorded the command");
        let open = |name: &str| {
            let path = self.dir.path().join(name);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(append)
                .write(true)
                .truncate(!append)
                .open(path)
                .unwrap();
            Stdio::from(file)
        };
        let pebble = Command::new("pebble")
            .args(&args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(open("pebble.log"))
            .stderr(open("pebble.err"))
            .spawn()
            .map_err(|e| format!("spawning pebble: {e}"))?;
        self.pebble = Some(pebble);
        Ok(())
    }

    /// The root and intermediate of the running CA (new at every start).
    fn fetch_roots(&self) -> Result<(), String> {
        let mgmt = &self.management;
        self.api_get(&format!("{mgmt}/roots/0"), Some(&self.root))?;
        self.api_get(&format!("{mgmt}/intermediates/0"), Some(&self.intermediate))?;
        Ok(())
    }

    /// Starts the CA again after `kill_ca`, on the same ports: the same
    /// directory URL, a new root (Pebble keeps no state), and accounts
    /// unknown to it. Returns when it answers; `root` is the new one.
    pub fn restart_ca(&mut self) {
        assert!(self.pebble.is_none(), "kill_ca first");
        self.spawn_ca(true).unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        while self.api_get(&self.directory_url, None).is_err() {
            assert!(
                Instant::now() < deadline,
                "pebble did not come back: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.fetch_roots().unwrap();
    }

    /// GET from Pebble's own HTTPS, trusting only its API CA; `out` saves the body.
    fn api_get(&self, url: &str, out: Option<&Path>) -> Result<(), String> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sSf", "--max-time", "5", "--cacert"])
            .arg(&self.api_ca)
            .arg(url);
        if let Some(path) = out {
            cmd.arg("-o").arg(path);
        } else {
            cmd.args(["-o", "/dev/null"]);
        }
        let output = cmd.output().map_err(|e| format!("running curl: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "curl {url}: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Pebble's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("pebble.log"), read("pebble.err"))
    }

    /// How many orders Pebble has created so far.
    pub fn orders(&self) -> usize {
        self.log().matches("Added order").count()
    }

    /// How many validations Pebble's VA has started sleeping before (only
    /// with `va_sleep_secs`): an order whose challenges were accepted.
    pub fn validations_sleeping(&self) -> usize {
        self.log().matches("before validating").count()
    }

    /// Points `host` at `addresses` (only) in the mock DNS: challtestsrv's
    /// `/clear-a` then `/add-a`. Pebble's validator then connects there
    /// instead of the default 127.0.0.1.
    pub fn set_a(&self, host: &str, addresses: &[&str]) {
        self.chall_post("clear-a", serde_json::json!({ "host": host }));
        self.chall_post(
            "add-a",
            serde_json::json!({ "host": host, "addresses": addresses }),
        );
    }

    fn chall_post(&self, path: &str, body: serde_json::Value) {
        let body = body.to_string();
        let out = Command::new("curl")
            .args(["-sSf", "--max-time", "5", "-d", &body])
            .arg(format!("{}/{path}", self.chall_management))
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "challtestsrv /{path} {body}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills the CA (not the DNS mock), as if it went down mid-run.
    pub fn kill_ca(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stop_all(&mut self) {
        self.kill_ca();
        if let Some(mut child) = self.challtestsrv.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A CA and a certificate for 127.0.0.1/localhost, for Pebble's own HTTPS.
/// Returns the CA's PEM path (wfe.pem/wfe.key are written next to it).
fn write_api_certificate(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Pebble WFE test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    std::fs::write(dir.join("wfe.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("wfe.key"), key.serialize_pem()).unwrap();
    let ca_path = dir.join("wfe-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    ca_path
}
