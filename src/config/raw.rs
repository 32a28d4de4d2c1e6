//! The configuration file's shape as serde reads it: every field optional, unknown keys refused.
//! Defaults live in `defaults` and checks in `validate`, from which the parent builds its `Config`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The file as written; every field optional so that defaults live in one place (`defaults`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) group: Option<String>,
    #[serde(default, deserialize_with = "digits")]
    pub(super) account_id: Option<String>,
    pub(super) dry_run: Option<bool>,
    pub(super) max_changes: Option<i64>,
    pub(super) console_users_only: Option<bool>,
    pub(super) schedule: Option<String>,
    pub(super) run_timeout: Option<String>,
    pub(super) run_on_start: Option<bool>,
    pub(super) log_level: Option<String>,
    pub(super) audit_log: Option<PathBuf>,
    #[serde(default)]
    pub(super) exempt: RawExempt,
    #[serde(default)]
    pub(super) admin: RawAdmin,
    #[serde(default)]
    pub(super) aws: RawAws,
    #[serde(default)]
    pub(super) cleanup: RawCleanup,
    #[serde(default)]
    pub(super) group_policy: RawGroupPolicy,
    #[serde(default)]
    pub(super) accounts: Vec<RawAccount>,
    pub(super) organization: Option<RawOrganization>,
    pub(super) events: Option<RawEvents>,
    #[serde(default)]
    pub(super) rollout: super::rollout::RawRollout,
    #[serde(default)]
    pub(super) notify: super::notify::RawNotify,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    pub(super) queue_url: Option<String>,
    pub(super) wait: Option<String>,
    pub(super) batch_window: Option<String>,
    pub(super) visibility_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub(super) role_arn: String,
    pub(super) external_id: Option<String>,
    pub(super) name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrganization {
    pub(super) role_name: String,
    #[serde(default)]
    pub(super) exclude_accounts: Vec<String>,
    pub(super) external_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCleanup {
    pub(super) unassigned_mfa_devices: Option<bool>,
    pub(super) unassigned_min_age: Option<String>,
    pub(super) state_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroupPolicy {
    pub(super) allow_enrolment_with_access_keys: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExempt {
    #[serde(default)]
    pub(super) users: Vec<String>,
    #[serde(default)]
    pub(super) path_prefixes: Vec<String>,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<String>,
    pub(super) token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAws {
    pub(super) max_concurrency: Option<i64>,
    pub(super) max_attempts: Option<i64>,
    pub(super) connect_timeout_secs: Option<i64>,
    pub(super) operation_timeout_secs: Option<i64>,
    pub(super) page_size: Option<i64>,
    pub(super) retry_mode: Option<String>,
    pub(super) max_backoff_secs: Option<i64>,
    pub(super) max_accounts_in_parallel: Option<i64>,
    pub(super) max_requests_per_second: Option<i64>,
    pub(super) burst: Option<i64>,
}

/// An account id as written in the file (`"123456789012"`) or in an environment variable, where
/// twelve digits read as a TOML integer.
fn digits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Digits {
        Text(String),
        Number(u64),
    }
    Ok(Option::<Digits>::deserialize(d)?.map(|v| match v {
        Digits::Text(text) => text,
        Digits::Number(n) => n.to_string(),
    }))
}
