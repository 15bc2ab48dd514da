//! SASL for clients (opcode 102), as ZooKeeper 3.8 configures it: the JAAS file named by
//! `java.security.auth.login.config` (a `-D`/`--system-property`, or a zoo.cfg key), its
//! section `Server` (or `zookeeper.sasl.serverconfig`) with ZooKeeper's `DigestLoginModule`
//! and `user_NAME="password"` options ([`jaas`]); the DIGEST-MD5 mechanism ([`digest`]).
//! An authenticated client gets the id `sasl:<name>`, and `super` too when the name is
//! `zookeeper.superUser` (or any `zookeeper.superUser.*`).

pub mod digest;
pub mod jaas;

use std::collections::BTreeMap;

/// ZooKeeper's DIGEST-MD5 server name and realm.
pub const DIGEST_REALM: &str = "zk-sasl-md5";
/// ZooKeeper's SASL service (protocol) name.
pub const SERVICE: &str = "zookeeper";
/// ZooKeeper's login module for DIGEST-MD5 users.
pub const DIGEST_LOGIN_MODULE: &str = "org.apache.zookeeper.server.auth.DigestLoginModule";

/// What the server needs to authenticate SASL clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslConfig {
    /// DIGEST-MD5 users and passwords.
    pub users: BTreeMap<String, String>,
    /// Names that are also super (`zookeeper.superUser`, `zookeeper.superUser.*`).
    pub super_users: Vec<String>,
    /// `zookeeper.kerberos.removeHostFromPrincipal`.
    pub remove_host: bool,
    /// `zookeeper.kerberos.removeRealmFromPrincipal`.
    pub remove_realm: bool,
    /// `zookeeper.allowSaslFailedClients`: a failed exchange is answered OK with no token and
    /// the connection kept (without a sasl id).
    pub allow_failed_clients: bool,
}

impl SaslConfig {
    /// The SASL settings of `config`: `None` when no JAAS file is named or it has no server
    /// section (SASL is then off, as in ZooKeeper); an error for a file that cannot be read
    /// or parsed, or a login module Corral does not have.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<SaslConfig>, String> {
        let props = &config.system_properties;
        let Some(path) = props.get("java.security.auth.login.config").map(|p| p.trim()) else {
            return Ok(None);
        };
        if path.is_empty() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path.trim_start_matches('='))
            .map_err(|e| format!("the JAAS file {path}: {e}"))?;
        let lookup =
            |k: &str| props.get(k).or_else(|| props.get(&format!("zookeeper.{k}"))).cloned();
        let sections =
            jaas::parse(&text, &lookup).map_err(|e| format!("the JAAS file {path}: {e}"))?;
        let name = props
            .get("zookeeper.sasl.serverconfig")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "Server".into());
        let Some(modules) = sections.get(&name) else {
            tracing::info!(jaas = %path, section = %name, "no server section in the JAAS file: SASL is off");
            return Ok(None);
        };
        let mut users = BTreeMap::new();
        for m in modules {
            if m.class != DIGEST_LOGIN_MODULE {
                return Err(format!(
                    "the JAAS file {path}, section {name}: login module {} is not supported by Corral (only {DIGEST_LOGIN_MODULE}, DIGEST-MD5)",
                    m.class
                ));
            }
            for (k, v) in &m.options {
                if let Some(user) = k.strip_prefix("user_") {
                    users.insert(user.to_string(), v.clone());
                }
            }
        }
        if let Some(pw) = props.get("zookeeper.SASLAuthenticationProvider.superPassword") {
            users.insert("super".into(), pw.clone());
        }
        let flag = |k: &str| props.get(k).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let super_users = props
            .iter()
            .filter(|(k, _)| *k == "zookeeper.superUser" || k.starts_with("zookeeper.superUser."))
            .map(|(_, v)| v.trim().to_string())
            .collect();
        Ok(Some(SaslConfig {
            users,
            super_users,
            remove_host: flag("zookeeper.kerberos.removeHostFromPrincipal"),
            remove_realm: flag("zookeeper.kerberos.removeRealmFromPrincipal"),
            allow_failed_clients: flag("zookeeper.allowSaslFailedClients"),
        }))
    }

    /// The ids an authenticated name gives: `sasl` with the name as ZooKeeper's callback
    /// handler shapes it (`user[/host][@REALM]`, host and realm dropped when asked), and
    /// `super` when it is a superuser.
    pub fn ids_of(&self, name: &str) -> Vec<crate::proto::Id> {
        let (principal, realm) = match name.split_once('@') {
            Some((p, r)) => (p, Some(r)),
            None => (name, None),
        };
        let (user, host) = match principal.split_once('/') {
            Some((u, h)) => (u, Some(h)),
            None => (principal, None),
        };
        let mut id = user.to_string();
        if let (Some(h), false) = (host, self.remove_host) {
            id = format!("{id}/{h}");
        }
        if let (Some(r), false) = (realm, self.remove_realm) {
            id = format!("{id}@{r}");
        }
        // In ZooKeeper's order: the sasl id, then super.
        let is_super = self.super_users.contains(&id);
        let mut ids = vec![crate::proto::Id { scheme: "sasl".into(), id }];
        if is_super {
            ids.push(crate::proto::Id { scheme: "super".into(), id: String::new() });
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jaas: &str, extra: &str) -> (tempfile::TempDir, crate::config::Config) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("jaas.conf");
        std::fs::write(&f, jaas).unwrap();
        let text = format!(
            "dataDir=/x\nclientPort=2181\njava.security.auth.login.config={}\n{extra}",
            f.display()
        );
        let c = crate::config::Config::parse_str(&text).unwrap();
        (dir, c)
    }

    #[test]
    fn users_come_from_the_server_section() {
        let (_d, c) = config(
            "Server { org.apache.zookeeper.server.auth.DigestLoginModule required user_super=\"s\" user_bob=\"pw\"; };",
            "superUser=bob\n",
        );
        let s = SaslConfig::from_config(&c).unwrap().unwrap();
        assert_eq!(s.users["bob"], "pw");
        assert_eq!(s.users["super"], "s");
        let ids = s.ids_of("bob");
        assert_eq!(ids.len(), 2, "bob is super: {ids:?}");
        assert_eq!(
            s.ids_of("al"),
            vec![crate::proto::Id { scheme: "sasl".into(), id: "al".into() }]
        );
    }

    #[test]
    fn no_file_no_section_or_an_empty_file_turn_sasl_off() {
        let c = crate::config::Config::parse_str("dataDir=/x\nclientPort=2181\n").unwrap();
        assert_eq!(SaslConfig::from_config(&c).unwrap(), None);
        let (_d, c) = config("", "");
        assert_eq!(SaslConfig::from_config(&c).unwrap(), None, "kazoo's empty jaas.conf");
        let (_d, c) = config("Client { org.apache.zookeeper.server.auth.DigestLoginModule required username=a password=b; };", "");
        assert_eq!(SaslConfig::from_config(&c).unwrap(), None);
    }

    #[test]
    fn unreadable_files_and_other_modules_are_errors() {
        let c = crate::config::Config::parse_str(
            "dataDir=/x\nclientPort=2181\njava.security.auth.login.config=/nonexistent/jaas.conf\n",
        )
        .unwrap();
        assert!(SaslConfig::from_config(&c).unwrap_err().contains("/nonexistent/jaas.conf"));
        let (_d, c) = config("Server { broken", "");
        assert!(SaslConfig::from_config(&c).unwrap_err().contains("line 1"));
        let (_d, c) = config(
            "Server { com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true; };",
            "",
        );
        assert!(SaslConfig::from_config(&c).unwrap_err().contains("Krb5LoginModule"));
    }

    #[test]
    fn principal_names_lose_host_and_realm_when_asked() {
        let mut s = SaslConfig {
            users: BTreeMap::new(),
            super_users: vec![],
            remove_host: false,
            remove_realm: false,
            allow_failed_clients: false,
        };
        assert_eq!(s.ids_of("zk/host1@EX.ORG")[0].id, "zk/host1@EX.ORG");
        s.remove_host = true;
        assert_eq!(s.ids_of("zk/host1@EX.ORG")[0].id, "zk@EX.ORG");
        s.remove_realm = true;
        assert_eq!(s.ids_of("zk/host1@EX.ORG")[0].id, "zk");
    }
}
