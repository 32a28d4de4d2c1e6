//! Telling the people concerned: the admins a summary of each run that changed something or
//! found new pending or held users; each affected user an email when added, reminders before
//! their deadline, and one when taken out. Nothing here blocks or changes enforcement.

// The runs send on these channels once the rest of issue 22 item 4 (which messages, the
// once-across-restarts state) wires them in; until then only the tests call them.
#[allow(dead_code)]
pub mod channels;
