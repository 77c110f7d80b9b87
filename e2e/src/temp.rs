//! A fresh temporary directory per use, removed when dropped: config files, certificates and
//! keys that tests write for the processes they start.

use std::path::{Path, PathBuf};

/// A directory under the system's temporary directory.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `oort-<purpose>-<pid>-<random>`.
    pub fn new(purpose: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "oort-{purpose}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write a temporary file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
