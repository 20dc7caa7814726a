//! One error type for every dump reader: it always names the file, and the entry when there is
//! one, so a user can find the broken piece of a dump of thousands of files.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong while reading a dump.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The operating system refused (missing file, permissions, ...).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file ends before the data its header promises.
    #[error("truncated: {0}")]
    Truncated(String),
    /// Not a valid zip container (a `.pt` or `.npz`).
    #[error("corrupt zip container: {0}")]
    Zip(String),
    /// The pickle program is malformed or uses an opcode outside torch.save's subset.
    #[error("bad pickle: {0}")]
    Pickle(String),
    /// The pickle names a callable outside the tensor-rebuild whitelist: refused, not run.
    #[error("refused pickle global `{0}`: only torch tensor-rebuild functions are allowed")]
    ForbiddenGlobal(String),
    /// A header (npy, safetensors, manifest) that does not parse or is inconsistent.
    #[error("bad header: {0}")]
    Header(String),
    /// JSON that does not parse or lacks a required field.
    #[error("bad JSON: {0}")]
    Json(String),
    /// An element type driftscope does not read.
    #[error("unsupported dtype `{0}`")]
    Dtype(String),
    /// Shape, stride or offset arithmetic that overflows or points outside the storage.
    #[error("out of bounds: {0}")]
    Bounds(String),
    /// A path in the dump that would escape the dump folder.
    #[error("path escapes the dump folder: {0}")]
    PathEscape(String),
    /// The path is not a dump driftscope recognises.
    #[error("not a dump: {0}")]
    Layout(String),
    /// Valid input that this version does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// A reader error, with the file (and the entry within the dump, when known).
#[derive(Debug)]
pub struct DumpError {
    /// File or folder being read.
    pub path: PathBuf,
    /// Entry within the dump (`Functional.silu.1.forward.output.0`), when known.
    pub entry: Option<String>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl DumpError {
    /// An error about `path`.
    pub fn new(path: impl AsRef<Path>, kind: ErrorKind) -> Self {
        DumpError {
            path: path.as_ref().to_path_buf(),
            entry: None,
            kind,
        }
    }

    /// Attaches the dump entry the error belongs to.
    pub fn with_entry(mut self, entry: impl Into<String>) -> Self {
        if self.entry.is_none() {
            self.entry = Some(entry.into());
        }
        self
    }
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(e) = &self.entry {
            write!(f, " (entry {e})")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The message already holds the kind (and an I/O error's text), so no source is chained: a
/// chain would print the same cause twice.
impl std::error::Error for DumpError {}

/// Result of a dump reader.
pub type Result<T> = std::result::Result<T, DumpError>;

/// Shorthand used by the readers: `err(path, ErrorKind::Header(...))`.
pub(crate) fn err<T>(path: &Path, kind: ErrorKind) -> Result<T> {
    Err(DumpError::new(path, kind))
}
