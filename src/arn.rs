//! Amazon Resource Names, read in one place: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
//! The partition is part of every ARN forcemfa reads or writes: the same account id and user name
//! make different ARNs in `aws`, `aws-cn` and `aws-us-gov`, and a policy written for one
//! partition matches nothing in another.

use std::fmt;
use std::str::FromStr;

/// The AWS partitions whose policies forcemfa renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partition {
    /// The commercial regions.
    #[default]
    Aws,
    /// The China regions.
    AwsCn,
    /// AWS GovCloud (US).
    AwsUsGov,
}

impl Partition {
    pub const ALL: [Partition; 3] = [Partition::Aws, Partition::AwsCn, Partition::AwsUsGov];

    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
        }
    }

    /// The partition a region belongs to (`cn-north-1`: aws-cn; `us-gov-west-1`: aws-us-gov).
    pub fn of_region(region: &str) -> Partition {
        if region.starts_with("cn-") {
            Partition::AwsCn
        } else if region.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else {
            Partition::Aws
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no partition forcemfa renders policies for could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("`{0}` is not one of the partitions aws, aws-cn, aws-us-gov")]
    Unknown(String),
    #[error("`{0}` is not an ARN")]
    NotAnArn(String),
}

impl FromStr for Partition {
    type Err = PartitionError;

    fn from_str(s: &str) -> Result<Partition, PartitionError> {
        Partition::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| PartitionError::Unknown(s.to_string()))
    }
}

/// The partition of the ARN `text`, when it is one forcemfa renders policies for.
pub fn partition_of(text: &str) -> Result<Partition, PartitionError> {
    Arn::parse(text)
        .ok_or_else(|| PartitionError::NotAnArn(text.to_string()))?
        .known_partition()
}

/// A 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// An ARN split into its parts. The resource keeps its colons and slashes
/// (`user/staff/alice`, `assumed-role/forcemfa/session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    /// As written; [`Arn::known_partition`] says whether forcemfa renders policies for it.
    pub partition: &'a str,
    pub service: &'a str,
    /// Empty for global services such as IAM.
    pub region: &'a str,
    /// Empty for some resources (S3 buckets); `aws` for AWS managed policies.
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// `None` unless `text` has the six parts of an ARN with a partition, a service and a
    /// resource.
    pub fn parse(text: &'a str) -> Option<Arn<'a>> {
        let mut parts = text.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return None;
        }
        Some(Arn {
            partition,
            service,
            region,
            account,
            resource,
        })
    }

    pub fn known_partition(&self) -> Result<Partition, PartitionError> {
        self.partition.parse()
    }

    /// The region of a regional resource (an SNS topic's); `None` for a global one (IAM's).
    pub fn regional(&self) -> Option<&'a str> {
        Some(self.region).filter(|r| !r.is_empty())
    }

    /// The name of an IAM resource of `kind` (`user`, `role`, `group`, `mfa`), after its path:
    /// `alice` in `arn:aws:iam::123456789012:user/staff/alice`. `None` for another service, another
    /// kind, or an ARN without a name.
    pub fn iam_name(&self, kind: &str) -> Option<&'a str> {
        if self.service != "iam" || !self.region.is_empty() {
            return None;
        }
        let path_and_name = self.resource.strip_prefix(kind)?.strip_prefix('/')?;
        let name = path_and_name.rsplit('/').next()?;
        (!name.is_empty() && !path_and_name.contains(char::is_whitespace)).then_some(name)
    }

    /// The user name of an IAM user's ARN; `None` for any other principal (assumed roles,
    /// federated users, root).
    pub fn user_name(&self) -> Option<&'a str> {
        self.iam_name("user")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_split_into_their_parts() {
        let arn = Arn::parse("arn:aws-us-gov:iam::123456789012:user/staff/alice").unwrap();
        assert_eq!(
            arn,
            Arn {
                partition: "aws-us-gov",
                service: "iam",
                region: "",
                account: "123456789012",
                resource: "user/staff/alice",
            }
        );
        assert_eq!(arn.known_partition(), Ok(Partition::AwsUsGov));
        assert_eq!(
            partition_of("arn:aws-cn:sts::123456789012:assumed-role/r/s"),
            Ok(Partition::AwsCn)
        );
        assert!(partition_of("arn:aws-iso:iam::123456789012:user/a").is_err());
        assert!(partition_of("").is_err());
        let sts = Arn::parse("arn:aws-cn:sts::123456789012:assumed-role/r/s:x").unwrap();
        assert_eq!(sts.resource, "assumed-role/r/s:x");
        assert_eq!(sts.regional(), None);
        for bad in [
            "",
            "not an arn",
            "arn:aws:iam::1",
            "arn::iam::1:user/a",
            "arn:aws:iam::1:",
        ] {
            assert_eq!(Arn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_topics_region_is_its_arns_fourth_field() {
        fn region(arn: &str) -> Option<&str> {
            Arn::parse(arn)?.regional()
        }
        assert_eq!(
            region("arn:aws:sns:eu-west-1:123456789012:forcemfa"),
            Some("eu-west-1")
        );
        assert_eq!(
            region("arn:aws-cn:sns:cn-north-1:123456789012:t"),
            Some("cn-north-1")
        );
        assert_eq!(region("arn:aws:sns::123456789012:t"), None);
        assert_eq!(region("not an arn"), None);
    }

    #[test]
    fn user_names_come_only_from_user_arns() {
        fn name(arn: &str) -> Option<&str> {
            Arn::parse(arn)?.user_name()
        }
        assert_eq!(name("arn:aws:iam::123456789012:user/alice"), Some("alice"));
        assert_eq!(
            name("arn:aws-cn:iam::123456789012:user/a/b/bot"),
            Some("bot")
        );
        for other in [
            "arn:aws:sts::123456789012:assumed-role/forcemfa/session",
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::123456789012:role/forcemfa",
            "arn:aws:iam::123456789012:users/alice",
            "arn:aws:sts::123456789012:user/moto",
            "arn:aws:iam::123456789012:user/",
            "arn:aws:iam::123456789012:user/staff/",
        ] {
            assert_eq!(name(other), None, "{other}");
        }
        let role = Arn::parse("arn:aws:iam::123456789012:role/ops/forcemfa").unwrap();
        assert_eq!(role.iam_name("role"), Some("forcemfa"));
        assert_eq!(role.user_name(), None);
    }

    #[test]
    fn partitions_by_name_and_by_region() {
        for p in Partition::ALL {
            assert_eq!(p.as_str().parse::<Partition>(), Ok(p));
        }
        assert!("aws-cm"
            .parse::<Partition>()
            .unwrap_err()
            .to_string()
            .contains("aws-cn"));
        assert_eq!(Partition::of_region("cn-northwest-1"), Partition::AwsCn);
        assert_eq!(Partition::of_region("us-gov-east-1"), Partition::AwsUsGov);
        assert_eq!(Partition::of_region("eu-west-1"), Partition::Aws);
        assert_eq!(Partition::of_region(""), Partition::Aws);
    }

    #[test]
    fn account_ids_have_twelve_digits() {
        assert!(is_account_id("012345678901"));
        for bad in ["12345", "1234567890123", "12345678901a", ""] {
            assert!(!is_account_id(bad), "{bad}");
        }
    }
}
