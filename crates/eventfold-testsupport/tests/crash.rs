//! The crash harness on itself: the child counts for ever, the parent kills it
//! mid-count and still receives every line printed before the kill.

use eventfold_testsupport::crash::SelfChild;

const COUNTER: SelfChild = SelfChild::new(
    "a_killed_child_leaves_every_line_it_printed",
    "EVENTFOLD_TESTSUPPORT_CRASH_CHILD",
);

#[test]
fn a_killed_child_leaves_every_line_it_printed() {
    if let Some(greeting) = COUNTER.role() {
        // A line of its own: the test harness may have begun one ("test ... ").
        println!();
        println!("{greeting}");
        for n in 0u64.. {
            println!("COUNT {n}");
        }
        return;
    }
    let mut child = COUNTER.spawn("hello");
    // The test harness may print its own lines first.
    let mut read = Vec::new();
    while read.len() < 3 {
        let line = child.next_line().expect("the child prints until killed");
        if line == "hello" || line.starts_with("COUNT ") {
            read.push(line);
        }
    }
    assert_eq!(read, ["hello", "COUNT 0", "COUNT 1"]);
    let rest: Vec<String> = child
        .kill()
        .into_iter()
        .filter(|l| l.starts_with("COUNT "))
        .collect();
    // Whatever was still in the pipe continues the count without a gap.
    for (i, line) in rest.iter().enumerate() {
        assert_eq!(*line, format!("COUNT {}", i + 2));
    }
}
