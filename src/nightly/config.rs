//! The `check` configuration (TOML): per-metric limits, overrides by name pattern or op type,
//! places to ignore, required coverage, noise-model options, JUnit grouping. The commented
//! example is docs/driftscope.example.toml; the reference is docs/nightly.md.

use crate::verdict::{Fp32Matmul, NoiseOptions};
use anyhow::Context;
use serde::Deserialize;
use std::path::Path;

/// Limits on a place's metrics (its worst output). Unset limits are not checked.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest allowed relative L2 error.
    pub max_rel_l2_err: Option<f64>,
    /// Smallest allowed cosine similarity.
    pub min_cosine: Option<f64>,
    /// Largest allowed maximum absolute error.
    pub max_max_abs_err: Option<f64>,
}

impl Limits {
    /// `self` with every limit `o` sets replacing its own.
    fn overlay(&mut self, o: &Limits) {
        self.max_rel_l2_err = o.max_rel_l2_err.or(self.max_rel_l2_err);
        self.min_cosine = o.min_cosine.or(self.min_cosine);
        self.max_max_abs_err = o.max_max_abs_err.or(self.max_max_abs_err);
    }
}

/// Limits for the places an override selects. A place is selected when every selector given
/// matches: `pattern` (glob) or `regex` on the place or tensor name, `op_type` on its operator.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Glob on the place name (`Functional.silu.*`, `model.layers.*.mlp.*`).
    pub pattern: Option<String>,
    /// Regular expression searched in the place name.
    pub regex: Option<String>,
    /// Operator or module class, case-insensitive (`silu`, `LlamaRMSNorm`).
    pub op_type: Option<String>,
    /// Skip the selected places entirely.
    #[serde(default)]
    pub ignore: bool,
    /// Replaces `limits.max_rel_l2_err` for the selected places.
    pub max_rel_l2_err: Option<f64>,
    /// Replaces `limits.min_cosine`.
    pub min_cosine: Option<f64>,
    /// Replaces `limits.max_max_abs_err`.
    pub max_max_abs_err: Option<f64>,
}

impl Override {
    /// The limits this override sets.
    pub fn limits(&self) -> Limits {
        Limits {
            max_rel_l2_err: self.max_rel_l2_err,
            min_cosine: self.min_cosine,
            max_max_abs_err: self.max_max_abs_err,
        }
    }
}

/// Required coverage.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// Fail when more reference tensors than this have no candidate counterpart.
    pub max_unmatched_reference: Option<usize>,
    /// Fail when more baseline places than this are missing from the run (with `--baseline`).
    pub max_vanished: Option<usize>,
    /// Fail when the call streams differ by more runs of extra or missing calls than this
    /// (docs/alignment.md); unset: 0, any structural change fails.
    pub max_structural_changes: Option<usize>,
}

/// Noise-model options (defaults: the library's).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    /// How fp32 matrix products ran on the device: `auto`, `ieee` or `tf32`.
    pub fp32_matmul: Option<Fp32Matmul>,
    /// A place diverges beyond this many times the rounding its precision adds.
    pub noise_factor: Option<f64>,
    /// ... and this many times the error it inherited.
    pub amplification: Option<f64>,
}

/// How JUnit test cases are formed.
#[derive(Copy, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// One test case per place.
    #[default]
    Place,
    /// One test case per operator type.
    OpType,
    /// One per match of `junit.group_pattern` in the place name (`layers\.\d+`).
    Pattern,
}

/// JUnit output options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Junit {
    /// Test case per place, per op type, or per pattern match.
    #[serde(default)]
    pub group_by: Grouping,
    /// Regular expression naming a group (with `group_by = "pattern"`).
    pub group_pattern: Option<String>,
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Limits of every place.
    #[serde(default)]
    pub limits: Limits,
    /// Later overrides win over earlier ones.
    #[serde(default, rename = "override")]
    pub overrides: Vec<Override>,
    /// Globs of places not checked at all.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Required coverage.
    #[serde(default)]
    pub coverage: Coverage,
    /// Noise model.
    #[serde(default)]
    pub noise: Noise,
    /// JUnit output.
    #[serde(default)]
    pub junit: Junit,
}

/// A config with its patterns compiled.
pub struct Compiled {
    /// The parsed file.
    pub config: Config,
    ignore: Vec<glob::Pattern>,
    overrides: Vec<(Option<glob::Pattern>, Option<regex::Regex>, Override)>,
    /// Compiled `junit.group_pattern`.
    pub group_pattern: Option<regex::Regex>,
}

/// What the config says about one place.
#[derive(Clone, Debug, PartialEq)]
pub struct PlaceRules {
    /// Not checked.
    pub ignored: bool,
    /// Limits in force.
    pub limits: Limits,
}

impl Config {
    /// Parses TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    /// The noise-model options: library defaults where unset, `fp32_matmul` (the command
    /// line's) when the file sets none.
    pub fn noise_options(&self, fp32_matmul: Fp32Matmul) -> NoiseOptions {
        let d = NoiseOptions::default();
        NoiseOptions {
            fp32_matmul: self.noise.fp32_matmul.unwrap_or(fp32_matmul),
            noise_factor: self.noise.noise_factor.unwrap_or(d.noise_factor),
            amplification: self.noise.amplification.unwrap_or(d.amplification),
            ..d
        }
    }

    /// Compiles the patterns (errors name the bad one).
    pub fn compile(self) -> anyhow::Result<Compiled> {
        let glob = |s: &str| {
            glob::Pattern::new(s).with_context(|| format!("invalid glob `{s}` in config"))
        };
        let ignore = self
            .ignore
            .iter()
            .map(|s| glob(s))
            .collect::<anyhow::Result<_>>()?;
        let mut overrides = Vec::new();
        for o in &self.overrides {
            if o.pattern.is_none() && o.regex.is_none() && o.op_type.is_none() {
                anyhow::bail!("an [[override]] needs `pattern`, `regex` or `op_type`");
            }
            let g = o.pattern.as_deref().map(glob).transpose()?;
            let r = o
                .regex
                .as_deref()
                .map(|s| {
                    regex::Regex::new(s).with_context(|| format!("invalid regex `{s}` in config"))
                })
                .transpose()?;
            overrides.push((g, r, o.clone()));
        }
        let group_pattern = self
            .junit
            .group_pattern
            .as_deref()
            .map(|s| regex::Regex::new(s).with_context(|| format!("invalid group_pattern `{s}`")))
            .transpose()?;
        if self.junit.group_by == Grouping::Pattern && group_pattern.is_none() {
            anyhow::bail!("junit.group_by = \"pattern\" needs junit.group_pattern");
        }
        Ok(Compiled {
            config: self,
            ignore,
            overrides,
            group_pattern,
        })
    }
}

impl Compiled {
    /// Rules for a place with this name and operator.
    pub fn rules(&self, place: &str, op_type: Option<&str>) -> PlaceRules {
        let mut r = PlaceRules {
            ignored: self.ignore.iter().any(|g| g.matches(place)),
            limits: self.config.limits.clone(),
        };
        for (g, re, o) in &self.overrides {
            let hit = g.as_ref().is_none_or(|g| g.matches(place))
                && re.as_ref().is_none_or(|re| re.is_match(place))
                && o.op_type
                    .as_deref()
                    .is_none_or(|t| op_type.is_some_and(|op| op.eq_ignore_ascii_case(t)));
            if hit {
                r.ignored |= o.ignore;
                r.limits.overlay(&o.limits());
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_overrides_win_and_selectors_combine() {
        let c = Config::parse(
            r#"
            ignore = ["Torch.dropout.*"]
            [limits]
            max_rel_l2_err = 0.01
            min_cosine = 0.999
            [[override]]
            op_type = "silu"
            max_rel_l2_err = 0.05
            [[override]]
            pattern = "Functional.silu.1.*"
            max_rel_l2_err = 0.1
            [[override]]
            regex = "^Tensor\\."
            ignore = true
            "#,
        )
        .unwrap()
        .compile()
        .unwrap();
        let r = c.rules("Functional.silu.1.forward", Some("silu"));
        assert_eq!(r.limits.max_rel_l2_err, Some(0.1));
        assert_eq!(r.limits.min_cosine, Some(0.999));
        assert_eq!(
            c.rules("Functional.silu.0.forward", Some("SiLU"))
                .limits
                .max_rel_l2_err,
            Some(0.05)
        );
        assert!(c.rules("Torch.dropout.0.forward", None).ignored);
        assert!(c.rules("Tensor.add.3.forward", None).ignored);
        assert!(!c.rules("Functional.linear.0.forward", None).ignored);
    }

    #[test]
    fn unknown_keys_and_bad_patterns_are_errors() {
        assert!(Config::parse("[limits]\nmax_rel_l2 = 1").is_err());
        assert!(Config::parse("[[override]]\nmax_rel_l2_err = 1")
            .unwrap()
            .compile()
            .is_err());
        assert!(Config::parse("[[override]]\nregex = \"(\"")
            .unwrap()
            .compile()
            .is_err());
    }
}
