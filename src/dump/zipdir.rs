//! A strict index of `torch.save` zip archives in the shape PyTorch writes them: no archive
//! comment, no zip64 markers in the end record (PyTorch's zip64 end record and locator are
//! ignored, as the `zip` crate ignores them), every entry stored
//! (uncompressed), unencrypted, with an ASCII name and no central extra field or comment.
//!
//! For such a file it gives exactly the entries (names, data offsets, sizes) the `zip` crate
//! gives, without allocating per entry or copying headers; anything outside that shape returns
//! `None` and the caller uses the `zip` crate (whose errors name what is wrong). The fuzz target
//! `pt` checks the two agree (`pt::zipdir_differential`).

use std::borrow::Cow;

/// One zip entry: where its (stored) bytes are.
pub(crate) struct ZipEntry<'a> {
    pub(crate) name: Cow<'a, str>,
    pub(crate) start: u64,
    pub(crate) size: u64,
    pub(crate) stored: bool,
}

const EOCD_SIG: u32 = 0x0605_4b50;
const CDFH_SIG: u32 = 0x0201_4b50;
const LFH_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
const CDFH_LEN: usize = 46;
const LFH_LEN: usize = 30;
/// More entries than this and the caller's name lookup would be quadratic: leave to `zip`.
const MAX_ENTRIES: usize = 4096;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The entries of `b` in archive order, or `None` when `b` is not in the plain shape above
/// (which says nothing about whether it is valid).
pub(crate) fn index(b: &[u8]) -> Option<Vec<ZipEntry<'_>>> {
    let eocd = b.len().checked_sub(EOCD_LEN)?;
    if u32_at(b, eocd)? != EOCD_SIG || u16_at(b, eocd + 20)? != 0 {
        return None; // not at the very end, or an archive comment
    }
    let disk = u16_at(b, eocd + 4)?;
    let cd_disk = u16_at(b, eocd + 6)?;
    let on_disk = u16_at(b, eocd + 8)?;
    let total = u16_at(b, eocd + 10)?;
    let cd_size = u32_at(b, eocd + 12)?;
    let cd_offset = u32_at(b, eocd + 16)?;
    if disk != 0 || cd_disk != 0 || on_disk != total || total == u16::MAX {
        return None;
    }
    if cd_size == u32::MAX || cd_offset == u32::MAX {
        return None; // zip64 markers
    }
    // With no zip64 markers in the end record, `zip` ignores the zip64 end record and locator
    // PyTorch writes after the directory. It takes the directory to start at the header that
    // ends exactly `cd_size` before the end record when there is one, else at the first header
    // at or after `cd_offset`: require the latter at `cd_offset` and no stray former.
    let (cd_start, cd_size) = (cd_offset as usize, cd_size as usize);
    let cd_end = cd_start.checked_add(cd_size)?;
    if cd_end > eocd || u32_at(b, cd_start)? != CDFH_SIG {
        return None;
    }
    if let Some(abut) = eocd.checked_sub(cd_size) {
        if abut > cd_start && u32_at(b, abut) == Some(CDFH_SIG) {
            return None;
        }
    }
    let n = total as usize;
    if n == 0 || n > MAX_ENTRIES || n.checked_mul(CDFH_LEN)? > cd_size {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    let mut at = cd_start;
    for _ in 0..n {
        let h = b.get(at..at.checked_add(CDFH_LEN)?)?;
        if u32_at(h, 0)? != CDFH_SIG {
            return None;
        }
        let flags = u16_at(h, 8)?;
        let method = u16_at(h, 10)?;
        let csize = u32_at(h, 20)?;
        let usize_ = u32_at(h, 24)?;
        let name_len = u16_at(h, 28)? as usize;
        let extra_len = u16_at(h, 30)?;
        let comment_len = u16_at(h, 32)?;
        let local = u32_at(h, 42)?;
        // Encrypted (bits 0, 6), not stored, zip64 markers, extras or comments: not plain.
        if flags & 0x0041 != 0
            || method != 0
            || extra_len != 0
            || comment_len != 0
            || csize == u32::MAX
            || usize_ == u32::MAX
            || local == u32::MAX
        {
            return None;
        }
        let name_at = at + CDFH_LEN;
        let name = b.get(name_at..name_at.checked_add(name_len)?)?;
        if name.is_empty() || !name.is_ascii() {
            return None;
        }
        let name = std::str::from_utf8(name).ok()?;
        at = name_at + name_len;
        if at > cd_end {
            return None;
        }
        // The data start comes from the local header (its extra field is PyTorch's padding).
        let local = local as usize;
        let lh = b.get(local..local.checked_add(LFH_LEN)?)?;
        if u32_at(lh, 0)? != LFH_SIG {
            return None;
        }
        let start = local
            .checked_add(LFH_LEN)?
            .checked_add(u16_at(lh, 26)? as usize)?
            .checked_add(u16_at(lh, 28)? as usize)?;
        out.push(ZipEntry {
            name: Cow::Borrowed(name),
            start: start as u64,
            size: csize as u64,
            stored: true,
        });
    }
    if at != cd_end {
        return None; // the directory holds more than it declares
    }
    // `zip` keys entries by name (a duplicate replaces the earlier one in place): leave those.
    if out.len() <= 32 {
        for i in 1..out.len() {
            if out[..i].iter().any(|e| e.name == out[i].name) {
                return None;
            }
        }
    } else {
        let mut seen = std::collections::HashSet::with_capacity(out.len());
        if !out.iter().all(|e| seen.insert(&*e.name)) {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/reference_dumps/h200/llama/msprobe/cpu_fp32/step0/proc463/dump_tensor_data/",
            "Functional.dropout.0.forward.output.0.pt"
        );
        std::fs::read(p).unwrap()
    }

    #[test]
    fn indexes_a_real_torch_save_file_like_the_zip_crate() {
        let b = fixture();
        let e = index(&b).expect("a torch.save file is in the plain shape");
        assert!(e.iter().any(|e| e.name.ends_with("/data.pkl")));
        assert!(e.iter().any(|e| e.name.ends_with("/data/0")));
        super::super::pt::zipdir_differential(&b);
    }

    #[test]
    fn declines_what_is_not_plain() {
        let b = fixture();
        // Truncated anywhere, or with an archive comment: not indexed (the zip crate decides).
        for n in [0, 4, 21, 22, b.len() / 2, b.len() - 1] {
            assert!(index(&b[..n]).is_none(), "truncated at {n}");
        }
        let mut c = b.clone();
        let at = c.len() - 2;
        c[at] = 3;
        c.extend_from_slice(b"abc");
        assert!(index(&c).is_none());
        // A compressed entry (method 8) in the directory.
        let mut d = b.clone();
        let eocd = d.len() - EOCD_LEN;
        let cd = u32_at(&d, eocd + 16).unwrap() as usize;
        d[cd + 10] = 8;
        assert!(index(&d).is_none());
        super::super::pt::zipdir_differential(&d);
    }
}
