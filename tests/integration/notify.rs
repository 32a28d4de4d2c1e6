//! `[notify]`: the admins' summary on SNS and a webhook, each user's email through SES, sent
//! once across restarts, never in a dry run, and never in the way of enforcement.

use crate::support::notify::{
    received, sent_emails, sns_topic_to_queue, verified_sender, WebhookReceiver,
};
use crate::support::{free_port, set, Account, ACCOUNT_ID};

const GROUP: &str = "ForceMFA";
const FROM: &str = "forcemfa@example.com";

/// carol (no MFA) to be added, alice (MFA, a member) to be removed, both with an address.
async fn account() -> Account {
    let a = Account::with_group().await;
    a.user_at("carol", "/", &[("email", "carol@example.com")])
        .await;
    a.user_at("alice", "/", &[("email", "alice@example.com")])
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a
}

/// Every channel on, through this account's emulator and `webhook`.
async fn notify_config(
    a: &Account,
    webhook: &WebhookReceiver,
    extra: &str,
) -> (std::path::PathBuf, String) {
    let (topic, queue) = sns_topic_to_queue(&a.moto.endpoint).await;
    verified_sender(&a.moto.endpoint, FROM).await;
    let token = a.dir.path().join("webhook-token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let state = a.dir.path().join("notify.json");
    let config = a.config(&format!(
        "{extra}\n[notify]\nsns_topic_arn = {topic:?}\nwebhook_url = {:?}\nwebhook_token_file = {:?}\nemail_from = {FROM:?}\nemails_per_second = 100\nstate_file = {:?}\n",
        webhook.url(),
        token.to_str().unwrap(),
        state.to_str().unwrap(),
    ));
    (config, queue)
}

fn outcomes(report: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut list: Vec<(String, String, String)> = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["channel"].as_str().unwrap().to_string(),
                n["kind"].as_str().unwrap().to_string(),
                n["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    list.sort();
    list
}

fn triples(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[tokio::test]
async fn the_topic_the_webhook_and_each_user_hear_of_the_run_once() {
    let a = account().await;
    let webhook = WebhookReceiver::start();
    let (config, queue) = notify_config(&a, &webhook, "").await;
    let run = a.reconcile_json(&config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["carol"]));
    assert_eq!(
        outcomes(&run.report()),
        triples(&[
            ("email", "added", "sent"),
            ("email", "removed", "sent"),
            ("sns", "summary", "sent"),
            ("webhook", "summary", "sent"),
        ])
    );

    let sns = received(&a.moto.endpoint, &queue).await;
    assert_eq!(sns.len(), 1, "{sns:?}");
    let message = sns[0]["Message"].as_str().unwrap();
    assert!(
        message.contains("carol") && message.contains("alice"),
        "{message}"
    );
    assert_eq!(
        sns[0]["MessageAttributes"]["event"]["Value"], "run",
        "{}",
        sns[0]
    );
    assert_eq!(
        sns[0]["MessageAttributes"]["account_id"]["Value"],
        ACCOUNT_ID
    );

    let posts = webhook.requests();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].headers["authorization"], "Bearer s3cret-token");
    assert!(
        posts[0].body["text"].as_str().unwrap().contains("carol"),
        "{:?}",
        posts[0]
    );
    assert_eq!(posts[0].body["added"][0], "carol");

    let emails = sent_emails(&a.moto.endpoint);
    let to = |who: &str| {
        emails
            .iter()
            .find(|e| e["destinations"]["ToAddresses"][0] == who)
            .unwrap_or_else(|| panic!("no email to {who}: {emails:?}"))
            .clone()
    };
    assert!(to("carol@example.com")["subject"]
        .as_str()
        .unwrap()
        .contains("needs MFA"));
    assert!(to("carol@example.com")["body"]
        .as_str()
        .unwrap()
        .contains("set up MFA"));
    assert!(to("alice@example.com")["subject"]
        .as_str()
        .unwrap()
        .contains("access is back"));
    assert_eq!(to("carol@example.com")["source"], FROM);

    // Nothing new: nothing sent.
    let again = a.reconcile_json(&config);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.report()["notifications"], serde_json::json!([]));
    assert!(received(&a.moto.endpoint, &queue).await.is_empty());
    assert_eq!(webhook.requests().len(), 1);
    assert_eq!(sent_emails(&a.moto.endpoint).len(), 2);
}

#[tokio::test]
async fn a_reminder_is_sent_once_across_a_restart() {
    let a = Account::with_group().await;
    a.user_at("carol", "/", &[("email", "carol@example.com")])
        .await;
    let webhook = WebhookReceiver::start();
    let deadline = (time::OffsetDateTime::now_utc() + time::Duration::days(2))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (config, queue) = notify_config(
        &a,
        &webhook,
        &format!("[rollout]\nenforce_from = {deadline:?}"),
    )
    .await;
    let first = a.reconcile_json(&config);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(a.members(GROUP).await, set(&[]));
    assert_eq!(
        outcomes(&first.report()),
        triples(&[
            ("email", "reminder", "sent"),
            ("sns", "summary", "sent"),
            ("webhook", "summary", "sent"),
        ])
    );
    let emails = sent_emails(&a.moto.endpoint);
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(
        emails[0]["subject"].as_str().unwrap().contains(&deadline),
        "{}",
        emails[0]
    );
    assert_eq!(received(&a.moto.endpoint, &queue).await.len(), 1);

    // Another process, the same record: the reminder and the summary are not sent again.
    let second = a.reconcile_json(&config);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.report()["notifications"], serde_json::json!([]));
    assert_eq!(sent_emails(&a.moto.endpoint).len(), 1);
    assert!(received(&a.moto.endpoint, &queue).await.is_empty());
}

#[tokio::test]
async fn unreachable_channels_leave_enforcement_and_the_exit_code_as_they_are() {
    let a = account().await;
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let config = a.config(&format!(
        "[notify]\nsns_topic_arn = \"arn:aws:sns:us-east-1:{ACCOUNT_ID}:missing\"\nwebhook_url = {dead:?}\nemail_from = \"unverified@example.com\"\nemails_per_second = 100\n"
    ));
    let metrics = a.dir.path().join("forcemfa.prom");
    let run = a.forcemfa(&[
        "reconcile",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["carol"]));
    assert_eq!(
        outcomes(&run.report()),
        triples(&[
            ("email", "added", "failed"),
            ("email", "removed", "failed"),
            ("sns", "summary", "failed"),
            ("webhook", "summary", "failed"),
        ])
    );
    let acct = run.account();
    let warnings = acct["warnings"].to_string();
    assert!(warnings.contains("not delivered"), "{acct}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("forcemfa_notifications_total{channel=\"webhook\",outcome=\"failed\"} 1"),
        "{text}"
    );
    // The token of the webhook or its path never shows.
    assert!(!run.stderr.contains("/hook\""), "{}", run.stderr);
}

#[tokio::test]
async fn a_dry_run_sends_nothing_and_lists_what_it_would_send() {
    let a = account().await;
    let webhook = WebhookReceiver::start();
    let (config, queue) = notify_config(&a, &webhook, "").await;
    let run = a.forcemfa(&[
        "reconcile",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
        "--dry-run",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, set(&["alice"]));
    assert_eq!(
        outcomes(&run.report()),
        triples(&[
            ("email", "added", "would_send"),
            ("email", "removed", "would_send"),
            ("sns", "summary", "would_send"),
            ("webhook", "summary", "would_send"),
        ])
    );
    assert!(received(&a.moto.endpoint, &queue).await.is_empty());
    assert!(webhook.requests().is_empty());
    assert!(sent_emails(&a.moto.endpoint).is_empty());
    assert!(!a.dir.path().join("notify.json").exists());
}

/// A record damaged by one stray byte, with two emails queued, is never replaced by an empty one:
/// a dry run leaves it where it is, a run keeps it aside under the name its warning gives.
#[tokio::test]
async fn a_damaged_record_is_kept_aside_and_named_never_overwritten() {
    let a = account().await;
    let webhook = WebhookReceiver::start();
    let (config, _) = notify_config(&a, &webhook, "").await;
    let state = a.dir.path().join("notify.json");
    let queued = |user: &str| {
        serde_json::json!({
            "message": {
                "type": "email", "account_id": ACCOUNT_ID, "user": user, "occasion": "added",
                "to": format!("{user}@example.com"), "subject": "s", "body": "b", "deadline": null
            },
            "attempts": 1
        })
    };
    let record = serde_json::json!({
        "sent": {}, "known": {}, "outbox": [queued("erin"), queued("frank")]
    });
    let damaged = format!("x{record}");
    std::fs::write(&state, &damaged).unwrap();
    let config = config.to_str().unwrap();

    let dry = a.forcemfa(&["reconcile", "--config", config, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stderr.contains("a dry run leaves it as it is"),
        "{}",
        dry.stderr
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap(), damaged);

    let run = a.forcemfa(&["reconcile", "--config", config]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains("starting with no record of notifications sent"))
        .unwrap_or_else(|| panic!("no warning:\n{}", run.stderr));
    let aside = warning
        .split("kept aside as `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("the warning names no file: {warning}"));
    assert!(aside.contains("notify.json.damaged-"), "{warning}");
    // The queued emails are all there, byte for byte, for a person to resend.
    assert_eq!(std::fs::read_to_string(aside).unwrap(), damaged);
    // The run went on and keeps a new record of its own.
    let new: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(new["outbox"].is_array(), "{new}");
}
