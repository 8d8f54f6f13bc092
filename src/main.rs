//! The `cairn` command line. Everything it does lives in the library; this is argument
//! parsing, output formatting and exit codes.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
