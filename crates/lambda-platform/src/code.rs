//! Deployment packages: zip files are stored content-addressed under `code/<sha256>/` (extracted
//! once, shared by every version and function with the same bytes), and the layers of a function
//! are merged, in order, into `opt/<hash>/`, which plays the role of AWS's `/opt`.

use std::{
    fs,
    io::{Cursor, Read},
    path::{Path, PathBuf},
};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::wire::ApiError;

/// Largest unzipped package, as on AWS (250 MB).
const MAX_UNZIPPED: u64 = 262_144_000;

/// An installed package.
pub(crate) struct Installed {
    /// Base64 SHA-256 of the zip, as AWS reports `CodeSha256`.
    pub sha256_b64: String,
    /// Zip size in bytes.
    pub size: u64,
    /// Directory key under `code/`.
    pub key: String,
}

/// Extracts `zip` under `data_dir/code/` unless the same bytes are already there.
pub(crate) fn install_zip(data_dir: &Path, zip: &[u8]) -> Result<Installed, ApiError> {
    let digest = Sha256::digest(zip);
    let key = hex::encode(digest);
    let sha256_b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    let dir = code_dir(data_dir, &key);
    if !dir.is_dir() {
        let tmp = data_dir
            .join("code")
            .join(format!(".{key}.tmp-{}", crate::new_uuid().simple()));
        let result = extract(zip, &tmp);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, &dir) {
            let _ = fs::remove_dir_all(&tmp);
            // Another request installed the same package concurrently: fine.
            if !dir.is_dir() {
                return Err(ApiError::internal(format!("cannot install code: {e}")));
            }
        }
    }
    // The zip itself is kept for GetFunction's `Code.Location` download.
    let zip_path = zip_file(data_dir, &key);
    if !zip_path.is_file() {
        crate::state::write_atomic(&zip_path, zip)
            .map_err(|e| ApiError::internal(format!("cannot store code: {e}")))?;
    }
    Ok(Installed {
        sha256_b64,
        size: zip.len() as u64,
        key,
    })
}

/// The stored zip of a package.
pub(crate) fn zip_file(data_dir: &Path, key: &str) -> PathBuf {
    data_dir.join("code").join(format!("{key}.zip"))
}

/// Directory of an installed package.
pub(crate) fn code_dir(data_dir: &Path, key: &str) -> PathBuf {
    data_dir.join("code").join(key)
}

fn unzip_error() -> ApiError {
    ApiError::invalid_parameter(
        "Could not unzip uploaded file. Please check your file, then try to upload again.",
    )
}

/// Extracts a zip into `dest`, refusing entries that escape it and archives over 250 MB unzipped.
pub(crate) fn extract(zip: &[u8], dest: &Path) -> Result<(), ApiError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).map_err(|_| unzip_error())?;
    fs::create_dir_all(dest)
        .map_err(|e| ApiError::internal(format!("cannot create code dir: {e}")))?;
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|_| unzip_error())?;
        let Some(rel) = file.enclosed_name() else {
            return Err(unzip_error());
        };
        let path = dest.join(rel);
        if file.is_dir() {
            fs::create_dir_all(&path)
                .map_err(|e| ApiError::internal(format!("cannot create dir: {e}")))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| ApiError::internal(format!("cannot create dir: {e}")))?;
        }
        let mode = file.unix_mode();
        let mut buf = Vec::new();
        // Read at most what is left of the budget + 1 so a zip bomb cannot exhaust memory.
        let budget = MAX_UNZIPPED.saturating_sub(total) + 1;
        (&mut file)
            .take(budget)
            .read_to_end(&mut buf)
            .map_err(|_| unzip_error())?;
        total += buf.len() as u64;
        if total > MAX_UNZIPPED {
            return Err(ApiError::invalid_parameter(format!(
                "Unzipped size must be smaller than {MAX_UNZIPPED} bytes"
            )));
        }
        fs::write(&path, &buf)
            .map_err(|e| ApiError::internal(format!("cannot write code: {e}")))?;
        set_mode(&path, mode.unwrap_or(0o755));
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    // Keep the owner able to read (and remove) what it extracted, whatever the zip says.
    let _ = fs::set_permissions(path, fs::Permissions::from_mode((mode & 0o777) | 0o600));
}

/// Merges the packages `keys` (in order, later ones overwrite) into a cached `/opt` directory.
pub(crate) fn assemble_opt(data_dir: &Path, keys: &[String]) -> std::io::Result<Option<PathBuf>> {
    if keys.is_empty() {
        return Ok(None);
    }
    let id = hex::encode(Sha256::digest(keys.join(",").as_bytes()));
    let dir = data_dir.join("opt").join(&id[..32]);
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    let tmp =
        data_dir
            .join("opt")
            .join(format!(".{}.tmp-{}", &id[..32], crate::new_uuid().simple()));
    fs::create_dir_all(&tmp)?;
    for key in keys {
        copy_tree(&code_dir(data_dir, key), &tmp)?;
    }
    if fs::rename(&tmp, &dir).is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    Ok(Some(dir))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            let _ = fs::remove_file(&target);
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Builds a zip (stored, not compressed) of the files under `dir`, for `lambda create --dir`.
///
/// # Errors
/// I/O errors reading the directory.
pub fn zip_dir(dir: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&d)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)
                .map_err(std::io::Error::other)?
                .to_string_lossy()
                .into_owned();
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .unix_permissions(meta.permissions().mode() & 0o777)
                .large_file(meta.len() > u64::from(u32::MAX));
            out.start_file(rel, opts).map_err(std::io::Error::other)?;
            out.write_all(&fs::read(&path)?)?;
        }
    }
    Ok(out.finish().map_err(std::io::Error::other)?.into_inner())
}
