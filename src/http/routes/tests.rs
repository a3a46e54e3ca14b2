use super::*;

#[test]
fn strip_port_handles_names_and_refuses_ip6_literals() {
    assert_eq!(strip_port("a.example:8080"), Some("a.example"));
    assert_eq!(strip_port("a.example"), Some("a.example"));
    assert_eq!(strip_port("[::1]:80"), None);
    assert_eq!(strip_port("a.example:x"), None);
}

#[test]
fn paths_match_without_case_where_clients_differ() {
    assert_eq!(
        match_path("/Autodiscover/Autodiscover.xml"),
        Some(Route::Pox)
    );
    assert_eq!(
        match_path("/AUTODISCOVER/AUTODISCOVER.XML"),
        Some(Route::Pox)
    );
    assert_eq!(
        match_path("/autodiscover/autodiscover.json/v1.0/a@b.example"),
        Some(Route::Json {
            address_in_path: Some("a@b.example")
        })
    );
    assert_eq!(match_path("/mail/config-v1.1.xml/"), None);
    // automx2's spelling, so its published links keep working.
    assert_eq!(match_path("/mobileconfig/"), Some(Route::Mobileconfig));
    assert_eq!(match_path("/mobileconfig"), Some(Route::Mobileconfig));
    assert_eq!(match_path("/etc/passwd"), None);
}
