//! Compiles the ATen dispatcher shim (src/replay/aten.cpp) when the `torch` feature is on; the
//! default build has nothing to do here.

fn main() {
    // Without any rerun-if-changed line cargo reruns this script, and so recompiles the crate,
    // after a change to any file of the package (docs, Python sources).
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "torch")]
    aten_shim::compile();
}

#[cfg(feature = "torch")]
mod aten_shim {
    use std::env;
    use std::path::PathBuf;

    pub fn compile() {
        println!("cargo:rerun-if-changed=src/replay/aten.cpp");
        println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
        // torch-sys (links = "tch") reports the libtorch it found; its headers sit beside it.
        let lib = PathBuf::from(
            env::var("DEP_TCH_LIBTORCH_LIB")
                .expect("torch-sys did not report libtorch's lib directory"),
        );
        let root = lib.parent().expect("libtorch's lib directory has a parent");
        let include = root.join("include");
        // The ABI torch-sys assumes unless told otherwise; PyTorch wheels since 2.7 use it.
        let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
        cc::Build::new()
            .cpp(true)
            .pic(true)
            .warnings(false)
            .include(&include)
            .include(include.join("torch/csrc/api/include"))
            .flag("-std=c++20")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .file("src/replay/aten.cpp")
            .compile("driftscope_aten");
        // torch-sys links libtorch but leaves finding it at run time to LD_LIBRARY_PATH; the
        // binary and the tests find it where it was linked from.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
