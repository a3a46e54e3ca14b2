//! mailconfd: makes e-mail accounts configure themselves.
//!
//! Layout:
//! - `address`: e-mail address and host name parsing (every entry point uses it)
//! - `model`: the validated provider model, plain data
//! - `config`: TOML -> validated `Config`, every problem with its key path
//! - `render`: the pure render core, one module per client format
//! - `import`: Thunderbird config-v1.1 (ISPDB) -> `[[provider]]` TOML
//! - `cli`: the command line
#![forbid(unsafe_code)]

pub mod address;
pub mod cli;
pub mod config;
pub mod import;
pub mod model;
pub mod render;
