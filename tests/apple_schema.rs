//! Checks our `.mobileconfig` against Apple's own machine-readable schema
//! (`apple/device-management`, `mdm/profiles/*.yaml`, kept in `shared/corpus`): every key
//! we emit exists with the right type, every required key is present, and values with
//! a `rangelist` are among the allowed ones.
//!
//! The corpus has no `CommonPayloadKeys.yaml`, so the keys every payload carries are
//! listed here from Apple's documentation (see `shared/spec/apple-mobileconfig.md` §2).

use std::collections::BTreeMap;

use mailconfd::address::EmailAddress;
use mailconfd::config;
use mailconfd::render::mobileconfig;
use plist::{Dictionary, Value};
use serde_norway::Value as Yaml;

const SCHEMA_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/corpus/apple-manifests/apple-device-management/"
);

/// Apple's CommonPayloadKeys: (key, type, required).
const COMMON_PAYLOAD_KEYS: [(&str, &str, bool); 7] = [
    ("PayloadType", "string", true),
    ("PayloadVersion", "integer", true),
    ("PayloadIdentifier", "string", true),
    ("PayloadUUID", "string", true),
    ("PayloadDisplayName", "string", false),
    ("PayloadDescription", "string", false),
    ("PayloadOrganization", "string", false),
];

struct KeySpec {
    /// Without the angle brackets: `string`, `integer`, `boolean`, `array`, ...
    kind: String,
    required: bool,
    rangelist: Option<Vec<Yaml>>,
}

struct Schema {
    payload_type: String,
    keys: BTreeMap<String, KeySpec>,
}

fn load_schema(file: &str) -> Schema {
    let path = format!("{SCHEMA_DIR}{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Yaml = serde_norway::from_str(&text).unwrap();
    let payload_type = doc["payload"]["payloadtype"].as_str().unwrap().to_owned();
    let mut keys = BTreeMap::new();
    for k in doc["payloadkeys"].as_sequence().unwrap() {
        let name = k["key"].as_str().unwrap().to_owned();
        let kind = k["type"]
            .as_str()
            .unwrap()
            .trim_matches(['<', '>'])
            .to_owned();
        let required = k["presence"].as_str() == Some("required");
        let rangelist = k.get("rangelist").and_then(Yaml::as_sequence).cloned();
        keys.insert(
            name,
            KeySpec {
                kind,
                required,
                rangelist,
            },
        );
    }
    Schema { payload_type, keys }
}

fn with_common_keys(mut schema: Schema) -> Schema {
    for (key, kind, required) in COMMON_PAYLOAD_KEYS {
        schema.keys.entry(key.to_owned()).or_insert(KeySpec {
            kind: kind.to_owned(),
            required,
            rangelist: None,
        });
    }
    schema
}

fn plist_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Integer(_) => "integer",
        Value::Boolean(_) => "boolean",
        Value::Array(_) => "array",
        Value::Dictionary(_) => "dictionary",
        Value::Real(_) => "real",
        Value::Date(_) => "date",
        Value::Data(_) => "data",
        _ => "other",
    }
}

fn in_rangelist(v: &Value, allowed: &[Yaml]) -> bool {
    allowed.iter().any(|a| match (v, a) {
        (Value::String(s), Yaml::String(y)) => s == y,
        (Value::Integer(i), Yaml::Number(n)) => {
            i.as_signed().is_some_and(|i| n.as_i64() == Some(i))
        }
        (Value::Boolean(b), Yaml::Bool(y)) => b == y,
        _ => false,
    })
}

/// Every problem of `dict` against `schema`, as readable lines.
fn check(dict: &Dictionary, schema: &Schema) -> Vec<String> {
    let mut problems = Vec::new();
    let what = &schema.payload_type;
    for (key, value) in dict {
        let Some(spec) = schema.keys.get(key) else {
            problems.push(format!("{what}: {key} is not in Apple's schema"));
            continue;
        };
        if spec.kind != "any" && plist_kind(value) != spec.kind {
            problems.push(format!(
                "{what}: {key} is {}, schema says {}",
                plist_kind(value),
                spec.kind
            ));
        }
        if let Some(allowed) = &spec.rangelist
            && !in_rangelist(value, allowed)
        {
            problems.push(format!("{what}: {key} = {value:?} is not in {allowed:?}"));
        }
    }
    for (key, spec) in &schema.keys {
        if spec.required && !dict.contains_key(key) {
            problems.push(format!("{what}: required {key} is missing"));
        }
    }
    problems
}

fn check_profile(config_text: &str, address: &str) -> Vec<String> {
    let provider = config::parse(config_text).unwrap().providers.remove(0);
    let address = EmailAddress::parse(address).unwrap();
    let doc = mobileconfig::render(&provider, &address);
    let top = plist::from_bytes::<Value>(&doc.body)
        .unwrap()
        .into_dictionary()
        .unwrap();

    let top_schema = load_schema("TopLevel.yaml");
    let mut problems = check(&top, &top_schema);
    let payloads: BTreeMap<String, Schema> = [
        "com.apple.mail.managed.yaml",
        "com.apple.caldav.account.yaml",
        "com.apple.carddav.account.yaml",
    ]
    .into_iter()
    .map(|f| {
        let s = with_common_keys(load_schema(f));
        (s.payload_type.clone(), s)
    })
    .collect();
    for item in top["PayloadContent"].as_array().unwrap() {
        let dict = item.as_dictionary().unwrap();
        let kind = dict["PayloadType"].as_string().unwrap();
        match payloads.get(kind) {
            Some(schema) => problems.extend(check(dict, schema)),
            None => problems.push(format!("payload type {kind} has no schema here")),
        }
    }
    problems
}

const FULL: &str = r#"
[[provider]]
id = "example.com"
name = "Example <&> Mail"
domains = ["example.com"]
  [[provider.server]]
  type = "imap"
  host = "mail.example.com"
  auth = ["OAuth2", "password-cleartext"]
  [[provider.server]]
  type = "smtp"
  host = "mail.example.com"
  port = 587
  security = "starttls"
  auth = "password-encrypted"
  username = "%EMAILLOCALPART%"
  [[provider.server]]
  type = "caldav"
  url = "https://dav.example.com/dav/calendars/%EMAILADDRESS%/"
  [[provider.server]]
  type = "carddav"
  url = "https://dav.example.com:8443/dav/addressbooks/%EMAILADDRESS%/"
"#;

#[test]
fn imap_caldav_carddav_profile_matches_apple_schema() {
    let problems = check_profile(FULL, "Alice+tag@example.com");
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn pop3_profile_matches_apple_schema() {
    let text = r#"
[[provider]]
id = "example.net"
name = "POP only"
domains = ["xn--bcher-kva.example"]
  [[provider.server]]
  type = "pop3"
  host = "pop.example.net"
  security = "plain"
  auth = ["NTLM"]
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.net"
  auth = "none"
"#;
    let problems = check_profile(text, "jörg@bücher.example");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The checker itself must catch what it claims to catch.
#[test]
fn schema_check_finds_problems() {
    let schema = with_common_keys(load_schema("com.apple.mail.managed.yaml"));
    let mut d = Dictionary::new();
    d.insert(
        "EmailAccountType".into(),
        Value::String("EmailTypeEAS".into()),
    );
    d.insert(
        "IncomingMailServerPortNumber".into(),
        Value::String("993".into()),
    );
    d.insert("NoSuchKey".into(), Value::Boolean(true));
    let problems = check(&d, &schema).join("\n");
    assert!(problems.contains("EmailAccountType = "), "{problems}");
    assert!(problems.contains("IncomingMailServerPortNumber is string"));
    assert!(problems.contains("NoSuchKey is not in Apple's schema"));
    assert!(problems.contains("required IncomingMailServerHostName is missing"));
    assert!(problems.contains("required PayloadUUID is missing"));
}
