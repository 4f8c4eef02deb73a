//! Gives every binary and test an rpath to libtorch, so nothing needs LD_LIBRARY_PATH.
//! torch-sys (a direct dependency for this reason) reports its lib dir as DEP_TCH_LIBTORCH_LIB.
//!
//! Against a CUDA libtorch (the GPU kit's build), `libtorch_cuda.so` must stay a DT_NEEDED of
//! the binary: nothing references its symbols directly (its static initialisers register the
//! CUDA backend), so the linker's default `--as-needed` would drop it and CUDA would be absent.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
