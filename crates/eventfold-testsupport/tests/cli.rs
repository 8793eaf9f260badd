//! The CLI runner and the served process, on small shell programs standing in for
//! `eventfold`.

use eventfold_testsupport::cli::{Cli, Served, text};

#[test]
fn a_run_captures_status_stdout_and_stderr() {
    let output = Cli::new("sh").run(&["-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(text(&output.stdout), "out\n");
    assert_eq!(text(&output.stderr), "err\n");
}

#[test]
fn a_run_with_stdin_hands_the_program_its_input() {
    let output = Cli::new("cat").run_with_stdin::<&str>(&[], b"line 1\nline 2\n");
    assert!(output.status.success());
    assert_eq!(text(&output.stdout), "line 1\nline 2\n");
}

#[test]
fn the_store_and_credentials_of_the_machine_are_not_passed_on_and_the_tests_own_are() {
    let cli = Cli::new("sh").env("EVENTFOLD_TOKEN", "test-token");
    let command = cli.command(&["-c", "true"]);
    let removed: Vec<_> = command
        .get_envs()
        .filter(|(_, value)| value.is_none())
        .map(|(key, _)| key.to_string_lossy().into_owned())
        .collect();
    for key in [
        "EVENTFOLD_DATA",
        "EVENTFOLD_AUTH",
        "EVENTFOLD_POSTGRES",
        "AWS_ACCESS_KEY_ID",
    ] {
        assert!(
            removed.iter().any(|k| k == key),
            "{key} not removed: {removed:?}"
        );
    }
    let output = cli.run(&["-c", "echo \"${EVENTFOLD_TOKEN}|${EVENTFOLD_DATA-unset}\""]);
    assert_eq!(text(&output.stdout), "test-token|unset\n");
}

/// A stand-in for `eventfold serve`, as a script in `dir`: announces (naming its
/// arguments), then runs until SIGTERM, which it answers like the server (a last line,
/// exit 0). The trap is set before the announcement: a test may stop it right after.
fn stand_in(dir: &eventfold_testsupport::dirs::TempDir) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("serve.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         trap 'echo eventfold stopped; exit 0' TERM\n\
         echo \"eventfold listening on http://127.0.0.1:9 ($*)\"\n\
         while :; do sleep 0.05; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn a_served_process_announces_its_address_and_stops_on_sigterm() {
    let dir = eventfold_testsupport::dirs::temp_dir();
    let served = Cli::new(stand_in(&dir)).serve(&["--data", "somewhere"]);
    assert_eq!(served.address(), "127.0.0.1:9");
    assert_eq!(
        served.announcement(),
        "eventfold listening on http://127.0.0.1:9 (serve --data somewhere)\n"
    );
    let rest = served.stop();
    assert_eq!(rest, "eventfold stopped\n");
}

#[test]
fn a_killed_process_is_gone() {
    let dir = eventfold_testsupport::dirs::temp_dir();
    let mut served = Cli::new(stand_in(&dir)).serve::<&str>(&[]);
    let pid = served.pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    served.kill();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} is still there after SIGKILL"
    );
}

#[test]
#[should_panic(expected = "no address in")]
fn a_process_that_announces_no_address_fails_the_test() {
    Served::spawn(Cli::new("sh").command(&["-c", "echo ready; exec sleep 5"]));
}
