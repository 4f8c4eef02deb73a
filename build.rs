//! Gives every binary and test an rpath to libtorch, so nothing needs LD_LIBRARY_PATH.
//! torch-sys (a direct dependency for this reason) reports its lib dir as DEP_TCH_LIBTORCH_LIB.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
