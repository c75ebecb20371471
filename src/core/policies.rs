//! Stored ACL policies (`sys/policies/acl`), and the per-token ACL built from them.

use std::sync::Arc;

use super::crypto::{label, Location};
use super::error::{Error, Result};
use super::keyring::Keyring;
use super::policy::{self, Acl, Policy, PolicyError};
use super::vault::Vault;
use crate::store::Op;

const PREFIX: &str = "pol/";

fn key(name: &str) -> Vec<u8> {
    format!("{PREFIX}{name}").into_bytes()
}

fn loc(name: &str) -> Location<'_> {
    Location::new("policy", "sys", name, 0)
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Self {
        Error::BadRequest(e.to_string())
    }
}

/// Is this name `root` in any spelling (`Root`, ` root `)?
pub fn is_root_name(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("root")
}

impl Vault {
    pub(crate) fn policy_put_op(&self, kr: &Keyring, name: &str, text: &str) -> Result<Op> {
        Ok(Op::Put(
            key(name),
            kr.seal(label::SYS, &loc(name), text.as_bytes()),
        ))
    }

    fn invalidate_policies(&self) {
        self.policy_gen
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.policy_cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.acl_cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A stored policy, parsed (`None` if absent). `root` is never stored.
    pub fn policy_get(&self, name: &str) -> Result<Option<Arc<Policy>>> {
        let name = policy::normalize_name(name)?;
        if let Some(p) = self
            .policy_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
        {
            return Ok(Some(p.clone()));
        }
        let gen = self.policy_gen.load(std::sync::atomic::Ordering::SeqCst);
        let kr = self.keyring()?;
        let Some(env) = self.store.get(&key(&name))? else {
            return Ok(None);
        };
        let text = kr.open(label::SYS, &loc(&name), &env)?;
        let text = String::from_utf8(text.to_vec())
            .map_err(|_| Error::Internal("policy text is not UTF-8".into()))?;
        // Stored policies parsed when written; a failure here means the parser changed.
        let p = Arc::new(
            policy::parse(&name, &text)
                .map_err(|e| Error::Internal(format!("stored policy {name}: {e}")))?,
        );
        let mut cache = self.policy_cache.write().unwrap_or_else(|p| p.into_inner());
        if self.policy_gen.load(std::sync::atomic::Ordering::SeqCst) == gen {
            cache.insert(name, p.clone());
        }
        Ok(Some(p))
    }

    /// Writes (creates or replaces) a policy. `root` cannot be written.
    pub fn policy_put(&self, name: &str, text: &str) -> Result<()> {
        if is_root_name(name) {
            return Err(Error::bad("cannot update \"root\" policy"));
        }
        let parsed = policy::parse(name, text)?;
        let kr = self.keyring()?;
        let op = self.policy_put_op(&kr, &parsed.name, text)?;
        self.store.batch(vec![op])?;
        self.store.sync()?;
        self.invalidate_policies();
        tracing::info!(policy = %parsed.name, "policy written");
        Ok(())
    }

    /// Deletes a policy (absent: no-op). `root` and `default` cannot be deleted.
    pub fn policy_delete(&self, name: &str) -> Result<()> {
        if is_root_name(name) {
            return Err(Error::bad("cannot delete \"root\" policy"));
        }
        let name = policy::normalize_name(name)?;
        if name == "default" {
            return Err(Error::bad("cannot delete default policy"));
        }
        self.store.delete(&key(&name))?;
        self.store.sync()?;
        self.invalidate_policies();
        Ok(())
    }

    /// Names of stored policies, sorted, then `root`.
    pub fn policy_list(&self) -> Result<Vec<String>> {
        self.keyring()?;
        let mut names: Vec<String> = self
            .store
            .keys_with_prefix(PREFIX.as_bytes())?
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned())
            .collect();
        names.sort();
        names.push("root".into());
        Ok(names)
    }

    /// Creates the `default` policy if a vault initialized before policies existed lacks it.
    pub fn ensure_default_policy(&self) -> Result<()> {
        if self.store.get(&key("default"))?.is_none() {
            let kr = self.keyring()?;
            self.store.batch(vec![self.policy_put_op(
                &kr,
                "default",
                policy::DEFAULT_POLICY,
            )?])?;
            self.store.sync()?;
        }
        Ok(())
    }

    /// The merged ACL of a set of policy names (cached until the next policy write). Names
    /// without a stored policy grant nothing.
    pub fn acl(&self, policies: &[String]) -> Result<Arc<Acl>> {
        if let Some(a) = self
            .acl_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(policies)
        {
            return Ok(a.clone());
        }
        let gen = self.policy_gen.load(std::sync::atomic::Ordering::SeqCst);
        let root = policies.iter().any(|p| p == "root");
        let mut loaded = Vec::new();
        if !root {
            for name in policies {
                if let Some(p) = self.policy_get(name)? {
                    loaded.push(p);
                }
            }
        }
        let acl = Arc::new(Acl::new(loaded.iter().map(|p| p.as_ref()), root));
        let mut cache = self.acl_cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        if self.policy_gen.load(std::sync::atomic::Ordering::SeqCst) == gen {
            cache.insert(policies.to_vec(), acl.clone());
        }
        Ok(acl)
    }
}
