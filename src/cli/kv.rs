//! `arca kv ...`: KV v2 secrets, like `vault kv`.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;

use clap::{ArgAction, Args, Subcommand};
use serde_json::{Map, Value};

use super::output::{list, object_rows, render_value, section, table};
use super::{CliError, ClientOpts, CmdResult, Ctx, Format};
use crate::client::{ClientError, KvSecret, MetadataUpdate, VersionMetadata};

/// `arca kv`: flags and subcommand.
#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Mount path of the KV v2 engine; a PATH starting with it has it stripped
    #[arg(long, global = true, default_value = "secret", value_name = "MOUNT")]
    pub mount: String,
    #[command(subcommand)]
    pub command: KvCommand,
}

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Write a new version of a secret
    #[command(after_help = DATA_HELP)]
    Put(PutArgs),
    /// Read a secret (the latest version, or --version)
    Get(GetArgs),
    /// Merge keys into the latest version of a secret, writing a new version
    #[command(after_help = DATA_HELP)]
    Patch(PutArgs),
    /// List the keys in a folder (folders end in '/')
    List(PathArg),
    /// Soft-delete the latest version of a secret, or the given --versions
    Delete(DeleteArgs),
    /// Restore soft-deleted versions of a secret
    Undelete(VersionsArgs),
    /// Permanently remove the data of versions of a secret
    Destroy(VersionsArgs),
    /// Read, write or delete a secret's metadata (all its versions)
    #[command(subcommand)]
    Metadata(KvMetadataCommand),
}

const DATA_HELP: &str = "\
DATA is one or more of:
  key=value    a string value
  key=@FILE    the contents of FILE
  key=-        the contents of standard input
  @FILE        a JSON object read from FILE (values keep their JSON types)
  -            a JSON object read from standard input
Standard input can be used once. Values on the command line are visible in `ps`: prefer key=- or
key=@FILE for real secrets.

Examples:
  arca kv put secret/db/prod username=app password=@pw.txt
  printf %s \"$PW\" | arca kv put --cas 3 secret/db/prod password=-";

#[derive(Debug, Subcommand)]
pub enum KvMetadataCommand {
    /// Show a secret's metadata and the state of each version
    Get(PathArg),
    /// Create or update a secret's metadata (fields not given keep their value)
    Put(MetadataPutArgs),
    /// Delete a secret entirely: every version and its metadata
    Delete(PathArg),
}

#[derive(Debug, Args)]
pub struct PathArg {
    /// Secret path, e.g. secret/db/prod
    #[arg(value_name = "PATH")]
    pub path: String,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// Secret path, e.g. secret/db/prod
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Data to write: key=value, key=@FILE, key=-, @FILE.json or -
    #[arg(value_name = "DATA", required = true, num_args = 1..)]
    pub data: Vec<String>,
    /// Check-and-set: write only if the current version is N (0: only if the secret does not exist)
    #[arg(long, value_name = "N")]
    pub cas: Option<u64>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Secret path, e.g. secret/db/prod
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Version to read (default: the latest)
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    /// Print only this field's value (raw, no trailing newline unless on a terminal)
    #[arg(long, value_name = "FIELD")]
    pub field: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Secret path, e.g. secret/db/prod
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Versions to delete, comma-separated (default: the latest)
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    pub versions: Vec<u64>,
}

#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// Secret path, e.g. secret/db/prod
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Versions, comma-separated
    #[arg(long, value_name = "N,...", value_delimiter = ',', required = true)]
    pub versions: Vec<u64>,
}

#[derive(Debug, Args)]
pub struct MetadataPutArgs {
    /// Secret path, e.g. secret/db/prod
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Versions to keep (0: the mount's setting, 10 by default)
    #[arg(long, value_name = "N")]
    pub max_versions: Option<u64>,
    /// Require --cas on every write to this secret
    #[arg(long, value_name = "BOOL", action = ArgAction::Set)]
    pub cas_required: Option<bool>,
    /// Soft-delete versions this long after they are written (e.g. 1h, 30m; 0s: never)
    #[arg(long, value_name = "DURATION")]
    pub delete_version_after: Option<String>,
    /// Custom metadata, key=value; repeat for several. Replaces the whole map
    #[arg(long, value_name = "KEY=VALUE")]
    pub custom_metadata: Vec<String>,
}

/// A PATH argument resolved against the mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPath {
    pub mount: String,
    /// The key inside the mount, e.g. `db/prod` (may end in `/` for folders).
    pub key: String,
}

impl SecretPath {
    /// `secret/db/prod` with mount `secret` -> key `db/prod`; a PATH not starting with the
    /// mount is taken as relative to it (`db/prod` -> `db/prod`).
    pub fn parse(mount: &str, path: &str) -> SecretPath {
        let mount = mount.trim_matches('/').to_string();
        let path = path.trim_start_matches('/');
        let key = if path == mount {
            ""
        } else {
            path.strip_prefix(&format!("{mount}/")).unwrap_or(path)
        };
        SecretPath {
            key: key.to_string(),
            mount,
        }
    }

    /// Like [`SecretPath::parse`] for commands that need a secret, not a folder.
    pub fn parse_secret(mount: &str, path: &str) -> Result<SecretPath, CliError> {
        let p = SecretPath::parse(mount, path);
        if p.key.trim_matches('/').is_empty() {
            return Err(CliError::Usage(format!(
                "PATH must name a secret inside the mount, e.g. {}/db/prod",
                p.mount
            )));
        }
        Ok(p)
    }

    /// The API-style path shown to the user, e.g. `secret/data/db/prod`.
    pub fn display(&self, op: &str) -> String {
        format!("{}/{op}/{}", self.mount, self.key)
    }
}

/// Parses `key=value`, `key=@FILE`, `key=-`, `@FILE` and `-` arguments into a JSON object.
pub fn parse_data(args: &[String], stdin: &mut dyn Read) -> Result<Map<String, Value>, CliError> {
    let mut out = Map::new();
    let mut stdin_used = false;
    let mut read_stdin = |what: &str| -> Result<String, CliError> {
        if stdin_used {
            return Err(CliError::Usage(format!(
                "{what}: standard input can only be read once"
            )));
        }
        stdin_used = true;
        let mut s = String::new();
        stdin
            .read_to_string(&mut s)
            .map_err(|e| CliError::Failed(format!("reading standard input: {e}")))?;
        Ok(s)
    };
    for arg in args {
        if arg == "-" {
            let text = read_stdin("-")?;
            merge_json_object(&mut out, &text, "standard input")?;
        } else if let Some((key, value)) = arg.split_once('=') {
            if key.is_empty() {
                return Err(CliError::Usage(format!(
                    "invalid data {:?}: the key before '=' is empty",
                    redact_pair(arg)
                )));
            }
            let value = if value == "-" {
                read_stdin(key)?
            } else if let Some(file) = value.strip_prefix('@') {
                read_file(Path::new(file))?
            } else {
                value.to_string()
            };
            out.insert(key.to_string(), Value::String(value));
        } else if let Some(file) = arg.strip_prefix('@') {
            let text = read_file(Path::new(file))?;
            merge_json_object(&mut out, &text, file)?;
        } else {
            return Err(CliError::Usage(format!(
                "invalid data {arg:?}: expected key=value, key=@FILE, key=-, @FILE or -"
            )));
        }
    }
    Ok(out)
}

/// `key=value` -> `key=...`: a malformed argument may still hold a secret.
fn redact_pair(arg: &str) -> String {
    match arg.split_once('=') {
        Some((k, _)) => format!("{k}=..."),
        None => arg.to_string(),
    }
}

fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Failed(format!("reading {}: {e}", path.display())))
}

fn merge_json_object(
    out: &mut Map<String, Value>,
    text: &str,
    origin: &str,
) -> Result<(), CliError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => {
            out.extend(m);
            Ok(())
        }
        Ok(_) => Err(CliError::Usage(format!("{origin}: expected a JSON object"))),
        Err(e) => Err(CliError::Usage(format!("{origin}: invalid JSON: {e}"))),
    }
}

/// Parses repeated `--custom-metadata k=v` flags.
pub fn parse_custom_metadata(args: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CliError::Usage(format!(
                "invalid --custom-metadata {a:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// Runs one `arca kv` subcommand.
pub fn run(ctx: &mut Ctx<'_>, mount: &str, command: KvCommand) -> CmdResult {
    match command {
        KvCommand::Put(a) => put(ctx, mount, a, false),
        KvCommand::Patch(a) => put(ctx, mount, a, true),
        KvCommand::Get(a) => get(ctx, mount, a),
        KvCommand::List(a) => list_cmd(ctx, mount, &a.path),
        KvCommand::Delete(a) => delete(ctx, mount, a),
        KvCommand::Undelete(a) => versions_op(ctx, mount, "undelete", a),
        KvCommand::Destroy(a) => versions_op(ctx, mount, "destroy", a),
        KvCommand::Metadata(KvMetadataCommand::Get(a)) => metadata_get(ctx, mount, &a.path),
        KvCommand::Metadata(KvMetadataCommand::Put(a)) => metadata_put(ctx, mount, a),
        KvCommand::Metadata(KvMetadataCommand::Delete(a)) => metadata_delete(ctx, mount, &a.path),
    }
}

fn not_found_or(context: String, path: String) -> impl FnOnce(ClientError) -> CliError {
    move |e| {
        if matches!(e, ClientError::NotFound) {
            CliError::NotFound(format!("No value found at {path}"))
        } else {
            CliError::Api { context, source: e }
        }
    }
}

fn version_table(meta: &VersionMetadata) -> Result<String, CliError> {
    let v = serde_json::to_value(meta)
        .map_err(|e| CliError::Failed(format!("encoding output: {e}")))?;
    Ok(table(&object_rows(v.as_object().unwrap_or(&Map::new()))))
}

fn put(ctx: &mut Ctx<'_>, mount: &str, a: PutArgs, patch: bool) -> CmdResult {
    let p = SecretPath::parse_secret(mount, &a.path)?;
    let data = parse_data(&a.data, &mut io::stdin().lock())?;
    let shown = p.display("data");
    let kv = ctx.client.kv(&p.mount);
    let meta = if patch {
        kv.patch(&p.key, &data, a.cas)
            .map_err(not_found_or(format!("patching {shown}"), shown.clone()))?
    } else {
        kv.put(&p.key, &data, a.cas)
            .map_err(CliError::api(format!("writing {shown}")))?
    };
    match ctx.format {
        Format::Json => ctx.json(&meta)?,
        Format::Table => {
            let text = format!(
                "{}\n{}",
                section("Secret Path", &format!("{shown}\n")),
                section("Metadata", &version_table(&meta)?)
            );
            ctx.print(&text)?;
        }
    }
    Ok(0)
}

fn get(ctx: &mut Ctx<'_>, mount: &str, a: GetArgs) -> CmdResult {
    let p = SecretPath::parse_secret(mount, &a.path)?;
    let shown = p.display("data");
    let secret: KvSecret = ctx
        .client
        .kv(&p.mount)
        .get(&p.key, a.version)
        .map_err(not_found_or(format!("reading {shown}"), shown.clone()))?;
    let gone = || {
        let what = if secret.metadata.destroyed {
            "destroyed"
        } else {
            "deleted"
        };
        CliError::NotFound(format!(
            "version {} of {shown} is {what}",
            secret.metadata.version
        ))
    };

    if let Some(field) = &a.field {
        let data = secret.data.as_ref().ok_or_else(gone)?;
        let value = data
            .get(field)
            .ok_or_else(|| CliError::Failed(format!("field {field:?} not present in secret")))?;
        let text = match ctx.format {
            Format::Json => serde_json::to_string_pretty(value)
                .map_err(|e| CliError::Failed(format!("encoding output: {e}")))?,
            Format::Table => render_value(value),
        };
        ctx.print(&text)?;
        if ctx.stdout_is_tty || ctx.format == Format::Json {
            ctx.print("\n")?;
        }
        return Ok(0);
    }

    match ctx.format {
        Format::Json => ctx.json(&secret)?,
        Format::Table => {
            let mut text = format!(
                "{}\n{}",
                section("Secret Path", &format!("{shown}\n")),
                section("Metadata", &version_table(&secret.metadata)?)
            );
            if let Some(data) = &secret.data {
                text.push('\n');
                text.push_str(&section("Data", &table(&object_rows(data))));
            }
            ctx.print(&text)?;
        }
    }
    if secret.is_deleted() {
        return Err(gone());
    }
    Ok(0)
}

fn list_cmd(ctx: &mut Ctx<'_>, mount: &str, path: &str) -> CmdResult {
    let p = SecretPath::parse(mount, path);
    let folder = p.key.trim_end_matches('/');
    let shown = if folder.is_empty() {
        format!("{}/metadata/", p.mount)
    } else {
        format!("{}/metadata/{folder}/", p.mount)
    };
    let keys = ctx
        .client
        .kv(&p.mount)
        .list(folder)
        .map_err(not_found_or(format!("listing {shown}"), shown.clone()))?;
    match ctx.format {
        Format::Json => ctx.json(&serde_json::json!({ "keys": keys }))?,
        Format::Table => ctx.print(&list("Keys", &keys))?,
    }
    Ok(0)
}

fn success(ctx: &mut Ctx<'_>, text: &str) -> CmdResult {
    // JSON output stays machine-readable: nothing to print for a 204.
    if ctx.format == Format::Table {
        ctx.print(&format!("{text}\n"))?;
    }
    Ok(0)
}

fn delete(ctx: &mut Ctx<'_>, mount: &str, a: DeleteArgs) -> CmdResult {
    let p = SecretPath::parse_secret(mount, &a.path)?;
    let kv = ctx.client.kv(&p.mount);
    if a.versions.is_empty() {
        let shown = p.display("data");
        kv.delete_latest(&p.key)
            .map_err(CliError::api(format!("deleting {shown}")))?;
        success(
            ctx,
            &format!("Success! Data deleted (if it existed) at: {shown}"),
        )
    } else {
        let shown = p.display("delete");
        kv.delete_versions(&p.key, &a.versions)
            .map_err(CliError::api(format!("deleting {shown}")))?;
        success(
            ctx,
            &format!("Success! Data deleted (if it existed) at: {shown}"),
        )
    }
}

fn versions_op(ctx: &mut Ctx<'_>, mount: &str, op: &str, a: VersionsArgs) -> CmdResult {
    let p = SecretPath::parse_secret(mount, &a.path)?;
    let shown = p.display(op);
    let kv = ctx.client.kv(&p.mount);
    let result = match op {
        "undelete" => kv.undelete(&p.key, &a.versions),
        _ => kv.destroy(&p.key, &a.versions),
    };
    result.map_err(CliError::api(format!("writing {shown}")))?;
    success(ctx, &format!("Success! Data written to: {shown}"))
}

fn metadata_get(ctx: &mut Ctx<'_>, mount: &str, path: &str) -> CmdResult {
    let p = SecretPath::parse_secret(mount, path)?;
    let shown = p.display("metadata");
    let meta = ctx
        .client
        .kv(&p.mount)
        .metadata_get(&p.key)
        .map_err(not_found_or(format!("reading {shown}"), shown.clone()))?;
    match ctx.format {
        Format::Json => ctx.json(&meta)?,
        Format::Table => {
            let v = serde_json::to_value(&meta)
                .map_err(|e| CliError::Failed(format!("encoding output: {e}")))?;
            let mut fields = match v {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            fields.remove("versions");
            let mut text = format!(
                "{}\n{}",
                section("Metadata Path", &format!("{shown}\n")),
                section("Metadata", &table(&object_rows(&fields)))
            );
            // Versions in numeric order (the typed map is keyed by number).
            for (n, state) in &meta.versions {
                let state = serde_json::to_value(state)
                    .map_err(|e| CliError::Failed(format!("encoding output: {e}")))?;
                text.push('\n');
                text.push_str(&section(
                    &format!("Version {n}"),
                    &table(&object_rows(state.as_object().unwrap_or(&Map::new()))),
                ));
            }
            ctx.print(&text)?;
        }
    }
    Ok(0)
}

fn metadata_put(ctx: &mut Ctx<'_>, mount: &str, a: MetadataPutArgs) -> CmdResult {
    let p = SecretPath::parse_secret(mount, &a.path)?;
    let shown = p.display("metadata");
    let update = MetadataUpdate {
        max_versions: a.max_versions,
        cas_required: a.cas_required,
        delete_version_after: a.delete_version_after,
        custom_metadata: if a.custom_metadata.is_empty() {
            None
        } else {
            Some(parse_custom_metadata(&a.custom_metadata)?)
        },
    };
    ctx.client
        .kv(&p.mount)
        .metadata_put(&p.key, &update)
        .map_err(CliError::api(format!("writing {shown}")))?;
    success(ctx, &format!("Success! Data written to: {shown}"))
}

fn metadata_delete(ctx: &mut Ctx<'_>, mount: &str, path: &str) -> CmdResult {
    let p = SecretPath::parse_secret(mount, path)?;
    let shown = p.display("metadata");
    ctx.client
        .kv(&p.mount)
        .metadata_delete(&p.key)
        .map_err(CliError::api(format!("deleting {shown}")))?;
    success(
        ctx,
        &format!("Success! Data deleted (if it existed) at: {shown}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn secret_paths() {
        let p = SecretPath::parse("secret", "secret/db/prod");
        assert_eq!(p.key, "db/prod");
        assert_eq!(p.display("data"), "secret/data/db/prod");
        assert_eq!(SecretPath::parse("secret", "/secret/db").key, "db");
        assert_eq!(SecretPath::parse("secret", "db/prod").key, "db/prod");
        assert_eq!(SecretPath::parse("/kv/", "kv/a").key, "a");
        assert_eq!(SecretPath::parse("secret", "secret").key, "");
        assert_eq!(SecretPath::parse("secret", "secret/").key, "");
        assert_eq!(SecretPath::parse("secret", "secret/a/").key, "a/");
        // Only a whole first segment is the mount.
        assert_eq!(SecretPath::parse("secret", "secrets/a").key, "secrets/a");
        assert!(SecretPath::parse_secret("secret", "secret/").is_err());
        assert_eq!(
            SecretPath::parse_secret("secret", "secret")
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn data_pairs() {
        let mut stdin = io::empty();
        let m = parse_data(&args(&["a=1", "b=x=y", "c=", "a=2"]), &mut stdin).unwrap();
        assert_eq!(Value::Object(m), json!({"a": "2", "b": "x=y", "c": ""}));
    }

    #[test]
    fn data_from_stdin_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw.txt");
        std::fs::write(&file, "s3cret\n").unwrap();
        let jfile = dir.path().join("d.json");
        std::fs::write(&jfile, r#"{"n": 5, "t": true}"#).unwrap();

        let mut stdin = io::Cursor::new(b"from-stdin".to_vec());
        let m = parse_data(
            &[
                format!("pw=@{}", file.display()),
                "s=-".to_string(),
                format!("@{}", jfile.display()),
            ],
            &mut stdin,
        )
        .unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"pw": "s3cret\n", "s": "from-stdin", "n": 5, "t": true})
        );

        let mut stdin = io::Cursor::new(br#"{"x": null}"#.to_vec());
        let m = parse_data(&args(&["-"]), &mut stdin).unwrap();
        assert_eq!(Value::Object(m), json!({"x": null}));
    }

    #[test]
    fn data_errors() {
        let mut stdin = io::Cursor::new(b"abc".to_vec());
        let e = parse_data(&args(&["a=-", "b=-"]), &mut stdin).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse_data(&args(&["novalue"]), &mut io::empty()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse_data(&args(&["=secretvalue"]), &mut io::empty()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains("secretvalue"), "{e}");
        let e = parse_data(&args(&["a=@/nonexistent/file"]), &mut io::empty()).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        let mut stdin = io::Cursor::new(b"[1]".to_vec());
        assert!(parse_data(&args(&["-"]), &mut stdin).is_err());
    }

    #[test]
    fn custom_metadata() {
        let m = parse_custom_metadata(&args(&["owner=ml", "team=a=b"])).unwrap();
        assert_eq!(m["owner"], "ml");
        assert_eq!(m["team"], "a=b");
        assert!(parse_custom_metadata(&args(&["nokey"])).is_err());
        assert!(parse_custom_metadata(&args(&["=v"])).is_err());
    }
}
