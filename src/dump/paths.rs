//! Resolving paths named inside a dump without letting them escape it.

use super::error::{DumpError, ErrorKind, Result};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Joins `rel` (a path written inside a dump) to `root`, refusing absolute paths, `..`, and —
/// unless `allow_symlinks` — a symlink at the target that resolves outside `root`.
pub fn resolve_inside(root: &Path, rel: &str, allow_symlinks: bool) -> Result<PathBuf> {
    let full = join_checked(root, rel)?;
    if !allow_symlinks {
        // A symlinked folder inside `rel` (`sub/x.pt` with `sub -> /elsewhere`) escapes as
        // surely as a symlinked file, so multi-component paths are checked whole.
        let nested = Path::new(rel).components().count() > 1;
        if let Ok(md) = std::fs::symlink_metadata(&full) {
            if nested || md.file_type().is_symlink() {
                check_target(root, &full, rel)?;
            }
        }
    }
    Ok(full)
}

/// [`resolve_inside`] for the many names of one dump: each folder the names sit in is listed
/// (and its real path found) once, so a name costs a lookup in that listing instead of an
/// `lstat` and a path walk (100k tensor files: 7% of an op-level compare was those `lstat`s).
/// Same answers as [`resolve_inside`] for the same folder contents.
pub struct Resolver {
    root: PathBuf,
    allow_symlinks: bool,
    /// Per parent folder (relative to `root`): the names in it that are symlinks, or `None`
    /// where the folder could not be listed or lies outside `root` (then each name takes
    /// [`resolve_inside`]'s path).
    folders: RefCell<HashMap<PathBuf, Option<HashSet<OsString>>>>,
}

impl Resolver {
    /// A resolver for names inside `root`.
    pub fn new(root: PathBuf, allow_symlinks: bool) -> Self {
        Self {
            root,
            allow_symlinks,
            folders: RefCell::new(HashMap::new()),
        }
    }

    /// Joins `rel` to the root with [`resolve_inside`]'s refusals.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf> {
        if self.allow_symlinks {
            return join_checked(&self.root, rel);
        }
        if is_bare_name(rel) {
            // msprobe's `data_name`s: a file right in the root. Nothing to refuse, and its
            // folder is the root: no `Path` parsing or hashing per name (a third of an
            // op-level dump.json's walk went to them).
            let mut folders = self.folders.borrow_mut();
            let root_links = folders
                .entry(PathBuf::new())
                .or_insert_with(|| self.list(Path::new("")));
            let full = join(&self.root, rel);
            return match root_links {
                Some(links) => {
                    if links.contains(std::ffi::OsStr::new(rel)) {
                        check_target(&self.root, &full, rel)?;
                    }
                    Ok(full)
                }
                None => resolve_inside(&self.root, rel, false),
            };
        }
        let p = Path::new(rel);
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            return resolve_inside(&self.root, rel, false);
        };
        let mut folders = self.folders.borrow_mut();
        // Names in one folder come in long runs: look the folder up without allocating.
        let symlinks = match folders.get_mut(parent) {
            Some(s) => s,
            None => folders
                .entry(parent.to_path_buf())
                .or_insert_with(|| self.list(parent)),
        };
        match symlinks {
            Some(links) => {
                let full = join_checked(&self.root, rel)?;
                if links.contains(name) {
                    check_target(&self.root, &full, rel)?;
                }
                Ok(full)
            }
            None => resolve_inside(&self.root, rel, false),
        }
    }

    /// The symlinks in `root/parent`, if that folder lists and is inside the root.
    fn list(&self, parent: &Path) -> Option<HashSet<OsString>> {
        let dir = self.root.join(parent);
        if parent.components().next().is_some() {
            // A nested folder must itself resolve inside the root (it may be a symlink, or
            // sit under one).
            let real = std::fs::canonicalize(&dir).ok()?;
            if !real.starts_with(std::fs::canonicalize(&self.root).ok()?) {
                return None;
            }
        }
        let mut links = HashSet::new();
        for e in std::fs::read_dir(&dir).ok()? {
            let e = e.ok()?;
            if e.file_type().ok()?.is_symlink() {
                links.insert(e.file_name());
            }
        }
        Some(links)
    }
}

/// `root/rel` after refusing empty, absolute and `..` paths.
fn join_checked(root: &Path, rel: &str) -> Result<PathBuf> {
    let escape = |why: &str| DumpError::new(root, ErrorKind::PathEscape(format!("`{rel}` {why}")));
    if rel.is_empty() {
        return Err(escape("is empty"));
    }
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(escape("contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(escape("is absolute")),
        }
    }
    Ok(join(root, rel))
}

/// Whether `rel` names a file right in the folder: one normal component, which
/// [`join_checked`] accepts as it is.
fn is_bare_name(rel: &str) -> bool {
    !rel.is_empty() && rel != "." && rel != ".." && !rel.contains('/')
}

/// `root/rel`, allocated once at its final length (`Path::join` grows the buffer after copying
/// the root).
fn join(root: &Path, rel: &str) -> PathBuf {
    let mut full = PathBuf::with_capacity(root.as_os_str().len() + 1 + rel.len());
    full.push(root);
    full.push(rel);
    full
}

/// Refuses `full` (named `rel` in the dump) if its real path is outside `root`'s.
fn check_target(root: &Path, full: &Path, rel: &str) -> Result<()> {
    let target = std::fs::canonicalize(full).map_err(|e| DumpError::new(full, ErrorKind::Io(e)))?;
    let root_real =
        std::fs::canonicalize(root).map_err(|e| DumpError::new(root, ErrorKind::Io(e)))?;
    if target.starts_with(&root_real) {
        Ok(())
    } else {
        Err(DumpError::new(
            root,
            ErrorKind::PathEscape(format!(
                "`{rel}` is a symlink to a file outside the dump (pass --allow-symlinks to follow it)"
            )),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

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

    /// The resolver answers as `resolve_inside` does, name by name, on a folder with every
    /// kind of entry: plain files, symlinks inside and outside, a symlinked sub-folder pointing
    /// out, one pointing in, missing names and refused spellings.
    #[test]
    fn resolver_agrees_with_resolve_inside() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = t.path().join("dump");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.pt"), b"x").unwrap();
        std::fs::write(root.join("sub/b.pt"), b"x").unwrap();
        std::fs::write(outside.path().join("secret.pt"), b"x").unwrap();
        symlink(root.join("a.pt"), root.join("in.pt")).unwrap();
        symlink(outside.path().join("secret.pt"), root.join("out.pt")).unwrap();
        symlink(outside.path().join("secret.pt"), root.join("sub/out.pt")).unwrap();
        symlink(outside.path(), root.join("away")).unwrap();
        symlink(root.join("sub"), root.join("alias")).unwrap();
        let names = [
            "a.pt",
            "./a.pt",
            "in.pt",
            "out.pt",
            "missing.pt",
            "sub/b.pt",
            "sub/out.pt",
            "sub/missing.pt",
            "away/secret.pt",
            "away/missing.pt",
            "alias/b.pt",
            "alias/out.pt",
            "nowhere/x.pt",
            "",
            "..",
            "../a.pt",
            "/etc/passwd",
            "sub/../a.pt",
            ".",
            "away",
            "a.pt/",
            "sub//b.pt",
        ];
        // The root itself, the root through a symlink, and a root that is not there.
        let linked = t.path().join("linked");
        symlink(&root, &linked).unwrap();
        for base in [root.clone(), linked, t.path().join("absent")] {
            for allow in [false, true] {
                let r = Resolver::new(base.clone(), allow);
                for _pass in 0..2 {
                    for name in names {
                        let one = resolve_inside(&base, name, allow).map_err(|e| e.to_string());
                        let many = r.resolve(name).map_err(|e| e.to_string());
                        assert_eq!(one, many, "{name} in {base:?} (allow_symlinks: {allow})");
                    }
                }
            }
        }
        let r = Resolver::new(root.clone(), false);
        assert!(r.resolve("out.pt").is_err());
        assert!(r.resolve("away/secret.pt").is_err());
        assert!(r.resolve("sub/out.pt").is_err());
        assert_eq!(r.resolve("in.pt").unwrap(), root.join("in.pt"));
        assert_eq!(r.resolve("alias/b.pt").unwrap(), root.join("alias/b.pt"));
    }
}
