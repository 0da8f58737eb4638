//! Which filesystem Thingline's data dir is on, and the rule that a measurement is made on a
//! disk: a data dir on tmpfs or ramfs (memory) is refused unless `--allow-tmpfs` is given.
//!
//! The filesystem is the mount with the longest mount point containing the (canonical) path in
//! `/proc/self/mountinfo`; of equal mount points the last one listed (mounted over the others).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

/// Filesystem types that keep their files in memory.
const IN_MEMORY: &[&str] = &["tmpfs", "ramfs"];

/// The mount a path is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `ext4`, `xfs`, `btrfs`, `tmpfs`, `overlay`, …
    pub fs_type: String,
    /// What is mounted: a device (`/dev/nvme0n1p2`), `tmpfs`, `overlay`, …
    pub source: String,
    pub mount_point: PathBuf,
}

impl Mount {
    /// Of `path` (which must exist).
    pub fn of(path: &Path) -> Result<Self> {
        let canonical = path.canonicalize().with_context(|| format!("resolving {}", path.display()))?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
        mount_of(&mountinfo, &canonical)
            .ok_or_else(|| anyhow!("no mount of {} in /proc/self/mountinfo", canonical.display()))
    }

    pub fn in_memory(&self) -> bool {
        in_memory(&self.fs_type)
    }
}

/// Whether a filesystem type keeps its files in memory.
pub fn in_memory(fs_type: &str) -> bool {
    IN_MEMORY.contains(&fs_type)
}

/// The mount of `path` in the text of a mountinfo file: per line, field 5 is the mount point and,
/// after the ` - ` separator, come the filesystem type and the source.
fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let Some((mount, filesystem)) = line.split_once(" - ") else { continue };
        let Some(mount_point) = mount.split(' ').nth(4).map(|p| PathBuf::from(unescape(p))) else { continue };
        let mut filesystem = filesystem.split(' ');
        let (Some(fs_type), Some(source)) = (filesystem.next(), filesystem.next()) else { continue };
        let longer = |best: &Mount| mount_point.as_os_str().len() >= best.mount_point.as_os_str().len();
        if path.starts_with(&mount_point) && best.as_ref().is_none_or(longer) {
            best = Some(Mount { fs_type: fs_type.to_string(), source: unescape(source), mount_point });
        }
    }
    best
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 22 0:26 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=8G
31 22 0:27 / /tmp rw,nosuid,nodev shared:6 - xfs /dev/vdb rw
32 22 0:28 / /srv/my\\040data rw,relatime - btrfs /dev/vdc rw
33 22 0:29 / /tmpx rw - ramfs none rw
";

    fn fs_of(path: &str) -> Option<(String, String)> {
        mount_of(MOUNTINFO, Path::new(path)).map(|m| (m.fs_type, m.mount_point.display().to_string()))
    }

    #[test]
    fn longest_mount_point_wins_and_the_last_of_equal_ones() {
        assert_eq!(fs_of("/home/bench"), Some(("ext4".into(), "/".into())));
        assert_eq!(fs_of("/tmp/thingline-bench-1"), Some(("xfs".into(), "/tmp".into())));
        assert_eq!(fs_of("/tmp"), Some(("xfs".into(), "/tmp".into())));
        assert_eq!(fs_of("/tmpx/a"), Some(("ramfs".into(), "/tmpx".into())));
        assert_eq!(fs_of("/srv/my data/d"), Some(("btrfs".into(), "/srv/my data".into())));
        assert_eq!(fs_of("/srv/my"), Some(("ext4".into(), "/".into())));
    }

    #[test]
    fn memory_filesystems() {
        let mount = |fs_type: &str| Mount { fs_type: fs_type.into(), source: "x".into(), mount_point: "/".into() };
        assert!(mount("tmpfs").in_memory());
        assert!(mount("ramfs").in_memory());
        assert!(!mount("ext4").in_memory());
        assert!(!mount("overlay").in_memory());
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape(r"/a\9"), r"/a\9");
    }

    #[test]
    fn finds_the_mount_of_this_directory() {
        let mount = Mount::of(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("a mount");
        assert!(!mount.fs_type.is_empty());
    }
}
