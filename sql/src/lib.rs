//! Riffle SQL: the Hive-compatible pieces of the SQL layer.
//!
//! - [`java_regex`]: Java regular expressions (`java.util.regex.Pattern`,
//!   `Matcher.matches()`) translated to the `regex` crate, for Hive
//!   `RegexSerDe` table definitions.
//! - [`cloudfront`]: the CloudFront access-log table of the AWS Hive/EMR
//!   tutorial, parsed exactly as `RegexSerDe` does, with a fast path.

pub mod cloudfront;
pub mod java_regex;
