//! SASL for clients (opcode 102), as ZooKeeper 3.8 configures it: the JAAS file named by
//! `java.security.auth.login.config` (a `-D`/`--system-property`, or a zoo.cfg key), its
//! section `Server` (or `zookeeper.sasl.serverconfig`) ([`jaas`]). As in ZooKeeper the
//! section's login module picks the one mechanism the server offers: ZooKeeper's
//! `DigestLoginModule` with `user_NAME="password"` options, DIGEST-MD5 ([`digest`]); the
//! JDK's `Krb5LoginModule` with a `keyTab` and a `principal`, Kerberos ([`gssapi`]).
//! An authenticated client gets the id `sasl:<name>`, and `super` too when the name is
//! `zookeeper.superUser` (or any `zookeeper.superUser.*`). A Kerberos principal's name is
//! first shortened by ZooKeeper's name rules, `zookeeper.security.auth_to_local`
//! ([`name_rules`]).

pub mod digest;
pub mod gssapi;
pub mod jaas;
pub mod name_rules;

use std::collections::BTreeMap;

/// ZooKeeper's DIGEST-MD5 server name and realm.
pub const DIGEST_REALM: &str = "zk-sasl-md5";
/// ZooKeeper's SASL service (protocol) name.
pub const SERVICE: &str = "zookeeper";
/// ZooKeeper's login module for DIGEST-MD5 users.
pub const DIGEST_LOGIN_MODULE: &str = "org.apache.zookeeper.server.auth.DigestLoginModule";
/// The JDK's Kerberos login module.
pub const KRB5_LOGIN_MODULE: &str = "com.sun.security.auth.module.Krb5LoginModule";

/// A server's Kerberos identity (a JAAS `Krb5LoginModule` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kerberos {
    /// `principal`: the service principal tickets are accepted for (`None`: any in the keytab).
    pub principal: Option<String>,
    /// `keyTab` (with `useKeyTab=true`; else the library's default keytab).
    pub keytab: Option<String>,
    /// The Kerberos configuration's default realm, for ZooKeeper's name rules.
    pub default_realm: Option<String>,
}

impl Kerberos {
    /// The identity a `Krb5LoginModule` entry's options name.
    pub fn from_options(options: &BTreeMap<String, String>) -> Kerberos {
        let get = |k: &str| options.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let use_keytab = get("useKeyTab").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Kerberos {
            principal: get("principal"),
            keytab: if use_keytab { get("keyTab") } else { None },
            default_realm: None,
        }
    }
}

/// What the server needs to authenticate SASL clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslConfig {
    /// DIGEST-MD5 users and passwords.
    pub users: BTreeMap<String, String>,
    /// Kerberos instead of DIGEST-MD5 (the section's login module is `Krb5LoginModule`).
    pub kerberos: Option<Kerberos>,
    /// Names that are also super (`zookeeper.superUser`, `zookeeper.superUser.*`).
    pub super_users: Vec<String>,
    /// `zookeeper.kerberos.removeHostFromPrincipal`.
    pub remove_host: bool,
    /// `zookeeper.kerberos.removeRealmFromPrincipal`.
    pub remove_realm: bool,
    /// `zookeeper.allowSaslFailedClients`: a failed exchange is answered OK with no token and
    /// the connection kept (without a sasl id).
    pub allow_failed_clients: bool,
    /// `zookeeper.security.auth_to_local`: the Kerberos name rules (default `DEFAULT`).
    pub name_rules: name_rules::NameRules,
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
        let mut kerberos = None;
        for m in modules {
            if m.class == KRB5_LOGIN_MODULE {
                let mut k = Kerberos::from_options(&m.options);
                gssapi::available().map_err(|e| {
                    format!("the JAAS file {path}, section {name} asks for Kerberos: {e}")
                })?;
                k.default_realm = gssapi::default_realm()
                    .map_err(|e| {
                        tracing::warn!(error = %e, "no default realm: the DEFAULT name rule applies to no principal")
                    })
                    .ok();
                // Fail now, not at the first client, if the keytab has no key for the principal.
                gssapi::Acceptor::new(k.principal.as_deref(), k.keytab.as_deref())
                    .map_err(|e| format!("the JAAS file {path}, section {name}: {e}"))?;
                tracing::info!(principal = ?k.principal, keytab = ?k.keytab, realm = ?k.default_realm, "SASL for clients: Kerberos (GSSAPI)");
                kerberos = Some(k);
                continue;
            }
            if m.class != DIGEST_LOGIN_MODULE {
                return Err(format!(
                    "the JAAS file {path}, section {name}: login module {} is not supported by Corral (only {DIGEST_LOGIN_MODULE}, DIGEST-MD5, and {KRB5_LOGIN_MODULE}, Kerberos)",
                    m.class
                ));
            }
            for (k, v) in &m.options {
                if let Some(user) = k.strip_prefix("user_") {
                    users.insert(user.to_string(), v.clone());
                }
            }
        }
        let name_rules = match props.get("zookeeper.security.auth_to_local") {
            Some(rules) => name_rules::NameRules::parse(rules)
                .map_err(|e| format!("zookeeper.security.auth_to_local: {e}"))?,
            None => name_rules::NameRules::default(),
        };
        for w in name_rules.warnings() {
            tracing::warn!("zookeeper.security.auth_to_local: {w}");
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
            kerberos,
            super_users,
            remove_host: flag("zookeeper.kerberos.removeHostFromPrincipal"),
            remove_realm: flag("zookeeper.kerberos.removeRealmFromPrincipal"),
            allow_failed_clients: flag("zookeeper.allowSaslFailedClients"),
            name_rules,
        }))
    }

    /// The ids an authenticated name gives: `sasl` with the name as ZooKeeper's callback
    /// handler shapes it (`user[/host][@REALM]`, host and realm dropped when asked), and
    /// `super` when it is a superuser. For Kerberos `user` is the principal's short name by
    /// the name rules; a principal they give no name (none applies, or one fails) keeps its
    /// whole name (ZooKeeper keeps the authorization id the client asked for, which a client
    /// can choose).
    pub fn ids_of(&self, name: &str) -> Vec<crate::proto::Id> {
        let id = match &self.kerberos {
            Some(k) => self.kerberos_id(k, name),
            None => {
                let p = gssapi::Principal::parse(name);
                let mut id = p.service.to_string();
                if let (Some(h), false) = (p.host, self.remove_host) {
                    id = format!("{id}/{h}");
                }
                if let (Some(r), false) = (p.realm, self.remove_realm) {
                    id = format!("{id}@{r}");
                }
                id
            }
        };
        // In ZooKeeper's order: the sasl id, then super.
        let is_super = self.super_users.contains(&id);
        let mut ids = vec![crate::proto::Id { scheme: "sasl".into(), id }];
        if is_super {
            ids.push(crate::proto::Id { scheme: "super".into(), id: String::new() });
        }
        ids
    }

    /// A Kerberos principal's id, as ZooKeeper 3.8's `SaslServerCallbackHandler` makes it:
    /// the short name, then `/host` and `@REALM` unless removed; the whole principal when the
    /// rules give it no name.
    fn kerberos_id(&self, k: &Kerberos, name: &str) -> String {
        use name_rules::{KerberosName, NameError};
        let default_realm = k.default_realm.as_deref().unwrap_or("");
        let shaped = KerberosName::parse(name).and_then(|n| {
            let mut id = self.name_rules.short_name(&n, default_realm)?;
            if let (Some(h), false) = (n.host(), self.remove_host) {
                id = format!("{id}/{h}");
            }
            if let (Some(r), false) = (n.realm(), self.remove_realm) {
                id = format!("{id}@{r}");
            }
            Ok(id)
        });
        match shaped {
            Ok(id) => id,
            Err(e @ NameError::NoRuleApplied(_)) => {
                tracing::info!(principal = %name, "{e}: the id is the whole principal");
                name.to_string()
            }
            Err(e) => {
                tracing::warn!(principal = %name, "{e}: the id is the whole principal");
                name.to_string()
            }
        }
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
        // No keytab with a key for it (or no Kerberos library at all): refused, saying so.
        assert!(SaslConfig::from_config(&c).unwrap_err().contains("Kerberos"));
        let (_d, c) =
            config("Server { com.sun.security.auth.module.LdapLoginModule required; };", "");
        assert!(SaslConfig::from_config(&c).unwrap_err().contains("LdapLoginModule"));
    }

    #[test]
    fn principal_names_lose_host_and_realm_when_asked() {
        let mut s = SaslConfig {
            users: BTreeMap::new(),
            kerberos: None,
            super_users: vec![],
            remove_host: false,
            remove_realm: false,
            allow_failed_clients: false,
            name_rules: name_rules::NameRules::default(),
        };
        assert_eq!(s.ids_of("zk/host1@EX.ORG")[0].id, "zk/host1@EX.ORG");
        s.remove_host = true;
        assert_eq!(s.ids_of("zk/host1@EX.ORG")[0].id, "zk@EX.ORG");
        s.remove_realm = true;
        assert_eq!(s.ids_of("zk/host1@EX.ORG")[0].id, "zk");
        // Kerberos: a principal of another realm than the default matches no DEFAULT rule
        // and keeps its whole name; one of the default realm is shaped as above.
        s.kerberos =
            Some(Kerberos { principal: None, keytab: None, default_realm: Some("EX.ORG".into()) });
        assert_eq!(s.ids_of("zk/host1@EX.ORG")[0].id, "zk");
        assert_eq!(s.ids_of("zk/host1@OTHER.ORG")[0].id, "zk/host1@OTHER.ORG");
        s.remove_realm = false;
        s.remove_host = false;
        assert_eq!(s.ids_of("client@EX.ORG")[0].id, "client@EX.ORG");
    }

    #[test]
    fn auth_to_local_rules_are_read_and_shape_kerberos_ids() {
        const DIGEST: &str =
            "Server { org.apache.zookeeper.server.auth.DigestLoginModule required user_bob=\"pw\"; };";
        // Not read: startup stops, naming the property and the fault.
        for bad in ["RULE:[1:$1", "RULE:[1:$1]s/a/b/L", "RULE:[1:$1](a[)", "default"] {
            let (_d, c) = config(DIGEST, &format!("security.auth_to_local={bad}\n"));
            let err = SaslConfig::from_config(&c).unwrap_err();
            assert!(err.contains("zookeeper.security.auth_to_local"), "{bad}: {err}");
            assert!(err.contains("rule"), "{bad}: {err}");
        }
        let (_d, c) = config(DIGEST, "");
        assert_eq!(SaslConfig::from_config(&c).unwrap().unwrap().name_rules.text(), "DEFAULT");
        // zoo.cfg is a Java properties file: `\\` is one backslash.
        let (_d, c) = config(
            DIGEST,
            "security.auth_to_local=RULE:[1:$1@$0](.*@EX\\\\.ORG)s/(.*)@.*/$1-ex/ \\\n  RULE:[2:$1](zk) RULE:[1:$1@$0] DEFAULT\nsuperUser=alice-ex@EX.ORG\n",
        );
        let mut s = SaslConfig::from_config(&c).unwrap().unwrap();
        assert_eq!(
            s.name_rules.text(),
            "RULE:[1:$1@$0](.*@EX\\.ORG)s/(.*)@.*/$1-ex/ RULE:[2:$1](zk) RULE:[1:$1@$0] DEFAULT"
        );
        // DIGEST-MD5 names are as they were.
        assert_eq!(s.ids_of("bob")[0].id, "bob");
        s.kerberos =
            Some(Kerberos { principal: None, keytab: None, default_realm: Some("EX.ORG".into()) });
        let id = |s: &SaslConfig, name: &str| s.ids_of(name)[0].id.clone();
        let ids = s.ids_of("alice@EX.ORG");
        assert_eq!(ids[0].id, "alice-ex@EX.ORG", "the short name, then the realm");
        assert_eq!(ids.len(), 2, "a superuser by the shaped name: {ids:?}");
        assert_eq!(id(&s, "zk/host1@OTHER.ORG"), "zk/host1@OTHER.ORG", "short name, host, realm");
        assert_eq!(id(&s, "zk/host1@EX.ORG"), "zk/host1@EX.ORG");
        assert_eq!(id(&s, "other/host1@EX.ORG"), "other/host1@EX.ORG", "DEFAULT");
        // The third rule makes a non-simple name: the search ends and the name is kept whole,
        // as is one no rule applies to.
        assert_eq!(id(&s, "carol@OTHER.ORG"), "carol@OTHER.ORG");
        assert_eq!(id(&s, "x/y@OTHER.ORG"), "x/y@OTHER.ORG");
        // A name KerberosName cannot read is kept whole.
        assert_eq!(id(&s, "a/b/c@EX.ORG"), "a/b/c@EX.ORG");
        s.remove_realm = true;
        assert_eq!(id(&s, "alice@EX.ORG"), "alice-ex");
        assert_eq!(id(&s, "zk/host1@OTHER.ORG"), "zk/host1");
        s.remove_host = true;
        assert_eq!(id(&s, "zk/host1@OTHER.ORG"), "zk");
        assert_eq!(id(&s, "carol@OTHER.ORG"), "carol@OTHER.ORG", "no short name: whole");
        assert_eq!(id(&s, "other/host1@EX.ORG"), "other");
        // Rules ZooKeeper reads but that fail when tried: read, and the name kept whole.
        let (_d, c) = config(DIGEST, "security.auth_to_local=RULE:[1:$x] DEFAULT\n");
        let mut s = SaslConfig::from_config(&c).unwrap().unwrap();
        s.kerberos =
            Some(Kerberos { principal: None, keytab: None, default_realm: Some("EX.ORG".into()) });
        s.remove_realm = true;
        assert_eq!(id(&s, "alice@EX.ORG"), "alice@EX.ORG");
        assert_eq!(id(&s, "zk/h@EX.ORG"), "zk/h", "DEFAULT, for two components");
        // No rules at all: every Kerberos name is kept whole.
        let (_d, c) = config(DIGEST, "security.auth_to_local=\n");
        let mut s = SaslConfig::from_config(&c).unwrap().unwrap();
        s.kerberos =
            Some(Kerberos { principal: None, keytab: None, default_realm: Some("EX.ORG".into()) });
        s.remove_realm = true;
        assert_eq!(id(&s, "alice@EX.ORG"), "alice@EX.ORG");
        assert_eq!(id(&s, "bob"), "bob");
    }
}
