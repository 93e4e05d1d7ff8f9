//! `lambdamesh-extension`: see the library's docs. Reads the environment and the executable's
//! name (Lambda requires the extension to register under its file name) and runs.

use std::collections::BTreeMap;

fn main() {
    let name = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "lambdamesh-extension".to_owned());
    let vars: BTreeMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    match lambdamesh_extension::run::run(&name, &vars) {
        lambdamesh_extension::run::Exit::Done => {}
        lambdamesh_extension::run::Exit::Failed => std::process::exit(1),
    }
}
