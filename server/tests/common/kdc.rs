//! A throw-away MIT Kerberos KDC for a test (ci/kdc.sh), stopped when dropped.

use std::path::PathBuf;

/// A running KDC: its config (`krb5.conf`) and keytabs in a temporary directory.
pub struct Kdc {
    dir: tempfile::TempDir,
}

impl Kdc {
    /// Starts a KDC for `realm` with each `principal:keytab` of `principals` (principal
    /// without the realm). `None` (the test skips, saying why) when the Kerberos programs are
    /// not installed — unless CORRAL_REQUIRE_KERBEROS=1 (ci/test.sh sets it), when it fails.
    pub fn start(realm: &str, principals: &[&str]) -> Option<Kdc> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ci/kdc.sh");
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(dir.path())
            .arg(realm)
            .args(principals)
            .output()
            .expect("bash runs");
        let required = std::env::var("CORRAL_REQUIRE_KERBEROS").is_ok_and(|v| v == "1");
        if out.status.code() == Some(3) && !required {
            eprintln!(
                "SKIPPED: the Kerberos programs are not installed ({}); ci/test.sh installs them",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        assert!(
            out.status.success(),
            "ci/kdc.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Kdc { dir })
    }

    /// A file of the KDC's directory (`krb5.conf`, a keytab).
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("kdc.pid")) {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                // The KDC this test started, by its PID.
                let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}
