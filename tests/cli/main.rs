//! End-to-end tests of the `cairn` binary on real files and real repositories.

#[macro_use]
mod common;

mod bad_input;
mod cache;
mod confidentiality;
mod crash;
mod damage;
mod dedup;
mod faults;
mod fixtures;
mod hostile;
mod inspect;
mod keys;
mod metadata;
mod paths;
mod pipes;
mod providers;
mod restore_modes;
mod restore_over;
mod retention;
mod roundtrip;
mod s3;
mod security;
mod single_file;
mod store_contract;
mod streams;
