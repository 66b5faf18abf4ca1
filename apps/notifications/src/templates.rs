//! Message templates and their rendering.
//!
//! Every template has an SMS text and an email (subject, plain text and HTML). Placeholders are
//! `{{name}}` (spaces inside the braces allowed); names are lower-case letters, digits and `_`.
//! Rendering is one pass: a value that itself contains `{{…}}` is inserted as it is.
//!
//! Invariants:
//! - a placeholder without a value is an error ([`RenderError::MissingVariable`]), never an empty
//!   string: a text that says "Your code is ." must not go out;
//! - values are HTML-escaped in the HTML part and inserted verbatim in SMS and plain text;
//! - extra values that no placeholder uses are ignored, so callers may pass a superset.

use crate::text_enum::text_enum;
use std::collections::BTreeMap;

/// Values for a template's placeholders.
pub type Vars = BTreeMap<String, String>;

/// Builds [`Vars`] from pairs: `vars([("code", "123456"), ("minutes", "5")])`.
pub fn vars<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Vars
where
    K: Into<String>,
    V: Into<String>,
{
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// How a notification reaches its recipient.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Channel {
    /// A text message through Twilio; the recipient is an E.164 phone number.
    Sms,
    /// An email through Mailgun; the recipient is an email address.
    Email,
}

text_enum!(Channel {
    Sms => "sms",
    Email => "email",
});

/// The messages ShiftCover sends. Each lists the variables it needs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Template {
    /// A sign-in code. Variables: `code`, `minutes` (how long it stays valid).
    SignInCode,
    /// Cover has started. Variables: `vehicle`, `started_at`, `certificate`.
    CoverStarted,
    /// Cover has ended. Variables: `minutes`, `amount` (e.g. `£4.20`), `certificate`.
    CoverEnded,
    /// A top-up failed or needs the driver (3-D Secure). Variables: `amount`, `link` (where to
    /// finish it).
    TopUpActionNeeded,
    /// The weekly statement. Variables: `week`, `sessions`, `minutes`, `total`, `link`.
    WeeklyStatement,
    /// A claim was received. Variables: `reference`.
    ClaimReceived,
    /// A claim moved on. Variables: `reference`, `status` (e.g. `under review`).
    ClaimUpdated,
    /// A dispute of a session's charge was resolved. Variables: `certificate`, `outcome` (e.g.
    /// `£4.20 refunded to your wallet`).
    DisputeResolved,
    /// A running session is taking the wallet towards its overdraft limit. Variables:
    /// `balance` (what the wallet will hold after the session so far, e.g. `-£15.20`), `limit`
    /// (e.g. `£20.00`), `link` (where to top up).
    OverdraftWarning,
    /// Cover was ended because the wallet reached its overdraft limit. Variables: `certificate`,
    /// `limit`, `link` (where to top up).
    CoverEndedOverdraft,
}

text_enum!(Template {
    SignInCode => "sign_in_code",
    CoverStarted => "cover_started",
    CoverEnded => "cover_ended",
    TopUpActionNeeded => "top_up_action_needed",
    WeeklyStatement => "weekly_statement",
    ClaimReceived => "claim_received",
    ClaimUpdated => "claim_updated",
    DisputeResolved => "dispute_resolved",
    OverdraftWarning => "overdraft_warning",
    CoverEndedOverdraft => "cover_ended_overdraft",
});

/// The sources of one template.
struct Source {
    sms: &'static str,
    subject: &'static str,
    text: &'static str,
    /// The HTML content, placed inside the common layout.
    html: &'static str,
}

impl Template {
    fn source(self) -> Source {
        match self {
            Template::SignInCode => Source {
                sms: "Your ShiftCover code is {{code}}. It expires in {{minutes}} minutes. Never share it.",
                subject: "Your ShiftCover sign-in code",
                text: "Your ShiftCover sign-in code is {{code}}.\n\n\
                       It expires in {{minutes}} minutes. Never share it: ShiftCover will never ask you for it.",
                html: "<p>Your ShiftCover sign-in code is <strong>{{code}}</strong>.</p>\n\
                       <p>It expires in {{minutes}} minutes. Never share it: ShiftCover will never ask you for it.</p>",
            },
            Template::CoverStarted => Source {
                sms: "ShiftCover: you're covered on {{vehicle}} from {{started_at}}. Certificate {{certificate}}.",
                subject: "You're covered: certificate {{certificate}}",
                text: "Your pay-as-you-go cover started at {{started_at}} on {{vehicle}}.\n\n\
                       Certificate number: {{certificate}}\n\n\
                       Cover stays on until you stop it in the app or your shift ends.",
                html: "<p>Your pay-as-you-go cover started at <strong>{{started_at}}</strong> on {{vehicle}}.</p>\n\
                       <p>Certificate number: <strong>{{certificate}}</strong></p>\n\
                       <p>Cover stays on until you stop it in the app or your shift ends.</p>",
            },
            Template::CoverEnded => Source {
                sms: "ShiftCover: cover ended. {{minutes}} minutes, {{amount}}. Certificate {{certificate}}.",
                subject: "Cover ended: {{minutes}} minutes, {{amount}}",
                text: "Your cover has ended.\n\n\
                       Time covered: {{minutes}} minutes\n\
                       Charged: {{amount}}\n\
                       Certificate number: {{certificate}}",
                html: "<p>Your cover has ended.</p>\n\
                       <table role=\"presentation\">\n\
                       <tr><td>Time covered</td><td><strong>{{minutes}} minutes</strong></td></tr>\n\
                       <tr><td>Charged</td><td><strong>{{amount}}</strong></td></tr>\n\
                       <tr><td>Certificate number</td><td>{{certificate}}</td></tr>\n\
                       </table>",
            },
            Template::OverdraftWarning => Source {
                sms: "ShiftCover: your wallet will be at {{balance}} after this shift so far. Cover stops at -{{limit}}: top up to stay covered: {{link}}",
                subject: "Top up to stay covered",
                text: "Your cover is running and your wallet will be at {{balance}} once it is paid for so far.\n\n\
                       Cover stops automatically when the wallet reaches -{{limit}}. Top up now to stay covered:\n{{link}}",
                html: "<p>Your cover is running and your wallet will be at <strong>{{balance}}</strong> once it is paid for so far.</p>\n\
                       <p>Cover stops automatically when the wallet reaches -{{limit}}.</p>\n\
                       <p><a href=\"{{link}}\">Top up now to stay covered</a></p>",
            },
            Template::CoverEndedOverdraft => Source {
                sms: "ShiftCover: your cover has ended: your wallet reached its -{{limit}} limit. You are NOT covered now. Top up to cover again: {{link}}",
                subject: "Your cover has ended: top up to cover again",
                text: "Your cover (certificate {{certificate}}) has ended because your wallet reached its \
                       overdraft limit of -{{limit}} and could not be topped up.\n\n\
                       You are not covered now. Top up to start cover again:\n{{link}}",
                html: "<p>Your cover (certificate {{certificate}}) has ended because your wallet reached its \
                       overdraft limit of -{{limit}} and could not be topped up.</p>\n\
                       <p><strong>You are not covered now.</strong></p>\n\
                       <p><a href=\"{{link}}\">Top up to start cover again</a></p>",
            },
            Template::TopUpActionNeeded => Source {
                sms: "ShiftCover: your {{amount}} top-up needs you. Confirm it with your bank to keep your cover: {{link}}",
                subject: "Action needed: confirm your {{amount}} top-up",
                text: "We couldn't top up your ShiftCover wallet with {{amount}}: your bank needs you to \
                       confirm the payment.\n\n\
                       Until you do, cover can't start. Finish it here:\n{{link}}",
                html: "<p>We couldn't top up your ShiftCover wallet with <strong>{{amount}}</strong>: \
                       your bank needs you to confirm the payment.</p>\n\
                       <p>Until you do, cover can't start.</p>\n\
                       <p><a href=\"{{link}}\">Confirm your top-up</a></p>",
            },
            Template::WeeklyStatement => Source {
                sms: "ShiftCover: your statement for {{week}}: {{sessions}} sessions, {{minutes}} minutes, {{total}}. Details: {{link}}",
                subject: "Your ShiftCover statement for {{week}}",
                text: "Your statement for {{week}}.\n\n\
                       Sessions: {{sessions}}\n\
                       Time covered: {{minutes}} minutes\n\
                       Total charged: {{total}}\n\n\
                       See every session and download your certificates:\n{{link}}",
                html: "<p>Your statement for <strong>{{week}}</strong>.</p>\n\
                       <table role=\"presentation\">\n\
                       <tr><td>Sessions</td><td>{{sessions}}</td></tr>\n\
                       <tr><td>Time covered</td><td>{{minutes}} minutes</td></tr>\n\
                       <tr><td>Total charged</td><td><strong>{{total}}</strong></td></tr>\n\
                       </table>\n\
                       <p><a href=\"{{link}}\">See every session and download your certificates</a></p>",
            },
            Template::ClaimReceived => Source {
                sms: "ShiftCover: we've received your claim {{reference}}. Our claims team will be in touch.",
                subject: "We've received your claim {{reference}}",
                text: "We've received your claim {{reference}}.\n\n\
                       Our claims team will be in touch. Quote the reference whenever you contact us about it.",
                html: "<p>We've received your claim <strong>{{reference}}</strong>.</p>\n\
                       <p>Our claims team will be in touch. Quote the reference whenever you contact us about it.</p>",
            },
            Template::ClaimUpdated => Source {
                sms: "ShiftCover: your claim {{reference}} is now {{status}}. See the app for details.",
                subject: "Your claim {{reference}} is now {{status}}",
                text: "Your claim {{reference}} is now {{status}}.\n\n\
                       See the app for details, and quote the reference whenever you contact us about it.",
                html: "<p>Your claim <strong>{{reference}}</strong> is now <strong>{{status}}</strong>.</p>\n\
                       <p>See the app for details, and quote the reference whenever you contact us about it.</p>",
            },
            Template::DisputeResolved => Source {
                sms: "ShiftCover: we've looked at your dispute of the charge for {{certificate}}: {{outcome}}.",
                subject: "Your charge dispute for {{certificate}}",
                text: "We've looked at your dispute of the charge for cover {{certificate}}.\n\n\
                       Outcome: {{outcome}}.",
                html: "<p>We've looked at your dispute of the charge for cover <strong>{{certificate}}</strong>.</p>\n\
                       <p>Outcome: {{outcome}}.</p>",
            },
        }
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The email subject; `None` for SMS.
    pub subject: Option<String>,
    /// The SMS text, or the email's plain-text part.
    pub text: String,
    /// The email's HTML part; `None` for SMS.
    pub html: Option<String>,
}

/// A template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A placeholder has no value.
    #[error("missing variable `{0}`")]
    MissingVariable(String),
    /// The template itself is broken (an unclosed `{{` or a bad placeholder name).
    #[error("malformed template: {0}")]
    Malformed(&'static str),
}

impl RenderError {
    /// The stable failure reason recorded on a notification, e.g. `missing_variable:code`.
    pub fn reason(&self) -> String {
        match self {
            RenderError::MissingVariable(name) => format!("missing_variable:{name}"),
            RenderError::Malformed(_) => "malformed_template".into(),
        }
    }
}

/// Renders `template` for `channel` with `vars`.
pub fn render(template: Template, channel: Channel, vars: &Vars) -> Result<Rendered, RenderError> {
    let source = template.source();
    match channel {
        Channel::Sms => Ok(Rendered {
            subject: None,
            text: fill(source.sms, vars, Escape::None)?,
            html: None,
        }),
        Channel::Email => {
            let subject = fill(source.subject, vars, Escape::None)?;
            let text = format!(
                "{}\n\n-- \nShiftCover\n",
                fill(source.text, vars, Escape::None)?
            );
            let content = fill(source.html, vars, Escape::Html)?;
            let html = layout(&escape_html(&subject), &content);
            Ok(Rendered {
                subject: Some(subject),
                text,
                html: Some(html),
            })
        }
    }
}

/// The HTML around every email's content. `title` must already be escaped.
fn layout(title: &str, content: &str) -> String {
    format!(
        "<!DOCTYPE html>\n\
         <html lang=\"en-GB\">\n\
         <head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title></head>\n\
         <body style=\"margin:0;padding:24px;font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:1.5;color:#1a1a1a;background:#ffffff\">\n\
         {content}\n\
         <p style=\"margin-top:32px;font-size:13px;color:#666666\">ShiftCover: insurance by the hour for people who drive for work.</p>\n\
         </body>\n\
         </html>\n"
    )
}

#[derive(Clone, Copy)]
enum Escape {
    None,
    Html,
}

/// Replaces every `{{name}}` in `source` with its value.
fn fill(source: &str, vars: &Vars, escape: Escape) -> Result<String, RenderError> {
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or(RenderError::Malformed("unclosed `{{`"))?;
        let name = after[..end].trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(RenderError::Malformed("bad placeholder name"));
        }
        let value = vars
            .get(name)
            .ok_or_else(|| RenderError::MissingVariable(name.to_owned()))?;
        match escape {
            Escape::None => out.push_str(value),
            Escape::Html => out.push_str(&escape_html(value)),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

pub use shared::html::escape as escape_html;

/// The variables a template's sources use, sorted (for documentation and checks).
pub fn variables_of(template: Template) -> Vec<&'static str> {
    let s = template.source();
    let mut names: Vec<&'static str> = Vec::new();
    for src in [s.sms, s.subject, s.text, s.html] {
        let mut rest = src;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            names.push(after[..end].trim());
            rest = &after[end + 2..];
        }
    }
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn all_vars() -> Vars {
        vars([
            ("code", "123456"),
            ("minutes", "75"),
            ("vehicle", "AB12 CDE"),
            ("started_at", "09:00"),
            ("certificate", "SC-2026-000123"),
            ("amount", "£4.20"),
            (
                "link",
                "https://app.shiftcover.example/top-ups/tu_1?a=1&b=2",
            ),
            ("week", "16–22 Nov 2026"),
            ("sessions", "12"),
            ("total", "£38.50"),
            ("reference", "CLM-000042"),
            ("status", "under review"),
            ("outcome", "£4.20 refunded to your wallet"),
            ("balance", "-£15.20"),
            ("limit", "£20.00"),
        ])
    }

    #[test]
    fn every_template_renders_on_both_channels_with_its_variables() {
        for &t in Template::ALL {
            let needed: Vars = variables_of(t)
                .into_iter()
                .map(|n| (n.to_owned(), all_vars()[n].clone()))
                .collect();
            let sms = render(t, Channel::Sms, &needed).unwrap();
            assert!(sms.subject.is_none() && sms.html.is_none());
            assert!(!sms.text.contains("{{"), "{t}: {}", sms.text);
            let email = render(t, Channel::Email, &needed).unwrap();
            assert!(!email.subject.as_deref().unwrap().contains("{{"));
            assert!(!email.text.contains("{{"));
            let html = email.html.unwrap();
            assert!(html.starts_with("<!DOCTYPE html>"));
            assert!(!html.contains("{{"));
        }
    }

    #[test]
    fn the_sign_in_code_text_is_exact() {
        let r = render(
            Template::SignInCode,
            Channel::Sms,
            &vars([("code", "042917"), ("minutes", "5")]),
        )
        .unwrap();
        assert_eq!(
            r.text,
            "Your ShiftCover code is 042917. It expires in 5 minutes. Never share it."
        );
    }

    #[test]
    fn cover_ended_says_minutes_and_amount() {
        let r = render(Template::CoverEnded, Channel::Sms, &all_vars()).unwrap();
        assert_eq!(
            r.text,
            "ShiftCover: cover ended. 75 minutes, £4.20. Certificate SC-2026-000123."
        );
        let e = render(Template::CoverEnded, Channel::Email, &all_vars()).unwrap();
        assert_eq!(e.subject.as_deref(), Some("Cover ended: 75 minutes, £4.20"));
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_it() {
        let err = render(
            Template::SignInCode,
            Channel::Sms,
            &vars([("minutes", "5")]),
        )
        .unwrap_err();
        assert_eq!(err, RenderError::MissingVariable("code".into()));
        assert_eq!(err.reason(), "missing_variable:code");
        let err = render(
            Template::TopUpActionNeeded,
            Channel::Email,
            &vars([("amount", "£10.00")]),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "missing_variable:link");
    }

    #[test]
    fn values_are_escaped_in_html_only() {
        let mut v = all_vars();
        v.insert("amount".into(), "<b>£1</b> & \"x\" 'y'".into());
        let e = render(Template::TopUpActionNeeded, Channel::Email, &v).unwrap();
        let html = e.html.unwrap();
        assert!(html.contains("&lt;b&gt;£1&lt;/b&gt; &amp; &quot;x&quot; &#39;y&#39;"));
        assert!(!html.contains("<b>£1</b>"));
        // The link is an attribute value: its ampersand is escaped, its quotes could not escape it.
        assert!(html.contains("href=\"https://app.shiftcover.example/top-ups/tu_1?a=1&amp;b=2\""));
        // Plain text and the subject carry the value as it is.
        assert!(e.text.contains("<b>£1</b> & \"x\" 'y'"));
        assert!(e.subject.unwrap().contains("<b>£1</b>"));
        assert!(html.contains("<title>Action needed: confirm your &lt;b&gt;"));
        let sms = render(Template::TopUpActionNeeded, Channel::Sms, &v).unwrap();
        assert!(sms.text.contains("<b>£1</b> & \"x\" 'y'"));
    }

    #[test]
    fn rendering_is_one_pass_and_tolerates_spaces_and_extra_values() {
        let v = vars([("code", "{{minutes}}"), ("minutes", "5"), ("unused", "x")]);
        assert_eq!(
            fill("a {{ code }} b {{minutes}}", &v, Escape::None).unwrap(),
            "a {{minutes}} b 5"
        );
        assert_eq!(
            fill("a {{code", &v, Escape::None),
            Err(RenderError::Malformed("unclosed `{{`"))
        );
        assert_eq!(
            fill("a {{Code}}", &v, Escape::None),
            Err(RenderError::Malformed("bad placeholder name"))
        );
    }

    #[test]
    fn names_round_trip() {
        for &t in Template::ALL {
            assert_eq!(t.as_str().parse::<Template>().unwrap(), t);
        }
        for &c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), c);
        }
        assert!("fax".parse::<Channel>().is_err());
    }
}
