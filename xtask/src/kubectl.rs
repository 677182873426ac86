//! The pinned kubectl against a cluster (the local one, or a user's), from the workspace root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
    root: PathBuf,
    namespace: Option<String>,
}

impl Kubectl {
    /// kubectl on the cluster of `kubeconfig`, run in `root` (relative paths are the
    /// workspace's).
    pub fn new(root: &Path, kubeconfig: &Path) -> Result<Kubectl> {
        Ok(Kubectl {
            program: crate::tools_bin_dir()?.join("kubectl"),
            kubeconfig: kubeconfig.to_path_buf(),
            root: root.to_path_buf(),
            namespace: None,
        })
    }

    /// The same, with `--namespace`.
    pub fn in_namespace(mut self, namespace: &str) -> Kubectl {
        self.namespace = Some(namespace.to_owned());
        self
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .current_dir(&self.root);
        if let Some(namespace) = &self.namespace {
            cmd.args(["--namespace", namespace]);
        }
        cmd
    }

    /// Runs kubectl; its stdout without surrounding whitespace, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .context("running kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Prints the command and what it shows.
    pub fn show(&self, args: &[&str]) -> Result<()> {
        println!("==> kubectl {}", args.join(" "));
        println!("{}", self.run(args)?);
        Ok(())
    }

    /// `kubectl apply -f -` of `manifest`.
    pub fn apply(&self, manifest: &str) -> Result<()> {
        use std::io::Write;
        let mut child = self
            .command()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl apply")?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(manifest.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}
