//! Render-core micro-benchmarks: one per document, plus config and address parsing.
//!
//!   cargo bench --bench render -- --warm-up-time 1 --measurement-time 3
//!
//! Inputs are the golden cases (`tests/golden/full`: every server kind, MTA-STS)
//! and the example config, so the figures describe realistic documents.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use mailconfd::address::EmailAddress;
use mailconfd::config;
use mailconfd::render::autodiscover::{self, ResponseSchema};
use mailconfd::render::{dns, mobileconfig, mta_sts, thunderbird};

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

const POX_REQUEST: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>Bob.Smith@example.net</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;

fn render(c: &mut Criterion) {
    let config = config::parse(&read("tests/golden/full/config.toml")).unwrap();
    let address = EmailAddress::parse("Bob.Smith@example.net").unwrap();
    let p = config.provider_for_domain(address.domain()).unwrap();
    let policy = p.mta_sts.as_ref().unwrap();
    let schema = ResponseSchema::Outlook2006a;

    c.bench_function("thunderbird/address", |b| {
        b.iter(|| thunderbird::render(black_box(p), address.domain(), Some(black_box(&address))))
    });
    c.bench_function("thunderbird/generic", |b| {
        b.iter(|| thunderbird::render(black_box(p), address.domain(), None))
    });
    c.bench_function("autodiscover/parse_request", |b| {
        b.iter(|| autodiscover::parse_request(black_box(POX_REQUEST.as_bytes())).unwrap())
    });
    c.bench_function("autodiscover/pox", |b| {
        b.iter(|| {
            autodiscover::render_with_time(
                black_box(p),
                black_box(&address),
                &schema,
                "12:34:56.0000000",
            )
        })
    });
    c.bench_function("autodiscover/json", |b| {
        b.iter(|| autodiscover::render_json(black_box(p), black_box(&address), "AutodiscoverV1"))
    });
    c.bench_function("mobileconfig", |b| {
        b.iter(|| mobileconfig::render(black_box(p), black_box(&address)))
    });
    c.bench_function("mta_sts", |b| b.iter(|| mta_sts::render(black_box(policy))));
    c.bench_function("dns", |b| {
        b.iter(|| {
            dns::render(
                black_box(p),
                &p.domains[0],
                config.server.public_name.as_deref(),
            )
        })
    });
}

fn parse(c: &mut Criterion) {
    let example = read("etc/mailconfd.toml");
    c.bench_function("config/parse_example", |b| {
        b.iter(|| config::parse(black_box(&example)).unwrap())
    });
    c.bench_function("address/parse_ascii", |b| {
        b.iter(|| EmailAddress::parse(black_box("Bob.Smith+tag@Example.NET")).unwrap())
    });
    c.bench_function("address/parse_idn", |b| {
        b.iter(|| EmailAddress::parse(black_box("jörg@Bücher.example")).unwrap())
    });
}

criterion_group!(benches, render, parse);
criterion_main!(benches);
