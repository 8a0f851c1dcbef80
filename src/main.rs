//! `ringlog`: the broker daemon and the command-line tools.

mod cli;

fn main() {
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
