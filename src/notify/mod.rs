//! Telling the people concerned: the admins a summary of each run that changed something or
//! found new pending or held users; each affected user an email when added, reminders before
//! their deadline, and one when taken out. Nothing here blocks or changes enforcement.

pub mod channels;
