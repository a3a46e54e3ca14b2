//! One integration-test binary (faster to link than one per file).
mod http_table;
mod lifecycle;
mod page;
mod support;
