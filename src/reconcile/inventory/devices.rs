//! The account's virtual MFA devices: who holds one, which belong to nobody, and whether one
//! still exists.

use std::collections::HashSet;

use aws_sdk_iam::types::AssignmentStatusType;
use futures::TryFutureExt;

use crate::arn::Arn;
use crate::aws::pages::{every_page, AwsCall, ListError};
use crate::aws::{AccountClients, AwsError};
use crate::user_name::UserName;

const LIST_VIRTUAL_MFA_DEVICES: AwsCall = AwsCall::iam("ListVirtualMFADevices");

/// The user name in an IAM user ARN (`arn:PARTITION:iam::ACCOUNT:user/PATH/NAME`); `None` for any
/// other principal (assumed roles, federated users, root).
pub fn user_from_arn(arn: &str) -> Option<UserName> {
    Arn::parse(arn)?.user_name().map(UserName::from_iam)
}

/// The account's virtual MFA devices, as [`virtual_devices`] reads them.
#[derive(Debug, Default)]
pub struct VirtualDevices {
    /// The names of the IAM users holding one, as IAM spells them (every answer spells a user
    /// the same: a name spelt otherwise is not taken as the same user's).
    pub holders: HashSet<String>,
    /// The serial numbers of those that belong to nobody, sorted.
    pub unassigned: Vec<String>,
    /// Every serial number.
    pub serials: HashSet<String>,
    /// The pages read.
    pub pages: u32,
}

/// Whether the virtual MFA device `serial` still exists: the read that settles a deletion whose
/// answer never came.
pub async fn virtual_device_exists(
    clients: &AccountClients,
    serial: &str,
    page_size: i32,
) -> Result<bool, ListError> {
    let devices = virtual_devices(clients, page_size).await?;
    Ok(devices.serials.contains(serial))
}

/// Every virtual MFA device, every page.
pub async fn virtual_devices(
    clients: &AccountClients,
    page_size: i32,
) -> Result<VirtualDevices, ListError> {
    const OP: AwsCall = LIST_VIRTUAL_MFA_DEVICES;
    let mut found = VirtualDevices::default();
    let mut pages = 0;
    let fetch = |marker| {
        pages += 1;
        clients
            .iam
            .list_virtual_mfa_devices()
            .assignment_status(AssignmentStatusType::Any)
            .max_items(page_size)
            .set_marker(marker)
            .send()
            .map_err(|e| AwsError::iam(OP.operation, &e))
    };
    every_page(OP, fetch, |page| {
        for device in page.virtual_mfa_devices() {
            if device.serial_number().is_empty() {
                return Err(ListError::nonsense(&OP, "a device without a serial number"));
            }
            found.serials.insert(device.serial_number().to_string());
            match device.user() {
                // The root user's device is listed too; it is no IAM user's.
                Some(user) => {
                    if user_from_arn(user.arn()).is_some() {
                        if user.user_name().is_empty() {
                            return Err(ListError::nonsense(
                                &OP,
                                "a device whose user has no name",
                            ));
                        }
                        found.holders.insert(user.user_name().to_string());
                    }
                }
                None => found.unassigned.push(device.serial_number().to_string()),
            }
        }
        Ok(())
    })
    .await?;
    found.unassigned.sort();
    found.pages = pages;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_arns_give_the_user_name() {
        assert_eq!(
            user_from_arn("arn:aws:iam::123456789012:user/ops/forcemfa"),
            Some(UserName::from_iam("forcemfa"))
        );
        assert_eq!(
            user_from_arn("arn:aws-cn:iam::123456789012:user/bot"),
            Some(UserName::from_iam("bot"))
        );
    }

    #[test]
    fn other_principals_are_not_users() {
        for arn in [
            "arn:aws:sts::123456789012:assumed-role/forcemfa/session",
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::123456789012:role/forcemfa",
            "arn:aws:sts::123456789012:user/moto",
            "arn:aws:iam::123456789012:user/",
            "not an arn",
            "",
        ] {
            assert_eq!(user_from_arn(arn), None, "{arn}");
        }
    }
}
