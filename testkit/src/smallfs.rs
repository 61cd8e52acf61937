//! A small file system for fault tests: a tmpfs of a few MiB mounted at a directory (root
//! only; otherwise the test is skipped with a printed reason, never silently), with filler
//! files to take space away and give it back. Unmounted on drop, even when the test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted (lazily if still busy) and its mount point removed on drop.
pub struct SmallFs {
    path: PathBuf,
}

impl SmallFs {
    /// Mount a tmpfs of `kib` KiB at `path`; `None` (with the reason printed) when the test
    /// cannot do that here.
    pub fn mount(path: &Path, kib: u64, test: &str) -> Option<SmallFs> {
        let uid = nix::unistd::geteuid().as_raw();
        if uid != 0 {
            eprintln!(
                "SKIPPED {test}: mounting a {kib} KiB tmpfs needs root (running as uid {uid})"
            );
            return None;
        }
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallFs {
                path: path.to_path_buf(),
            }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED {test}: cannot mount a tmpfs at {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED {test}: cannot run mount: {e}");
                None
            }
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write a file of `bytes` bytes (or until the file system is full); the bytes written.
    pub fn fill(&self, name: &str, bytes: u64) -> u64 {
        let mut f = std::fs::File::create(self.path.join(name)).expect("filler");
        let chunk = vec![0x5a_u8; 64 * 1024];
        let mut written = 0;
        while written < bytes {
            let n = (bytes - written).min(chunk.len() as u64) as usize;
            match f.write(&chunk[..n]) {
                Ok(0) | Err(_) => break,
                Ok(k) => written += k as u64,
            }
        }
        let _ = f.sync_all();
        written
    }

    /// Take every byte left (a log file filling the card).
    pub fn fill_up(&self, name: &str) -> u64 {
        self.fill(name, u64::MAX)
    }

    /// Remove a filler file.
    pub fn free(&self, name: &str) {
        std::fs::remove_file(self.path.join(name)).expect("remove filler");
    }

    /// Bytes available.
    pub fn available(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.path).expect("statvfs");
        st.blocks_available() as u64 * st.fragment_size() as u64
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}
