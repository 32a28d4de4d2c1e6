//! NAIVE BASELINE for the benchmark, not part of forcemfa: the per-user scan a cron'd script
//! does. ListUsers, then, one user after the other, ListMFADevices and ListGroupsForUser, to
//! decide who belongs in the group, and with `--apply` the change for that user right away.
//! Prints one JSON line: users, API calls, the plan's size.
//!
//! Usage: naive_scan GROUP [--apply]   (talks to whatever AWS_ENDPOINT_URL names)

use aws_sdk_iam::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let group = args.next().unwrap_or_else(|| "ForceMFA".to_string());
    let apply = args.next().as_deref() == Some("--apply");
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let iam = Client::new(&sdk);
    let mut calls = 0u64;

    let mut users = Vec::new();
    let mut pages = iam.list_users().into_paginator().send();
    while let Some(page) = pages.next().await {
        calls += 1;
        users.extend(page?.users().iter().map(|u| u.user_name().to_string()));
    }

    let (mut to_add, mut to_remove) = (0u64, 0u64);
    for user in &users {
        let mut has_mfa = false;
        let mut pages = iam
            .list_mfa_devices()
            .user_name(user)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            calls += 1;
            has_mfa |= !page?.mfa_devices().is_empty();
        }
        let mut member = false;
        let mut pages = iam
            .list_groups_for_user()
            .user_name(user)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            calls += 1;
            member |= page?.groups().iter().any(|g| g.group_name() == group);
        }
        match (has_mfa, member) {
            (false, false) => {
                to_add += 1;
                if apply {
                    calls += 1;
                    iam.add_user_to_group()
                        .group_name(&group)
                        .user_name(user)
                        .send()
                        .await?;
                }
            }
            (true, true) => {
                to_remove += 1;
                if apply {
                    calls += 1;
                    iam.remove_user_from_group()
                        .group_name(&group)
                        .user_name(user)
                        .send()
                        .await?;
                }
            }
            _ => {}
        }
    }
    println!(
        "{{\"users\":{},\"api_calls\":{calls},\"to_add\":{to_add},\"to_remove\":{to_remove}}}",
        users.len()
    );
    Ok(())
}
