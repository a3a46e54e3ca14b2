//! mailconfd: makes e-mail accounts configure themselves.
//!
//! Layout:
//! - `address`: e-mail address and host name parsing (every entry point uses it)
//! - `model`: the validated provider model, plain data
//! - `metrics`: Prometheus metrics and the operators' listener (/metrics, /ready, /live)
//! - `config`: TOML -> validated `Config`, every problem with its key path
//! - `render`: the pure render core, one module per client format, and the
//!   settings page for people (`render::page`)
//! - `import`: Thunderbird config-v1.1 (ISPDB) -> `[[provider]]` TOML
//! - `http`: one request -> one reply: limits, routing, the request log
//! - `server`: sockets, per-client caps and rates, a deadline per connection
//!   phase, HTTP/2 limits, TLS handshakes, graceful shutdown
//! - `signals`: SIGTERM/SIGINT -> shutdown, SIGHUP -> reload
//! - `sources`: providers' domain lists from files, SQL and LDAP, merged into the published config
//! - `reload`: applying a new config in the daemon; the `reload` command that waits for the outcome
//! - `systemd`: READY/RELOADING/STOPPING/STATUS/WATCHDOG notifications and the accept-loop heartbeat
//! - `tls`: SNI resolver, handshakes, ACME challenge answers, profile signing
//! - `certs`: where certificates come from (ACME, local CA, files) and when
//! - `store`: durable state (sled) behind a small trait
//! - `privileges`: dropping root after the ports are bound
//! - `app`: wiring only
//! - `cli`, `commands`: the command line and its one-shot commands
//! - `directory`: per-user values (login, name, hosts) looked up by address (map file, SQL, LDAP), with deadline, cache and fail-open
//! - `doctor`: checks from the outside (DNS, CAA, HTTPS, mail servers' TLS) what clients will see
#![forbid(unsafe_code)]

pub mod address;
pub mod app;
pub mod certs;
pub mod cli;
pub mod commands;
pub mod config;
pub mod directory;
pub mod doctor;
pub mod http;
pub mod import;
pub mod metrics;
pub mod model;
pub mod privileges;
pub mod reload;
pub mod render;
pub mod server;
pub mod signals;
pub mod sources;
pub mod store;
pub mod systemd;
pub mod tls;
