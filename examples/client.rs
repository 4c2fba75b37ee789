//! The toykv client: `cargo run --example client -- --help`.
fn main() -> std::process::ExitCode {
    toykv::client::main()
}
