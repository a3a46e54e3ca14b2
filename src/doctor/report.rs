//! The doctor's findings and how they are shown: a readable report for a
//! person, JSON for scripts. Pure.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub status: Status,
    /// dns | caa | address | https | mail
    pub area: &'static str,
    /// The mail domain it belongs to (empty for shared mail servers).
    pub domain: String,
    /// What was checked: a record, a name, host:port.
    pub subject: String,
    pub detail: String,
    /// What to do about a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
}

impl Report {
    pub fn push(
        &mut self,
        status: Status,
        area: &'static str,
        domain: &str,
        subject: impl Into<String>,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        self.findings.push(Finding {
            status,
            area,
            domain: domain.to_owned(),
            subject: subject.into(),
            detail: detail.into(),
            fix,
        });
    }

    pub fn summary(&self) -> Summary {
        let count = |s| self.findings.iter().filter(|f| f.status == s).count();
        Summary {
            ok: count(Status::Ok),
            warn: count(Status::Warn),
            fail: count(Status::Fail),
        }
    }

    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.status == Status::Fail)
    }

    /// The report for a terminal, grouped by domain in check order.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut current: Option<&str> = None;
        for f in &self.findings {
            if current != Some(f.domain.as_str()) {
                let heading = if f.domain.is_empty() {
                    "mail servers"
                } else {
                    &f.domain
                };
                out.push_str(&format!("\n{heading}\n"));
                current = Some(&f.domain);
            }
            let mark = match f.status {
                Status::Ok => "ok  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            out.push_str(&format!(
                "  {mark}  {:<8} {}: {}\n",
                f.area, f.subject, f.detail
            ));
            if let Some(fix) = &f.fix {
                out.push_str(&format!("        fix: {fix}\n"));
            }
        }
        let s = self.summary();
        out.push_str(&format!(
            "\n{} ok, {} warning(s), {} failure(s)\n",
            s.ok, s.warn, s.fail
        ));
        out
    }

    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            findings: &'a [Finding],
            summary: Summary,
        }
        let mut text = serde_json::to_string_pretty(&Out {
            findings: &self.findings,
            summary: self.summary(),
        })
        .expect("the report serializes: plain data");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_groups_by_domain_and_counts() {
        let mut r = Report::default();
        r.push(Status::Ok, "dns", "example.com", "a", "published", None);
        r.push(
            Status::Fail,
            "https",
            "example.com",
            "autoconfig.example.com",
            "no answer",
            Some("open port 443".into()),
        );
        let text = r.to_text();
        assert!(
            text.contains("\nexample.com\n  ok    dns      a: published\n"),
            "{text}"
        );
        assert!(text.contains("        fix: open port 443\n"), "{text}");
        assert!(
            text.ends_with("1 ok, 0 warning(s), 1 failure(s)\n"),
            "{text}"
        );
        assert!(r.failed());
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["summary"]["fail"], 1);
        assert_eq!(json["findings"][1]["status"], "fail");
    }
}
