//! Resolving paths named inside a dump without letting them escape it.

use super::error::{DumpError, ErrorKind, Result};
use std::path::{Component, Path, PathBuf};

/// Joins `rel` (a path written inside a dump) to `root`, refusing absolute paths, `..`, and —
/// unless `allow_symlinks` — a symlink at the target that resolves outside `root`.
pub fn resolve_inside(root: &Path, rel: &str, allow_symlinks: bool) -> Result<PathBuf> {
    let escape = |why: &str| DumpError::new(root, ErrorKind::PathEscape(format!("`{rel}` {why}")));
    let p = Path::new(rel);
    if rel.is_empty() {
        return Err(escape("is empty"));
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(escape("contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(escape("is absolute")),
        }
    }
    let full = root.join(p);
    if !allow_symlinks {
        // A symlinked folder inside `rel` (`sub/x.pt` with `sub -> /elsewhere`) escapes as
        // surely as a symlinked file, so multi-component paths are checked whole.
        let nested = p.components().count() > 1;
        if let Ok(md) = std::fs::symlink_metadata(&full) {
            if nested || md.file_type().is_symlink() {
                let target = std::fs::canonicalize(&full)
                    .map_err(|e| DumpError::new(&full, ErrorKind::Io(e)))?;
                let root = std::fs::canonicalize(root)
                    .map_err(|e| DumpError::new(root, ErrorKind::Io(e)))?;
                if !target.starts_with(&root) {
                    return Err(escape(
                        "is a symlink to a file outside the dump (pass --allow-symlinks to follow it)",
                    ));
                }
            }
        }
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escapes() {
        let root = Path::new("/tmp");
        assert!(resolve_inside(root, "../etc/passwd", false).is_err());
        assert!(resolve_inside(root, "/etc/passwd", false).is_err());
        assert!(resolve_inside(root, "a/../../b", false).is_err());
        assert_eq!(
            resolve_inside(root, "a/b.pt", false).unwrap(),
            root.join("a/b.pt")
        );
    }
}
