//! Message texts from templates: built-in Indonesian and English, each
//! replaceable by a file in `delivery.templates_dir` without rebuilding.
use std::path::Path;

use anyhow::{Context, bail};
use minijinja::{Environment, context};

use entity::states::Language;

use crate::domain::SmsAutofill;

const NAMES: [&str; 4] = ["sms.txt", "email_subject.txt", "email.txt", "email.html"];

fn builtin(language: Language, name: &str) -> &'static str {
    match (language, name) {
        (Language::En, "sms.txt") => include_str!("templates/en/sms.txt"),
        (Language::En, "email_subject.txt") => include_str!("templates/en/email_subject.txt"),
        (Language::En, "email.txt") => include_str!("templates/en/email.txt"),
        (Language::En, _) => include_str!("templates/en/email.html"),
        (Language::Id, "sms.txt") => include_str!("templates/id/sms.txt"),
        (Language::Id, "email_subject.txt") => include_str!("templates/id/email_subject.txt"),
        (Language::Id, "email.txt") => include_str!("templates/id/email.txt"),
        (Language::Id, _) => include_str!("templates/id/email.html"),
    }
}

pub struct Templates {
    env: Environment<'static>,
}

pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Templates {
    /// Built-in templates, each overridden by `<dir>/<lang>/<name>` when that
    /// file exists. Every SMS template is checked to fit one segment.
    pub fn load(overrides: Option<&Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        // `.html` templates escape what they interpolate; text ones do not.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        for language in Language::ALL {
            for name in NAMES {
                let key = format!("{}/{name}", language.code());
                let source = match overrides.map(|dir| dir.join(&key)).filter(|p| p.exists()) {
                    Some(path) => std::fs::read_to_string(&path)
                        .with_context(|| format!("Failed to read template {}", path.display()))?,
                    None => builtin(language, name).to_owned(),
                };
                env.add_template_owned(key.clone(), source)
                    .with_context(|| format!("Failed to parse template {key}"))?;
            }
        }
        let templates = Self { env };
        templates.check_sms_fit_one_segment()?;
        Ok(templates)
    }

    /// Renders each language's SMS with the longest code, expiry and name
    /// the service accepts; operators learn at start-up, not from a carrier bill.
    fn check_sms_fit_one_segment(&self) -> anyhow::Result<()> {
        self.check_sms_fits(&SmsAutofill::default())
    }

    /// The same check with a host's autofill lines, which every SMS of that
    /// host carries: when its autofill is set, and for every host at start.
    pub fn check_sms_fits(&self, autofill: &SmsAutofill) -> anyhow::Result<()> {
        // A name outside GSM-7 turns the whole SMS into UCS-2 (70 characters).
        let longest_names = ["W".repeat(100), "ễ".repeat(100)];
        for language in Language::ALL {
            for name in &longest_names {
                let text = self.sms(language, "ABC12345678", 999, name, autofill)?;
                if !fits_one_segment(&text) {
                    bail!(
                        "the {} SMS template renders to more than one SMS segment (160 GSM-7 or 70 UCS-2 characters), e.g. {text:?}",
                        language.code()
                    );
                }
            }
        }
        Ok(())
    }

    pub fn sms(
        &self,
        language: Language,
        code: &str,
        expiry_minutes: u32,
        name: &str,
        autofill: &SmsAutofill,
    ) -> anyhow::Result<String> {
        let text = self.render(language, "sms.txt", context! { code, expiry_minutes, name })?;
        Ok(autofill.apply(&text, code))
    }

    pub fn email(
        &self,
        language: Language,
        name: &str,
        link: &str,
        link_expiry_hours: u32,
    ) -> anyhow::Result<RenderedEmail> {
        let ctx = context! { name, link, link_expiry_hours };
        Ok(RenderedEmail {
            subject: self
                .render(language, "email_subject.txt", ctx.clone())?
                .trim()
                .to_owned(),
            text: self.render(language, "email.txt", ctx.clone())?,
            html: self.render(language, "email.html", ctx)?,
        })
    }

    fn render(
        &self,
        language: Language,
        name: &str,
        ctx: minijinja::Value,
    ) -> anyhow::Result<String> {
        let key = format!("{}/{name}", language.code());
        self.env
            .get_template(&key)
            .and_then(|t| t.render(ctx))
            .with_context(|| format!("Failed to render template {key}"))
    }
}

/// GSM 03.38 default alphabet (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Characters of the extension table: an escape plus one septet each.
const GSM7_EXTENDED: &str = "^{}\\[~]|€\u{c}";

/// Whether the text fits one SMS: 160 septets in GSM-7, else 70 UTF-16
/// code units in UCS-2.
pub fn fits_one_segment(text: &str) -> bool {
    let septets: Option<usize> = text
        .chars()
        .map(|c| {
            if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENDED.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .sum();
    match septets {
        Some(count) => count <= 160,
        None => text.encode_utf16().count() <= 70,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_rules_follow_gsm_and_ucs2_limits() {
        assert!(fits_one_segment(&"a".repeat(160)));
        assert!(!fits_one_segment(&"a".repeat(161)));
        assert!(
            !fits_one_segment(&"€".repeat(81)),
            "extension characters count twice"
        );
        assert!(fits_one_segment(&"€".repeat(80)));
        assert!(
            fits_one_segment(&"ä".repeat(160)),
            "ä is in the basic table"
        );
        assert!(fits_one_segment(&"ą".repeat(70)), "outside GSM-7: UCS-2");
        assert!(!fits_one_segment(&"ą".repeat(71)));
        assert!(
            !fits_one_segment(&"😀".repeat(36)),
            "astral characters take two UTF-16 units"
        );
    }

    #[test]
    fn every_builtin_sms_fits_one_segment_with_long_values() {
        let templates = Templates::load(None).unwrap();
        let names = [
            "W".repeat(100),
            "Ñ".repeat(100),
            "Nguyễn Thị Minh Khai ".repeat(5),
        ];
        for language in Language::ALL {
            for name in &names {
                let text = templates
                    .sms(language, "ABC12345678", 999, name, &SmsAutofill::default())
                    .unwrap();
                assert!(fits_one_segment(&text), "{text}");
                assert!(text.contains("ABC12345678"));
            }
        }
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let templates = Templates::load(None).unwrap();
        let name = "<script>alert('x')</script> & \"Ann\"";
        let email = templates
            .email(Language::En, name, "https://x.test/complete/abc", 24)
            .unwrap();
        assert!(!email.html.contains("<script>"));
        assert!(email.html.contains("&lt;script&gt;"));
        assert!(email.text.contains(name));
        let indonesian = templates
            .email(Language::Id, "Ann", "https://x.test/c", 24)
            .unwrap();
        assert_eq!(indonesian.subject, "Selesaikan pendaftaran Anda");
        assert!(indonesian.text.contains("Halo Ann"));
    }

    #[test]
    fn overrides_replace_builtins_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("en")).unwrap();
        std::fs::write(dir.path().join("en/sms.txt"), "Code {{ code }}").unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let english = templates
            .sms(Language::En, "ABC123", 5, "Ann", &SmsAutofill::default())
            .unwrap();
        assert_eq!(english, "Code ABC123");
        let indonesian = templates
            .sms(Language::Id, "ABC123", 5, "Ann", &SmsAutofill::default())
            .unwrap();
        assert!(indonesian.contains("kode registrasi"), "built-in kept");

        // Putting the name in an SMS can overflow it with a long name.
        let with_name = "Hi {{ name }}, your code is {{ code }}";
        std::fs::write(dir.path().join("en/sms.txt"), with_name).unwrap();
        let error = Templates::load(Some(dir.path())).err().unwrap();
        assert!(
            error.to_string().contains("more than one SMS segment"),
            "{error}"
        );
    }
}
