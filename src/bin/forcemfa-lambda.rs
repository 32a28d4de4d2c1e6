fn main() -> std::process::ExitCode {
    forcemfa::lambda::main()
}
