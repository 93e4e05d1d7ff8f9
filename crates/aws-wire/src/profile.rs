//! Static credentials of a named profile from AWS's shared files (`~/.aws/credentials`,
//! `~/.aws/config`), read the way the AWS CLI and SDKs read them: `AWS_PROFILE` (else `default`),
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` (else under `HOME`), the credentials file's
//! keys winning over the config file's. A profile that gets its credentials some other way (a
//! role, SSO, a credential process, web identity) is reported by name as unsupported, never
//! skipped in silence.

use std::collections::BTreeMap;

/// Sections of a shared file: name → (lower-cased key → value).
pub type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// Static keys found for a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    /// Which profile they came from, for the log.
    pub profile: String,
}

/// Why a profile gave no credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("{file}, line {line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error("cannot read {file}: {message}")]
    Read { file: String, message: String },
    #[error("AWS profile {profile:?} (AWS_PROFILE) is in neither {credentials} nor {config}")]
    NotFound {
        profile: String,
        credentials: String,
        config: String,
    },
    #[error(
        "AWS profile {profile:?} gets its credentials through {setting}, which is not supported: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (e.g. from `aws configure export-credentials`)"
    )]
    Unsupported { profile: String, setting: String },
    #[error("AWS profile {profile:?} sets {present} but not {missing}")]
    Incomplete {
        profile: String,
        present: &'static str,
        missing: &'static str,
    },
}

/// Largest shared file read (real ones are a few KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Settings through which a profile gets credentials other than static keys.
const OTHER_SOURCES: [&str; 6] = [
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
    "credential_source",
];

/// Parses the INI dialect of AWS's shared files.
///
/// `[section]` headers, `key = value` properties (keys case-insensitive), whole-line comments
/// starting with `#` or `;`, a comment after a value when whitespace precedes its `#` or `;`, and
/// indented lines continuing the property above (nested settings such as `s3 =`, which carry no
/// credentials and are skipped).
///
/// # Errors
/// The first malformed line, with `file` and its number.
pub fn parse(text: &str, file: &str) -> Result<Sections, ProfileError> {
    // Editors on Windows may start the file with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections = Sections::new();
    let mut current: Option<String> = None;
    let mut in_property = false;
    for (i, raw) in text.lines().enumerate() {
        let err = |message: &str| ProfileError::Syntax {
            file: file.to_owned(),
            line: i + 1,
            message: message.to_owned(),
        };
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if !in_property {
                return Err(err("an indented line must continue a property"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some((name, after)) = rest.split_once(']') else {
                return Err(err("a section header needs a closing ']'"));
            };
            let after = after.trim_start();
            if !(after.is_empty() || after.starts_with('#') || after.starts_with(';')) {
                return Err(err("nothing but a comment may follow a section header"));
            }
            let name = name.trim();
            if name.is_empty() {
                return Err(err("a section needs a name"));
            }
            sections.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
            in_property = false;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(err("expected 'key = value', a [section] or a comment"));
        };
        let Some(section) = &current else {
            return Err(err("a property must be inside a [section]"));
        };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(err("a property needs a name before '='"));
        }
        sections
            .entry(section.clone())
            .or_default()
            .insert(key, strip_comment(value).to_owned());
        in_property = true;
    }
    Ok(sections)
}

/// A value without its trailing comment (`#` or `;` after whitespace) and surrounding blanks.
fn strip_comment(value: &str) -> &str {
    let cut = value
        .char_indices()
        .find(|&(i, c)| {
            (c == '#' || c == ';') && value[..i].ends_with(|p: char| p.is_ascii_whitespace())
        })
        .map_or(value.len(), |(i, _)| i);
    value[..cut].trim()
}

/// The selected profile's settings, both files merged (the credentials file's win).
///
/// # Errors
/// A file that exists but cannot be read or parsed.
fn load(vars: &BTreeMap<String, String>) -> Result<Loaded, ProfileError> {
    let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let explicit = get("AWS_PROFILE").map(str::to_owned);
    let profile = explicit.clone().unwrap_or_else(|| "default".to_owned());
    let home = get("HOME");
    let path = |var: &str, default: &str| -> Option<String> {
        match get(var) {
            Some(p) => Some(match (p.strip_prefix("~/"), home) {
                (Some(rest), Some(h)) => format!("{h}/{rest}"),
                _ => p.to_owned(),
            }),
            None => home.map(|h| format!("{h}/.aws/{default}")),
        }
    };
    let credentials_file = path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = path("AWS_CONFIG_FILE", "config");

    // The config file names profiles `[profile NAME]`, except `[default]`.
    let from_config = read(config_file.as_deref())?.and_then(|mut s| {
        let mut named = s
            .keys()
            .find(|k| {
                k.strip_prefix("profile")
                    .filter(|r| r.starts_with([' ', '\t']))
                    .is_some_and(|r| r.trim() == profile)
            })
            .cloned();
        if named.is_none() && profile == "default" && s.contains_key("default") {
            named = Some("default".to_owned());
        }
        named.and_then(|n| s.remove(&n))
    });
    let from_credentials = read(credentials_file.as_deref())?.and_then(|mut s| s.remove(&profile));
    let found = from_config.is_some() || from_credentials.is_some();
    let mut settings = from_config.unwrap_or_default();
    settings.extend(from_credentials.unwrap_or_default());
    Ok(Loaded {
        profile,
        explicit,
        found,
        settings,
        credentials_file: credentials_file.unwrap_or_else(|| "~/.aws/credentials".into()),
        config_file: config_file.unwrap_or_else(|| "~/.aws/config".into()),
    })
}

/// What [`load`] found.
struct Loaded {
    profile: String,
    /// `AWS_PROFILE`, when set.
    explicit: Option<String>,
    /// Whether either file has the profile.
    found: bool,
    settings: BTreeMap<String, String>,
    credentials_file: String,
    config_file: String,
}

/// The selected profile's `region`, if it has one.
///
/// # Errors
/// A file that exists but cannot be read or parsed.
pub fn region(vars: &BTreeMap<String, String>) -> Result<Option<String>, ProfileError> {
    Ok(load(vars)?
        .settings
        .get("region")
        .filter(|r| !r.is_empty())
        .cloned())
}

/// The static credentials of the selected profile, or `None` when no profile is selected
/// explicitly and the `default` one holds none.
///
/// # Errors
/// A file that exists but cannot be read or parsed; an explicitly selected profile that is
/// missing or holds no keys; a profile that uses an unsupported source; half a key pair.
pub fn resolve(
    vars: &BTreeMap<String, String>,
) -> Result<Option<ProfileCredentials>, ProfileError> {
    let Loaded {
        profile,
        explicit,
        found,
        settings: merged,
        credentials_file,
        config_file,
    } = load(vars)?;
    let explicit = explicit.as_deref();
    let profile = profile.as_str();
    if !found {
        return match explicit {
            Some(p) => Err(ProfileError::NotFound {
                profile: p.to_owned(),
                credentials: credentials_file,
                config: config_file,
            }),
            None => Ok(None),
        };
    }
    let value = |k: &str| merged.get(k).filter(|v| !v.is_empty()).cloned();
    match (value("aws_access_key_id"), value("aws_secret_access_key")) {
        (Some(access_key), Some(secret_key)) => Ok(Some(ProfileCredentials {
            access_key,
            secret_key,
            session_token: value("aws_session_token"),
            profile: profile.to_owned(),
        })),
        (Some(_), None) => Err(ProfileError::Incomplete {
            profile: profile.to_owned(),
            present: "aws_access_key_id",
            missing: "aws_secret_access_key",
        }),
        (None, Some(_)) => Err(ProfileError::Incomplete {
            profile: profile.to_owned(),
            present: "aws_secret_access_key",
            missing: "aws_access_key_id",
        }),
        (None, None) => {
            if let Some(setting) = OTHER_SOURCES.iter().find(|s| merged.contains_key(**s)) {
                return Err(ProfileError::Unsupported {
                    profile: profile.to_owned(),
                    setting: (*setting).to_owned(),
                });
            }
            match explicit {
                Some(p) => Err(ProfileError::Incomplete {
                    profile: p.to_owned(),
                    present: "neither key",
                    missing: "aws_access_key_id and aws_secret_access_key",
                }),
                // A `default` profile with only a region, say: no credentials from here.
                None => Ok(None),
            }
        }
    }
}

/// The parsed file, `None` when there is no such file.
fn read(path: Option<&str>) -> Result<Option<Sections>, ProfileError> {
    let Some(path) = path else {
        return Ok(None);
    };
    use std::io::Read;
    let failed = |message: String| ProfileError::Read {
        file: path.to_owned(),
        message,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e.to_string())),
    };
    // Bounded: a path such as /dev/zero must not hang the caller or exhaust its memory.
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| failed(e.to_string()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(failed(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    parse(&text, path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_properties_comments_and_nested_settings() {
        let s = parse(
            "# leading comment\n\
             [default]\n\
             aws_access_key_id = AKIA1 \n\
             AWS_Secret_Access_Key=se/cr+et ; trailing comment\n\
             \n\
             [profile dev] # a comment after the header\n\
             region = eu-west-1\n\
             s3 =\n\
             \x20 max_concurrent_requests = 10\n\
             ; another comment\n\
             token = a#b\n",
            "f",
        )
        .unwrap();
        assert_eq!(s["default"]["aws_access_key_id"], "AKIA1");
        assert_eq!(s["default"]["aws_secret_access_key"], "se/cr+et");
        assert_eq!(s["profile dev"]["region"], "eu-west-1");
        assert_eq!(s["profile dev"]["s3"], "");
        assert!(!s["profile dev"].contains_key("max_concurrent_requests"));
        // A '#' with no whitespace before it is part of the value.
        assert_eq!(s["profile dev"]["token"], "a#b");
        // Windows line endings and a byte-order mark.
        let s = parse("\u{feff}[default]\r\naws_access_key_id = A\r\n", "f").unwrap();
        assert_eq!(s["default"]["aws_access_key_id"], "A");
    }

    #[test]
    fn malformed_lines_are_reported_with_file_and_line() {
        for (text, line, what) in [
            ("key = v\n", 1, "inside a [section]"),
            ("[default]\njunk\n", 2, "expected 'key = value'"),
            ("[default\n", 1, "closing ']'"),
            ("[]\n", 1, "needs a name"),
            ("[a] b\n", 1, "nothing but a comment"),
            ("[a]\n = v\n", 2, "continue a property"),
            ("[a]\n= v\n", 2, "needs a name before '='"),
        ] {
            let err = parse(text, "creds").unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("creds, line {line}:")) && msg.contains(what),
                "{text:?}: {msg}"
            );
        }
    }

    struct Files {
        dir: tempfile::TempDir,
        vars: BTreeMap<String, String>,
    }

    fn files(credentials: Option<&str>, config: Option<&str>) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        if let Some(c) = credentials {
            std::fs::write(aws.join("credentials"), c).unwrap();
        }
        if let Some(c) = config {
            std::fs::write(aws.join("config"), c).unwrap();
        }
        let vars = [("HOME".to_owned(), dir.path().display().to_string())].into();
        Files { dir, vars }
    }

    #[test]
    fn the_default_profile_and_a_named_one_from_either_file() {
        let mut f = files(
            Some("[default]\naws_access_key_id = A\naws_secret_access_key = S\n"),
            Some(
                "[default]\nregion = us-east-1\n[profile dev]\naws_access_key_id = DA\n\
                 aws_secret_access_key = DS\naws_session_token = DT\n",
            ),
        );
        let c = resolve(&f.vars).unwrap().unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("A", "S"));
        assert_eq!((c.session_token, c.profile.as_str()), (None, "default"));
        f.vars.insert("AWS_PROFILE".into(), "dev".into());
        let c = resolve(&f.vars).unwrap().unwrap();
        assert_eq!(
            (c.access_key.as_str(), c.session_token.as_deref()),
            ("DA", Some("DT"))
        );
    }

    #[test]
    fn the_credentials_file_wins_and_paths_come_from_the_environment() {
        let f = files(None, None);
        let creds = f.dir.path().join("c.ini");
        let config = f.dir.path().join("k.ini");
        std::fs::write(&creds, "[dev]\naws_secret_access_key = from-credentials\n").unwrap();
        std::fs::write(
            &config,
            "[profile dev]\naws_access_key_id = K\naws_secret_access_key = from-config\n",
        )
        .unwrap();
        let mut vars = f.vars.clone();
        vars.insert("AWS_PROFILE".into(), "dev".into());
        vars.insert(
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            creds.display().to_string(),
        );
        vars.insert("AWS_CONFIG_FILE".into(), "~/k.ini".into());
        let c = resolve(&vars).unwrap().unwrap();
        assert_eq!(
            (c.access_key.as_str(), c.secret_key.as_str()),
            ("K", "from-credentials")
        );
    }

    #[test]
    fn the_profiles_region() {
        let mut f = files(
            None,
            Some(
                "[default]\nregion = eu-west-1\n[profile dev]\nregion = ap-south-1\n[profile bare]\n",
            ),
        );
        assert_eq!(region(&f.vars), Ok(Some("eu-west-1".into())));
        f.vars.insert("AWS_PROFILE".into(), "dev".into());
        assert_eq!(region(&f.vars), Ok(Some("ap-south-1".into())));
        f.vars.insert("AWS_PROFILE".into(), "bare".into());
        assert_eq!(region(&f.vars), Ok(None));
        f.vars.insert("AWS_PROFILE".into(), "missing".into());
        assert_eq!(region(&f.vars), Ok(None));
        assert_eq!(region(&BTreeMap::new()), Ok(None));
        let g = files(None, Some("region = x\n"));
        assert!(
            region(&g.vars)
                .unwrap_err()
                .to_string()
                .contains("config, line 1")
        );
    }

    #[test]
    fn no_files_or_a_keyless_default_profile_give_no_credentials() {
        assert_eq!(resolve(&files(None, None).vars), Ok(None));
        assert_eq!(resolve(&BTreeMap::new()), Ok(None));
        let f = files(None, Some("[default]\nregion = eu-west-1\n"));
        assert_eq!(resolve(&f.vars), Ok(None));
    }

    #[test]
    fn what_cannot_be_used_is_named() {
        let mut f = files(
            Some("[half]\naws_access_key_id = A\n[empty]\n"),
            Some("[profile role]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = half\n"),
        );
        let mut err = |profile: &str| {
            f.vars.insert("AWS_PROFILE".into(), profile.into());
            resolve(&f.vars).unwrap_err().to_string()
        };
        let e = err("missing");
        assert!(
            e.contains("\"missing\"") && e.contains(".aws/credentials"),
            "{e}"
        );
        let e = err("half");
        assert!(
            e.contains("sets aws_access_key_id but not aws_secret_access_key"),
            "{e}"
        );
        let e = err("role");
        assert!(e.contains("role_arn, which is not supported"), "{e}");
        let e = err("empty");
        assert!(e.contains("\"empty\" sets neither key"), "{e}");
        let mut z = files(None, None).vars;
        z.insert("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/zero".into());
        let e = resolve(&z).unwrap_err().to_string();
        assert!(e.contains("/dev/zero") && e.contains("larger than"), "{e}");
        let g = files(Some("[default]\nbroken line\n"), None);
        let e = resolve(&g.vars).unwrap_err().to_string();
        assert!(e.contains("credentials, line 2"), "{e}");
    }
}
