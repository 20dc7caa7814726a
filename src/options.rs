//! Command-line arguments turned into the library's typed options, in one place.

use crate::cli::{DumpArgs, MappingArgs, ReadArgs};
use anyhow::Context;
use driftscope::compare::CompareOptions;
use driftscope::dump::OpenOptions;
use driftscope::session::{MappingFiles, Options};
use driftscope::verdict::NoiseOptions;

/// The options of a command that opens a reference and a candidate.
pub fn of_dumps(a: &DumpArgs) -> anyhow::Result<Options> {
    Ok(Options {
        open: OpenOptions {
            layout: a.layout.clone(),
            ..open(&a.read)
        },
        compare: compare(&a.read)?,
        noise_run: a.noise.clone(),
        mapping: mapping(&a.mapping),
    })
}

/// The options of `report`: no `--noise`, no `--layout`.
pub fn of_report(read: &ReadArgs, m: &MappingArgs) -> anyhow::Result<Options> {
    Ok(Options {
        open: open(read),
        compare: compare(read)?,
        noise_run: None,
        mapping: mapping(m),
    })
}

fn open(a: &ReadArgs) -> OpenOptions {
    OpenOptions {
        format: a.format,
        npy_dtype: a.npy_dtype,
        allow_symlinks: a.allow_symlinks,
        layout: None,
    }
}

fn compare(a: &ReadArgs) -> anyhow::Result<CompareOptions> {
    Ok(CompareOptions {
        filter: a
            .filter
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .context("--filter is not a valid regular expression")?,
        noise: NoiseOptions {
            fp32_matmul: a.fp32_matmul,
            ..NoiseOptions::default()
        },
        calibration: None,
    })
}

fn mapping(a: &MappingArgs) -> MappingFiles {
    MappingFiles {
        data_mapping: a.data_mapping.clone(),
        layer_mapping: a.layer_mapping.clone(),
        fuzzy: a.fuzzy,
        fusion_map: a.fusion_map.clone(),
    }
}
