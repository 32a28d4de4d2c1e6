//! IAM user names: parsed by IAM's rules, compared as IAM compares them.
//!
//! IAM keeps user names unique regardless of case (`BreakGlass` and `breakglass` cannot both
//! exist, and IAM finds either by the other), but spells each as it was created. A [`UserName`]
//! keeps that spelling for people and compares and hashes by a case-folded key, so that no set,
//! map or comparison of user names can forget to fold. It has no order: lists are sorted by the
//! spelling people read, with [`UserName::as_str`].

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// IAM's rule for user and role names: 1 to 64 characters of `[A-Za-z0-9+=,.@_-]`.
pub fn is_iam_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// Whether two IAM names (of users, groups or roles) name the same entity: IAM keeps each kind
/// of name unique regardless of case.
pub fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A text that is not an IAM user name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IAM user name (1 to 64 letters, digits and +=,.@_-)")]
pub struct InvalidUserName;

/// An IAM user name, as spelt, that equals any spelling of the same name.
#[derive(Debug, Clone)]
pub struct UserName {
    name: String,
    /// The name folded as IAM folds it (ASCII: IAM names have no other letters).
    key: String,
}

impl UserName {
    /// A name given to forcemfa (configuration, command line, an event): it must be one IAM
    /// could have made.
    pub fn parse(name: &str) -> Result<UserName, InvalidUserName> {
        if is_iam_name(name) {
            Ok(UserName::from_iam(name))
        } else {
            Err(InvalidUserName)
        }
    }

    /// A name IAM itself answered with: taken as IAM spells it.
    pub fn from_iam(name: &str) -> UserName {
        UserName {
            name: name.to_string(),
            key: name.to_ascii_lowercase(),
        }
    }

    /// The name as spelt.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The name as IAM compares it: for keys kept outside forcemfa (a state file).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether `other`, however spelt, names this user.
    pub fn is(&self, other: &str) -> bool {
        same_name(&self.name, other)
    }
}

impl PartialEq for UserName {
    fn eq(&self, other: &UserName) -> bool {
        self.key == other.key
    }
}

impl Eq for UserName {}

impl Hash for UserName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// A name as written (in a test, a configuration) names this user however it is spelt.
impl PartialEq<str> for UserName {
    fn eq(&self, other: &str) -> bool {
        self.is(other)
    }
}

impl PartialEq<&str> for UserName {
    fn eq(&self, other: &&str) -> bool {
        self.is(other)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for UserName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// Written as spelt.
impl Serialize for UserName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

/// Read back from forcemfa's own records, held to IAM's rules as any name given to it.
impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UserName, D::Error> {
        let name = String::deserialize(d)?;
        UserName::parse(&name).map_err(|e| serde::de::Error::custom(format_args!("{name:?}: {e}")))
    }
}

impl From<UserName> for String {
    fn from(user: UserName) -> String {
        user.name
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_follow_iams_rules() {
        for good in ["a", "Alice", "ops+bot=1,x.y@z_w-v", &"a".repeat(64)] {
            assert!(UserName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "with space",
            "slash/name",
            "ünï",
            &"a".repeat(65),
            "tab\t",
        ] {
            assert_eq!(UserName::parse(bad), Err(InvalidUserName), "{bad:?}");
        }
    }

    #[test]
    fn any_spelling_is_the_same_user_and_keeps_its_own() {
        let a = UserName::parse("BreakGlass").unwrap();
        let b = UserName::from_iam("breakglass");
        assert_eq!(a, b);
        assert!(a.is("BREAKGLASS"));
        assert!(!a.is("BreakGlas"));
        assert_eq!(HashSet::from([a.clone(), b.clone()]).len(), 1);
        assert_eq!(a.to_string(), "BreakGlass");
        assert_eq!(b.as_str(), "breakglass");
    }
}
