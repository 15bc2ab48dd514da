//! The `corral` binary.

fn main() {
    eprintln!("corral: the server is not built yet; see README.md");
    std::process::exit(2);
}
