fn main() -> std::process::ExitCode {
    forcemfa::cli::main()
}
