//! One integration-test binary (faster to link than one per file).
mod acme;
mod clients;
mod deltachat;
mod doctor;
mod golden;
mod http_table;
mod kmail;
mod lifecycle;
mod metrics;
mod page;
mod pebble;
mod pim_discovery;
mod service_manager;
mod support;
mod thunderbird;
