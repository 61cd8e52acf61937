//! `[mqtt] poc_topic`: where proof-of-coverage reports are published, a topic template with
//! `{prefix}`, `{gateway_id}` and `{kind}`, validated so that reports stay out of the ChirpStack
//! gateway protocol's namespaces: a network server takes everything on
//! `{prefix}/gateway/+/event/+` for a gateway event (ChirpStack logs "Unknown event type" for
//! each report), and `command/+` is what the daemon itself subscribes to.

use drivers::radio::Eui64;

/// The default: next to the gateway's topics, outside `event/`, `state/` and `command/`.
pub const DEFAULT_POC_TOPIC: &str = "{prefix}/gateway/{gateway_id}/poc/{kind}";

/// The levels under `…/gateway/{id}/` that belong to the ChirpStack gateway protocol.
const RESERVED: [&str; 3] = ["event", "state", "command"];

/// The kinds of proof-of-coverage report, each published on its own topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PocKind {
    /// A beacon report.
    Beacon,
    /// A witness report.
    Witness,
    /// A data-transfer receipt.
    Receipt,
}

impl PocKind {
    /// Every kind.
    pub const ALL: [PocKind; 3] = [PocKind::Beacon, PocKind::Witness, PocKind::Receipt];

    /// The `{kind}` of the topic: `beacon`, `witness`, `receipt`.
    pub fn as_str(self) -> &'static str {
        match self {
            PocKind::Beacon => "beacon",
            PocKind::Witness => "witness",
            PocKind::Receipt => "receipt",
        }
    }
}

/// Why a `poc_topic` template is refused (each message starts with the template).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PocTopicError {
    /// A `{` without its `}` or the other way round.
    #[error("{0:?}: unbalanced brace; placeholders are {{prefix}}, {{gateway_id}} and {{kind}}")]
    Unbalanced(String),
    /// A placeholder other than `{prefix}`, `{gateway_id}` and `{kind}`.
    #[error(
        "{template:?}: unknown placeholder {{{name}}}; use {{prefix}}, {{gateway_id}} and {{kind}}"
    )]
    UnknownPlaceholder {
        /// The template.
        template: String,
        /// The placeholder's name.
        name: String,
    },
    /// `{gateway_id}` or `{kind}` is missing.
    #[error(
        "{0:?}: must contain {{gateway_id}} and {{kind}} (each hotspot and each report kind on \
         its own topic), e.g. {DEFAULT_POC_TOPIC:?}"
    )]
    MissingPlaceholder(String),
    /// The rendered topic has a wildcard, an empty level or a leading or trailing `/`.
    #[error(
        "{template:?}: gives {sample:?}; a topic has no wildcards (+, #), no empty level and no \
         leading or trailing '/'"
    )]
    NotATopic {
        /// The template.
        template: String,
        /// A topic it renders.
        sample: String,
    },
    /// The rendered topic is longer than MQTT allows.
    #[error("{template:?}: gives a topic of {bytes} bytes; MQTT allows 65535")]
    TooLong {
        /// The template.
        template: String,
        /// The rendered topic's length.
        bytes: usize,
    },
    /// The rendered topic lies in the ChirpStack gateway protocol's own namespace.
    #[error(
        "{template:?}: gives {sample:?}, in the ChirpStack gateway protocol's {namespace}/ \
         topics, where a network server takes every message for one of its own (ChirpStack \
         subscribes {prefix}/gateway/+/event/+ and logs an error for each report); use a topic \
         outside event/, state/ and command/, e.g. the default {DEFAULT_POC_TOPIC:?}"
    )]
    Reserved {
        /// The template.
        template: String,
        /// `event`, `state` or `command`.
        namespace: String,
        /// The `topic_prefix`.
        prefix: String,
        /// A topic it renders.
        sample: String,
    },
}

/// A validated `poc_topic` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PocTopic(String);

impl Default for PocTopic {
    fn default() -> Self {
        PocTopic(DEFAULT_POC_TOPIC.to_string())
    }
}

impl PocTopic {
    /// Check `template` for topics under `prefix` (a valid `topic_prefix`); the error says
    /// what is wrong, for the key `mqtt.poc_topic`.
    pub fn parse(template: &str, prefix: &str) -> Result<PocTopic, PocTopicError> {
        let mut rest = template;
        let mut names = Vec::new();
        while let Some(open) = rest.find(['{', '}']) {
            let after = &rest[open + 1..];
            let close = after.find('}').filter(|_| rest.as_bytes()[open] == b'{');
            let Some(close) = close.filter(|c| !after[..*c].contains('{')) else {
                return Err(PocTopicError::Unbalanced(template.to_string()));
            };
            let name = &after[..close];
            if !["prefix", "gateway_id", "kind"].contains(&name) {
                return Err(PocTopicError::UnknownPlaceholder {
                    template: template.to_string(),
                    name: name.to_string(),
                });
            }
            names.push(name);
            rest = &after[close + 1..];
        }
        if !names.contains(&"kind") || !names.contains(&"gateway_id") {
            return Err(PocTopicError::MissingPlaceholder(template.to_string()));
        }
        let topic = PocTopic(template.to_string());
        let sample = topic.render(prefix, Eui64([1, 2, 3, 4, 5, 6, 7, 8]), PocKind::Witness);
        if sample.contains(['+', '#', '\0'])
            || sample.starts_with('/')
            || sample.ends_with('/')
            || sample.contains("//")
        {
            return Err(PocTopicError::NotATopic {
                template: template.to_string(),
                sample,
            });
        }
        if sample.len() > 65_535 {
            return Err(PocTopicError::TooLong {
                template: template.to_string(),
                bytes: sample.len(),
            });
        }
        let levels: Vec<&str> = sample.split('/').collect();
        if let [.., gateway, _, namespace, _] = levels.as_slice() {
            if *gateway == "gateway" && RESERVED.contains(namespace) {
                return Err(PocTopicError::Reserved {
                    template: template.to_string(),
                    namespace: (*namespace).to_string(),
                    prefix: prefix.to_string(),
                    sample: sample.clone(),
                });
            }
        }
        Ok(topic)
    }

    /// The topic of a `kind` report of `gateway`, under `prefix`.
    pub fn render(&self, prefix: &str, gateway: Eui64, kind: PocKind) -> String {
        self.0
            .replace("{prefix}", prefix)
            .replace("{gateway_id}", &gateway.to_string())
            .replace("{kind}", kind.as_str())
    }

    /// The template as written.
    pub fn template(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Eui64 = Eui64([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]);

    /// Whether MQTT filter `filter` matches `topic` (`+` one level, `#` the rest).
    fn matches(filter: &str, topic: &str) -> bool {
        let (f, t): (Vec<&str>, Vec<&str>) =
            (filter.split('/').collect(), topic.split('/').collect());
        if f.last() == Some(&"#") {
            return t.len() >= f.len() - 1
                && f[..f.len() - 1]
                    .iter()
                    .zip(&t)
                    .all(|(f, t)| f == &"+" || f == t);
        }
        f.len() == t.len() && f.iter().zip(&t).all(|(f, t)| f == &"+" || f == t)
    }

    #[test]
    fn the_default_is_outside_chirpstacks_subscriptions() {
        let t = PocTopic::default();
        let topics: Vec<String> = PocKind::ALL
            .iter()
            .map(|k| t.render("eu868", GW, *k))
            .collect();
        assert_eq!(
            topics,
            [
                "eu868/gateway/0102030405060708/poc/beacon",
                "eu868/gateway/0102030405060708/poc/witness",
                "eu868/gateway/0102030405060708/poc/receipt",
            ]
        );
        for topic in &topics {
            for filter in [
                "+/gateway/+/event/+",
                "eu868/gateway/+/event/+",
                "eu868/gateway/+/state/+",
                "eu868/gateway/0102030405060708/command/+",
            ] {
                assert!(!matches(filter, topic), "{filter} matches {topic}");
            }
            assert!(matches("eu868/gateway/+/poc/+", topic));
        }
        assert_eq!(PocTopic::parse(DEFAULT_POC_TOPIC, "eu868"), Ok(t));
    }

    #[test]
    fn other_templates_render_their_placeholders() {
        let t = PocTopic::parse("helium/{gateway_id}/{kind}", "eu868").unwrap();
        assert_eq!(
            t.render("eu868", GW, PocKind::Receipt),
            "helium/0102030405060708/receipt"
        );
        let t = PocTopic::parse("{prefix}/poc/{kind}/{gateway_id}", "us915/site-1").unwrap();
        assert_eq!(
            t.render("us915/site-1", GW, PocKind::Beacon),
            "us915/site-1/poc/beacon/0102030405060708"
        );
        // event/ deeper than ChirpStack's one level after it is not in its subscription.
        let t = PocTopic::parse("{prefix}/gateway/{gateway_id}/event/poc/{kind}", "eu868");
        assert!(t.is_ok(), "{t:?}");
    }

    #[test]
    fn templates_in_the_gateway_protocols_topics_or_malformed_are_refused() {
        for (template, says) in [
            (
                "{prefix}/gateway/{gateway_id}/event/{kind}",
                "event/ topics",
            ),
            (
                "{prefix}/gateway/{gateway_id}/state/{kind}",
                "state/ topics",
            ),
            (
                "{prefix}/gateway/{gateway_id}/command/{kind}",
                "command/ topics",
            ),
            ("other/gateway/{gateway_id}/event/{kind}", "event/ topics"),
            (
                "{prefix}/gateway/{gateway_id}/event/poc-{kind}",
                "event/ topics",
            ),
            ("{prefix}/gateway/{gateway_id}/poc", "{kind}"),
            ("{prefix}/poc/{kind}", "{gateway_id}"),
            ("{prefix}/{gateway}/{kind}", "unknown placeholder {gateway}"),
            ("{prefix}/{gateway_id}/{kind", "unbalanced"),
            ("{prefix}/{gateway_id}}/{kind}", "unbalanced"),
            ("{prefix}/{gateway_id}/}{kind}", "unbalanced"),
            ("{prefix}/{gateway_id}/{{kind}}", "unbalanced"),
            ("{prefix}/+/{gateway_id}/{kind}", "wildcards"),
            ("{prefix}/#/{gateway_id}/{kind}", "wildcards"),
            ("/{prefix}/{gateway_id}/{kind}", "leading or trailing"),
            ("{prefix}/{gateway_id}/{kind}/", "leading or trailing"),
            ("{prefix}//{gateway_id}/{kind}", "empty level"),
            ("", "{kind}"),
        ] {
            let e = PocTopic::parse(template, "eu868").unwrap_err();
            assert!(e.to_string().contains(says), "{template:?}: {e}");
        }
        let long = format!("{}/{{gateway_id}}/{{kind}}", "x".repeat(70_000));
        assert!(PocTopic::parse(&long, "eu868")
            .unwrap_err()
            .to_string()
            .contains("65535"));
    }
}
