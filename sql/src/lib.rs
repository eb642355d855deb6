//! riffle-sql: SQL on Riffle's stages, tasks and shuffle store.
//!
//! DataFusion parses, plans and optimizes; Riffle cuts the physical plan
//! into stages at its exchanges ([`stages`]), replaces each exchange with a
//! shuffle write and a shuffle read ([`exec`]), ships each stage's fragment
//! with datafusion-proto ([`codec`]) and runs one task per partition
//! ([`engine`]). [`joins`] keeps joins correct when split into tasks and
//! lets small build sides be broadcast. [`rewrite`] corrects what
//! DataFusion 55 answers wrongly, and [`window_filter`] puts a window
//! `FILTER` in a form the codec can carry.
//!
//! ```text
//!  SQL -> DataFusion physical plan -> stages::split -> [ShuffleWriterExec(frag) ..., result frag]
//!        each stage: codec::encode_plan -> tasks -> engine::run_fragment(partition)
//! ```
//!
//! Hive compatibility: [`java_regex`] translates Java regular expressions
//! (`Matcher.matches()` semantics) for `RegexSerDe` tables, and
//! [`cloudfront`] parses the CloudFront access-log table of the AWS
//! Hive/EMR tutorial exactly as `RegexSerDe` does, with a fast path.

pub mod cloudfront;
pub mod codec;
pub mod engine;
pub mod exec;
pub mod hive;
pub mod hive_text;
pub mod hive_types;
pub mod input_store;
pub mod java_regex;
pub mod joins;
pub mod regex_table;
pub mod rewrite;
pub mod stages;
pub mod window_filter;

pub use datafusion;
