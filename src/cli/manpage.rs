//! `tickring man --out-dir DIR` (hidden): write the manual pages generated
//! from the clap definitions: `tickring.1`, with the files and units a host
//! has, and one `tickring-<subcommand>.1` per subcommand. The packages ship
//! them (`packaging/build.sh` runs this on the binary it packages), so the
//! pages always match the binary's flags.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};

use super::Cli;

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long)]
    pub out_dir: PathBuf,
}

/// The host layout, appended to `tickring.1` (roff).
const HOST_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/tickring/feeds/\fR\fIFEED\fR\fI.toml\fR
The config of the collector instance \fBtickring\-collector@\fR\fIFEED\fR\fB.service\fR; check it with \fBtickring validate \-\-config\fR.
.TP
\fI/etc/tickring/gateway.toml\fR
The gateway's config.
.TP
\fI/etc/tickring/gateway.tokens\fR
Optional bearer tokens of the gateway, one per line, passed to it as the systemd credential \fBtokens\fR.
.TP
\fI/dev/hugepages/tickring/\fR, \fI/dev/shm/tickring/\fR
The rings (files \fINAME\fR\fI.ring\fR, group \fBtickring\fR, mode 0640).
.TP
\fI/var/lib/tickring/\fR
State of the services.
.TP
\fI/etc/systemd/system/tickring\-collector@\fR\fIFEED\fR\fI.service.d/cpu.conf\fR
The CPU affinity of one collector (\fBCPUAffinity=\fR), written by the Ansible role or by hand.
.SH SYSTEMD UNITS
.TP
\fBtickring\-collector@\fR\fIFEED\fR\fB.service\fR
One collector per feed (not enabled by the package: \fBsystemctl enable \-\-now tickring\-collector@\fR\fIFEED\fR).
.TP
\fBtickring\-gateway.socket\fR, \fBtickring\-gateway.service\fR
The gateway, started by its socket (127.0.0.1:8080 unless overridden by a drop-in).
.TP
\fBtickring.target\fR
Groups them: \fBsystemctl restart tickring.target\fR restarts all of them.
.SH SEE ALSO
"#;

fn subcommand_pages(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{prefix}-{}", sub.get_name());
        subcommand_pages(sub, &name, out);
        out.push(name);
    }
}

/// Writes every page into `dir`; returns the file names written.
pub fn write_pages(dir: &Path) -> anyhow::Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    let mut subs = Vec::new();
    subcommand_pages(&cmd, "tickring", &mut subs);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        clap_mangen::generate_to(sub.clone(), dir).with_context(|| {
            format!(
                "writing the pages of {} into {}",
                sub.get_name(),
                dir.display()
            )
        })?;
    }
    written.extend(subs.iter().map(|s| format!("{s}.1")));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    page.extend_from_slice(HOST_SECTIONS.as_bytes());
    let see_also: Vec<String> = subs
        .iter()
        .map(|s| format!("\\fB{}\\fR(1)", s.replace('-', "\\-")))
        .chain([
            "\\fBsystemctl\\fR(1)".into(),
            "\\fBsystemd.exec\\fR(5)".into(),
        ])
        .collect();
    writeln!(page, "{}", see_also.join(",\n"))?;
    let top = dir.join("tickring.1");
    fs::write(&top, page).with_context(|| format!("writing {}", top.display()))?;
    written.push("tickring.1".into());
    Ok(written)
}

pub fn run(args: &ManArgs) -> anyhow::Result<()> {
    for name in write_pages(&args.out_dir)? {
        println!("{}", args.out_dir.join(name).display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_writes_one_page_per_subcommand_and_a_top_page_with_files() {
        let dir = std::env::temp_dir().join(format!("tickring-man-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let written = write_pages(&dir).unwrap();
        for name in &written {
            assert!(dir.join(name).is_file(), "{name} was not written");
        }
        assert!(written.contains(&"tickring-validate.1".to_string()));
        assert!(
            !written.iter().any(|w| w == "tickring-man.1"),
            "the hidden man command got a page"
        );
        let top = fs::read_to_string(dir.join("tickring.1")).unwrap();
        assert!(top.contains(".SH FILES"));
        assert!(top.contains("tickring\\-validate\\fR(1)"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
