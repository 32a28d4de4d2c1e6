//! Seeds an emulated IAM endpoint (moto_server) with a small demo account, or lists the
//! enforcement group's members. Used by `scripts/demo`; talks to whatever AWS_ENDPOINT_URL names.
//!
//! Usage: demo_account seed | demo_account members

use aws_sdk_iam::types::Tag;
use aws_sdk_iam::Client;

const GROUP: &str = "ForceMFA";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let iam = Client::new(&sdk);
    match std::env::args().nth(1).as_deref() {
        Some("seed") => seed(&iam).await,
        Some("members") => members(&iam).await,
        _ => Err("usage: demo_account seed|members".into()),
    }
}

async fn seed(iam: &Client) -> Result<(), Box<dyn std::error::Error>> {
    iam.create_group().group_name(GROUP).send().await?;
    // (name, path, exempt tag, MFA kind, already in the group)
    let users = [
        ("alice", "/staff/", false, Some("virtual"), true),
        ("bob", "/staff/", false, Some("hardware"), true),
        ("carol", "/staff/", false, None, false),
        ("dave", "/staff/", false, None, true),
        ("erin", "/staff/", false, Some("virtual"), false),
        ("frank", "/staff/", false, None, false),
        ("breakglass", "/", false, None, false),
        ("ci-deployer", "/automation/", false, None, false),
        ("backup-agent", "/", true, None, true),
    ];
    for (name, path, exempt_tag, mfa, member) in users {
        let mut req = iam.create_user().user_name(name).path(path);
        if exempt_tag {
            req = req.tags(Tag::builder().key("forcemfa").value("exempt").build()?);
        }
        req.send().await?;
        let serial = match mfa {
            Some("virtual") => {
                let device = iam
                    .create_virtual_mfa_device()
                    .virtual_mfa_device_name(format!("{name}-phone"))
                    .send()
                    .await?;
                device
                    .virtual_mfa_device()
                    .map(|d| d.serial_number().to_string())
            }
            Some(_) => Some(format!("GAHT{:08}", name.len())),
            None => None,
        };
        if let Some(serial) = serial {
            iam.enable_mfa_device()
                .user_name(name)
                .serial_number(serial)
                .authentication_code1("123456")
                .authentication_code2("654321")
                .send()
                .await?;
        }
        if member {
            iam.add_user_to_group()
                .group_name(GROUP)
                .user_name(name)
                .send()
                .await?;
        }
    }
    println!("seeded {} users:", users.len());
    for (name, path, exempt_tag, mfa, member) in users {
        println!(
            "  {name:<13} path {path:<13} MFA {:<9} {}{}",
            mfa.unwrap_or("none"),
            if member {
                "in ForceMFA"
            } else {
                "not in ForceMFA"
            },
            if exempt_tag {
                ", tag forcemfa=exempt"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn members(iam: &Client) -> Result<(), Box<dyn std::error::Error>> {
    let out = iam.get_group().group_name(GROUP).send().await?;
    let mut names: Vec<&str> = out
        .users()
        .iter()
        .map(aws_sdk_iam::types::User::user_name)
        .collect();
    names.sort();
    println!("{GROUP} members: {}", names.join(", "));
    Ok(())
}
