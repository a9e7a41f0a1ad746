//! What happened to each occurrence, in time order: the story a violation prints.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use schedule_core::model::ScheduleKey;

#[derive(Debug, Clone, Default)]
pub struct Journal(Arc<Mutex<BTreeMap<ScheduleKey, Vec<String>>>>);

impl Journal {
    pub fn note(&self, key: &ScheduleKey, at: DateTime<Utc>, what: String) {
        let line = format!("{} {what}", at.format("%d %H:%M:%S%.3f"));
        self.0
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .push(line);
    }

    pub fn story(&self, key: &ScheduleKey) -> Vec<String> {
        self.0.lock().unwrap().get(key).cloned().unwrap_or_default()
    }
}
