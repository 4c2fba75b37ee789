//! The toykv server: `cargo run --release --example server -- --help`.
fn main() -> std::process::ExitCode {
    toykv::server::launch::main()
}
