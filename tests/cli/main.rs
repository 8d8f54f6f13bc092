//! End-to-end tests of the `cairn` binary on real files and real repositories.

mod common;

mod bad_input;
mod cache;
mod confidentiality;
mod crash;
mod dedup;
mod roundtrip;
mod single_file;
