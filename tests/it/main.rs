//! One integration-test binary (faster to link than one per file).
mod acme;
mod golden;
mod hostile;
mod http_table;
mod lifecycle;
mod page;
mod pebble;
mod support;
mod thunderbird;
