//! One integration-test binary (faster to link than one per file).
mod golden;
mod http_table;
mod lifecycle;
mod support;
mod thunderbird;
